"""Overlapped reading/writing of folder runs (``paragonsr.infer.overlap``): same files as the plain path, the next
image decoded ahead, writes overlapping the next compute, per-file errors kept with their file."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import paragonsr.infer.overlap as overlap
from paragonsr.infer.backends import ResamplerBackend
from paragonsr.infer.overlap import OverlappedFiles
from paragonsr.infer.upscale import Upscaler, upscale_file
from paragonsr.io.image_io import ImageInfo, read_image, write_image


def _images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"in{i}.png"
        write_image(p, rng.random((20 + i, 24, 3)).astype(np.float32))
        paths.append(p)
    return paths


def test_same_files_as_the_plain_path(tmp_path: Path) -> None:
    srcs = _images(tmp_path, 3)
    up = Upscaler(ResamplerBackend("bicubic", 2))
    got: list[tuple[str, BaseException | None]] = []
    with OverlappedFiles(up, srcs) as pipe:
        for s in srcs:
            pipe.upscale(
                s, tmp_path / f"o_{s.name}", functools.partial(lambda n, e: got.append((n, e)), s.name)
            )
    assert got == [(s.name, None) for s in srcs]  # every callback, in order
    for s in srcs:
        upscale_file(s, tmp_path / f"ref_{s.name}", up)
        assert (tmp_path / f"o_{s.name}").read_bytes() == (tmp_path / f"ref_{s.name}").read_bytes()


def test_reads_ahead_and_writes_beside_the_next_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While image k computes, image k+1 is being read and image k-1 written, in other threads."""
    srcs = _images(tmp_path, 3)
    events: list[str] = []
    lock = threading.Lock()
    write_started = threading.Event()

    def log(msg: str) -> None:
        with lock:
            events.append(msg)

    real_load, real_write = overlap._load, overlap.write_image

    def load(src: Path, first: bool) -> Any:
        log(f"read {src.name} {threading.current_thread().name.startswith('paragonsr-read')}")
        return real_load(src, first)

    def write(dst: Path, *a: Any, **k: Any) -> Any:
        write_started.set()
        log(f"write {Path(dst).name} {threading.current_thread().name.startswith('paragonsr-write')}")
        return real_write(dst, *a, **k)

    monkeypatch.setattr(overlap, "_load", load)
    monkeypatch.setattr(overlap, "write_image", write)
    base = Upscaler(ResamplerBackend("bicubic", 2))

    def upscaler(img: np.ndarray, info: ImageInfo, outscale: Any, progress: Any = None) -> Any:
        if len([e for e in events if e.startswith("compute")]) == 1:
            assert write_started.wait(10)  # image 0 is written while image 1 computes
        log(f"compute {img.shape[0]}")
        return base(img, info, outscale)

    with OverlappedFiles(upscaler, srcs) as pipe:
        for s in srcs:
            pipe.upscale(s, tmp_path / f"o_{s.name}", lambda e: None)
    assert "read in0.png False" in events  # the first image: nothing to overlap with
    assert "read in1.png True" in events and "read in2.png True" in events
    assert all(e.endswith("True") for e in events if e.startswith("write"))
    assert events.index("read in1.png True") < events.index("compute 21")


def test_errors_stay_with_their_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srcs = _images(tmp_path, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    order = [srcs[0], bad, srcs[1], srcs[2]]
    real_write = overlap.write_image

    def write(dst: Path, *a: Any, **k: Any) -> Any:
        if Path(dst).name == "o_in1.png":
            raise OSError(f"{dst}: no space left on device")
        return real_write(dst, *a, **k)

    monkeypatch.setattr(overlap, "write_image", write)
    got: dict[str, str | None] = {}
    raised: list[str] = []
    with OverlappedFiles(Upscaler(ResamplerBackend("bicubic", 2)), order) as pipe:
        for s in order:
            try:
                note = functools.partial(lambda n, e: got.update({n: e and str(e)}), s.name)
                pipe.upscale(s, tmp_path / f"o_{s.name}", note)
            except Exception as exc:
                raised.append(f"{s.name}: {type(exc).__name__}")
    assert raised == ["bad.png: ImageReadError"]  # a read error raises for its own file
    assert got["in0.png"] is None and got["in2.png"] is None
    assert got["in1.png"] is not None and "no space left" in got["in1.png"]
    assert not (tmp_path / "o_in1.png").exists() and (tmp_path / "o_in2.png").is_file()


def test_large_results_are_written_before_the_next_image(tmp_path: Path) -> None:
    srcs = _images(tmp_path, 2)
    seen: list[bool] = []

    with OverlappedFiles(Upscaler(ResamplerBackend("bicubic", 2)), srcs, max_pending_bytes=1000) as pipe:
        for s in srcs:
            pipe.upscale(s, tmp_path / f"o_{s.name}", lambda e: seen.append(e is None))
            assert (tmp_path / f"o_{s.name}").is_file()  # written (and reported) before upscale returned
            assert len(seen) == srcs.index(s) + 1
    img, _ = read_image(tmp_path / "o_in1.png")
    assert img.shape == (42, 48, 3)
