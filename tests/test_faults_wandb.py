"""wandb on a full disk (issue 26): like TensorBoard, one warning line, wandb logging off, training goes on. wandb is
optional, so a stand-in module with its API is injected into ``sys.modules``."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paragonsr.cli import main
from test_faults_regressions import _tiny_run


@contextlib.contextmanager
def caplog_at_warning() -> Iterator[list[str]]:
    """The messages of the warnings the training logger emits inside the block."""
    from paragonsr.train.logger import LOGGER_NAME

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_wandb_on_a_full_disk_is_turned_off_in_one_line_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    calls: list[str] = []

    class Run:
        def log(self, values: dict[str, float], step: int) -> None:
            calls.append(f"log {step}")
            raise OSError(errno.ENOSPC, "No space left on device", "wandb/run-x/files/wandb-summary.json")

        def finish(self) -> None:
            calls.append("finish")
            raise OSError(errno.ENOSPC, "No space left on device")  # its last sync fails too: ignored

    def init(**kw: object) -> Run:
        calls.append(f"init {kw['project']}")
        return Run()

    fake = types.ModuleType("wandb")  # wandb itself is optional: a stand-in with its API
    fake.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    opt = _tiny_run(tmp_path)
    assert main(["train", "-opt", str(opt), "--force", "logger.wandb.project=p"]) == 0
    log = capsys.readouterr().out
    warned = [ln.split("WARNING: ", 1)[1] for ln in log.splitlines() if "WARNING: wandb" in ln]
    assert warned == [
        "wandb: could not log ([Errno 28] No space left on device: 'wandb/run-x/files/wandb-summary.json'); "
        "wandb logging is off for this run"
    ]
    assert calls == ["init p", "log 2", "finish"]  # off after the first failure, finished once
    assert (tmp_path / "exp" / "models" / "net_g_4.safetensors").is_file()  # training went on to the end

    def init_fails(**kw: object) -> Run:
        raise OSError(errno.ENOSPC, "No space left on device", "wandb/run-y")

    from paragonsr.train.logger import init_wandb

    fake.init = init_fails  # type: ignore[attr-defined]
    with caplog_at_warning() as records:
        assert init_wandb("p", "r", {}, None, None) is None  # a full disk at the start: train without it
    assert records == ["wandb: could not start ([Errno 28] No space left on device: 'wandb/run-y'); wandb "
                       "logging is off for this run"]  # fmt: skip
