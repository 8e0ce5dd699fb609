"""An interrupt while ``upscale`` waits for its last overlapped write (issue 26): the write completes, and no claim
of it is left behind although the writer's callback, which releases it, never runs (found by the fault soak)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fault_helpers import hidden_files, images, visible_files
from paragonsr.cli import main


def test_an_interrupt_while_the_last_write_is_awaited_leaves_no_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from paragonsr.infer.overlap import OverlappedFiles

    def interrupted_close(self: OverlappedFiles) -> None:  # Ctrl-C lands while close() waits for the write
        if self._pending is not None:
            self._pending[0].exception()  # the write itself completes (the writer thread is joined)
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(OverlappedFiles, "close", interrupted_close)
    inp = images(tmp_path / "in", 3, size=32)
    out = tmp_path / "out"
    assert main(["upscale", str(inp), "-o", str(out), "--resampler", "bicubic", "-q"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted"
    assert sorted(visible_files(out)) == [
        "img000.png",
        "img001.png",
        "img002.png",
    ]  # the last write completed
    assert hidden_files(out) == []  # its claim released although its callback never ran
