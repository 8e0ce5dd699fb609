"""Atomic output helper shared by every writer in the package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from paragonsr.utils.atomic import atomic_output, atomic_write_bytes, atomic_write_text, file_mode


def test_write_creates_parents_with_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        out = atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"\x00\x01")
        assert file_mode() == 0o640
    finally:
        os.umask(old)
    assert out.read_bytes() == b"\x00\x01"
    assert out.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.bin"]


def test_replaces_existing_and_leaves_no_temp_on_error(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "néw")
    assert target.read_text(encoding="utf-8") == "néw"
    with pytest.raises(RuntimeError, match="encoder died"), atomic_output(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("encoder died")
    assert target.read_text(encoding="utf-8") == "néw"  # the previous version survives
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_suffix_names_the_temp_file_for_format_sniffing_writers(tmp_path: Path) -> None:
    seen: list[Path] = []
    with atomic_output(tmp_path / "plot.png", suffix=".tmp.png") as tmp:
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.name.startswith(".plot.png.") and tmp.name.endswith(".tmp.png")
        tmp.write_bytes(b"png")
    assert not seen[0].exists()
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_reading_the_umask_does_not_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux the umask is read from /proc, never by setting it (that would race with other threads)."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("no /proc on this platform")
    calls: list[int] = []
    real = os.umask

    def umask(m: int) -> int:
        calls.append(m)
        return real(m)

    monkeypatch.setattr(os, "umask", umask)
    old = real(0o022)
    try:
        assert file_mode() == 0o644
    finally:
        real(old)
    assert calls == []


def test_data_is_synced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "out.bin", b"payload")
    assert (tmp_path / "out.bin").read_bytes() == b"payload"
    if sys.platform.startswith("linux"):
        assert events == ["fsync-file", "replace", "fsync-dir"]
    else:
        assert events[:2] == ["fsync-file", "replace"]
