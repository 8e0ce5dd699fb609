"""Interrupts at the edges of output claims (issue 26, found by the fault soak): while ``upscale`` waits for its last
overlapped write (the write completes; its claim is released although the writer's callback never runs), and
inside the entry of a ``with OutputClaim(...)`` block (its ``__exit__`` never runs)."""

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


def test_an_interrupt_inside_a_claims_with_block_entry_releases_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paragonsr.utils.claims import OutputClaim, claim_path

    real = OutputClaim.acquire

    def acquire_then_interrupted(self: OutputClaim) -> bool:
        real(self)  # the claim is made and ours, then Ctrl-C lands before __enter__ returns
        raise KeyboardInterrupt

    monkeypatch.setattr(OutputClaim, "acquire", acquire_then_interrupted)
    with pytest.raises(KeyboardInterrupt), OutputClaim(tmp_path / "a.png"):
        pass  # pragma: no cover - never entered
    assert not claim_path(tmp_path / "a.png").exists()  # __exit__ never runs: __enter__ released it
    assert hidden_files(tmp_path) == []  # nor a temp file of the claim's record
