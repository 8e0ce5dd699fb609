"""Bounded memory of a big upscale: tile size from the memory budget, the tiled output assembled in HWC layout
and clamped in place (no second full-size float copy), 8/16-bit conversion in row blocks; tiled == untiled
within one 8-bit level for the default model with the tiles a 4K photo gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paragonsr.infer.backends import TorchBackend
from paragonsr.infer.upscale import Upscaler
from paragonsr.io.image_io import to_dtype
from paragonsr.tiling import memory as tiling


class _Scale2(torch.nn.Module):
    """Nearest x2 that overshoots [0, 1] (so the clamp has work to do)."""

    scale, in_ch, out_ch = 2, 3, 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 1.5 - 0.25


def test_tiled_result_is_the_clamped_output_buffer_itself() -> None:
    img = np.random.default_rng(0).random((96, 80, 3), dtype=np.float32)
    before = img.copy()
    backend = TorchBackend(_Scale2(), "cpu", "fp32")
    out, _ = Upscaler(backend, tile=32, overlap=8)(img)
    # a view of the tiled buffer (HWC order in memory), not a copy made after it
    assert out.flags["C_CONTIGUOUS"] and not out.flags["OWNDATA"] and out.dtype == np.float32
    ref = np.clip(np.repeat(np.repeat(img, 2, 0), 2, 1) * 1.5 - 0.25, 0, 1)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_array_equal(img, before)  # the input is never clamped in place


def test_identity_model_output_does_not_clamp_the_input_in_place() -> None:
    class Same(torch.nn.Module):
        scale, in_ch, out_ch = 1, 3, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    img = np.full((8, 8, 3), 1.5, np.float32)
    backend = TorchBackend(Same(), "cpu", "fp32")
    backend.scale = 1
    out, _ = Upscaler(backend, tile=None)(img)
    assert float(out.max()) == 1.0 and float(img.max()) == 1.5


def test_to_dtype_in_row_blocks_equals_the_whole_array_formula() -> None:
    x = np.random.default_rng(1).random((1500, 1000, 3), dtype=np.float32) * 1.2 - 0.1  # > one 4M-value block
    for depth, peak, dtype in ((8, 255.0, np.uint8), (16, 65535.0, np.uint16)):
        np.testing.assert_array_equal(to_dtype(x, depth), (np.clip(x, 0, 1) * peak + 0.5).astype(dtype))


@pytest.mark.parametrize(("available_mb", "side"), [(24 * 1024, 360), (1024, 360), (256, 256)])
def test_tile_for_a_4k_photo_follows_available_memory(monkeypatch, available_mb: int, side: int) -> None:
    monkeypatch.delenv("PARAGONSR_CPU_BUDGET_MB", raising=False)
    monkeypatch.setattr(tiling, "available_memory", lambda: available_mb * 2**20)
    budget = tiling.cpu_memory_budget()
    assert budget == min(available_mb * 2**20 // 4, tiling.DEFAULT_CPU_BUDGET_MB * 2**20)
    assert tiling.auto_tile_size(2160, 3840, 2, budget, feat=tiling.DEFAULT_FEAT_ESTIMATE) == side


def test_default_model_tiled_equals_untiled_within_one_level() -> None:
    from paragonsr.infer import default_model_path
    from paragonsr.infer.backends import load_backend

    path = default_model_path()
    if path is None:
        pytest.skip("no packaged default model in this install")
    rng = np.random.default_rng(2)
    img = np.clip(rng.random((24, 24, 3), dtype=np.float32).repeat(6, 0).repeat(6, 1), 0, 1)  # 144 px, edges
    backend = load_backend(path, "torch", "cpu", "auto")
    tiled = Upscaler(backend, "auto", budget_bytes=2**22)  # 64 px tiles: several seams on this crop
    a, _ = tiled(img)
    b, _ = Upscaler(backend, None)(img)
    assert tiled.tiler.request == "auto"
    q = lambda v: np.round(v * 255)  # noqa: E731
    assert np.abs(q(a) - q(b)).max() <= 1


def test_non_finite_check_of_a_big_output_uses_bounded_temporaries() -> None:
    import tracemalloc

    from paragonsr.utils.finite import array_non_finite

    a = np.zeros((2400, 4000, 3), np.float32)  # 115 MB: a whole-array check would allocate 29+ MB of bools
    tracemalloc.start()
    try:
        assert array_non_finite(a) is None  # the common case, on every image written
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20
    a[-1, -1, -1] = np.nan  # in the last block
    assert array_non_finite(a) == "NaN"
    t = torch.from_numpy(a).permute(2, 0, 1)[None]  # the tiled output's channels_last layout
    assert array_non_finite(t) == "NaN" and array_non_finite(t[..., :-1]) is None
