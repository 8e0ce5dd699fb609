"""What keeps ``paragonsr upscale`` lean besides the integer path: ONNX Runtime's arena handed back once an image's
tiles are done, and tile sides compared by CPU time when the machine is busy (wall time then measures the other
jobs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

import paragonsr.infer.calibrate as calibrate
from conftest import conv_stack
from paragonsr.infer.upscale import Upscaler


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic ONNX exporter, chosen on purpose
def test_onnx_arena_is_released_after_each_image_and_results_do_not_change(tmp_path: Path) -> None:
    from paragonsr.infer.onnx_backend import OnnxBackend

    path = tmp_path / "m.onnx"
    torch.onnx.export(
        conv_stack(), (torch.rand(1, 3, 24, 24),), str(path), dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}},
    )  # fmt: skip
    backend = OnnxBackend(path, provider="cpu")
    released: list[int] = []
    real = backend.release_memory

    def counting() -> None:
        released.append(1)
        real()

    backend.release_memory = counting  # type: ignore[method-assign]
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    up = Upscaler(backend, tile=32, overlap=12)
    first, _ = up(img)
    assert len(released) == 1  # once per image, after its last tile
    second, _ = up(img)  # the arena grows again from nothing: same numbers
    np.testing.assert_array_equal(first, second)
    up(img.astype(np.float32) / 255)  # the float path releases too
    assert len(released) == 3


def _timed(x: torch.Tensor) -> torch.Tensor:
    """128 px inputs wait (wall time, no CPU time); larger ones compute (CPU time). Long enough for a kernel that
    accounts CPU time in ticks of a few ms, and for a busy machine that stretches the computing one's wall time."""
    if x.shape[-1] == 128:
        time.sleep(0.5)
    else:
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
    return torch.zeros(1, 3, x.shape[-2] * 2, x.shape[-1] * 2)


@pytest.mark.parametrize(("load", "small_wins"), [(0.2, False), (5.0, True)])
def test_tile_sides_are_compared_by_cpu_time_on_a_busy_machine(
    monkeypatch: pytest.MonkeyPatch, load: float, small_wins: bool
) -> None:
    monkeypatch.setattr(calibrate, "load_per_cpu", lambda: load)
    calib = calibrate.run_calibration({"onnx:fp32": _timed}, 3, 256, repeats=2, sides=(128,))
    assert set(calib.tile_rates) == {128, 256}
    assert (calib.tile_rates[128] > calib.tile_rates[256]) is small_wins
    assert ("CPU-second" in calib.summary()) is small_wins


def test_trim_heap_runs_on_glibc_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import sys

    from paragonsr.utils import malloc

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert malloc.trim_heap() is glibc
    monkeypatch.setattr(malloc.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert malloc.trim_heap() is False
