"""Tiled inference: tiled == untiled for translation-equivariant models, weights, automatic tile size on OOM."""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import conv_stack
from paragonsr.tiling import Tiler, auto_tile_size, axis_weights, plan_axis, tiled_forward


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "blend"),
    [
        (71, 53, 32, 12, 0.5),  # margin = 12/4 = 3 = radius
        (71, 53, 32, 16, 1.0 / 3.0),
        (45, 97, 40, 7, 0.0),  # hard cut: overlap = receptive field (2r + 1)
        (33, 33, 32, 12, 0.5),  # one extra pixel row/column: last tile nearly on top of the first
    ],
)
def test_tiled_equals_untiledconv_stack(h: int, w: int, tile: int, overlap: int, blend: float) -> None:
    model = conv_stack()
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    calls: list[tuple[int, int]] = []
    with torch.no_grad():
        ref = model(x)
        out = tiled_forward(model, x, 2, tile, overlap, blend, progress=lambda d, t: calls.append((d, t)))
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) <= 1e-5
    n_tiles = len(plan_axis(h, tile, overlap)[0]) * len(plan_axis(w, tile, overlap)[0])
    assert n_tiles > 1 and calls[-1] == (n_tiles, n_tiles)


def test_too_little_overlap_shows_seams() -> None:
    """Negative control: a margin below the receptive field must make a visible difference."""
    model = conv_stack()
    x = torch.rand(1, 3, 71, 53, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (tiled_forward(model, x, 2, 32, 4, 0.5) - model(x)).abs().max()
    assert float(diff) > 1e-3


def test_tiled_equals_untiled_fused_paragonsr2_nano() -> None:
    from paragonsr.archs import build_arch
    from paragonsr.archs.paragonsr2 import ParagonSR2

    torch.manual_seed(0)
    model = build_arch("paragonsr2_nano", scale=2)
    assert isinstance(model, ParagonSR2)
    model = model.eval().fuse_for_release()
    x = torch.rand(1, 3, 90, 123, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
        assert float((tiled_forward(model, x, 2, 64, 32, 0.5) - ref).abs().max()) <= 1e-4
        assert float((tiled_forward(model, x, 2, 64, 8, 0.5) - ref).abs().max()) > 1e-4  # control


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "n", "size"),
    [(101, 40, 16, 4, 38), (2048, 1024, 32, 3, 704), (64, 64, 16, 1, 64), (65, 64, 16, 2, 41)],
)
def test_plan_axis_even_and_minimal(length: int, tile: int, overlap: int, n: int, size: int) -> None:
    starts, got = plan_axis(length, tile, overlap)
    assert (len(starts), got) == (n, size) and got <= tile
    assert starts[0] == 0 and starts[-1] + got == length
    shared = [a + got - b for a, b in itertools.pairwise(starts)]
    assert all(s >= overlap for s in shared) and max(shared, default=0) - min(shared, default=0) <= 1


@pytest.mark.parametrize("blend", [0.0, 0.5, 1.0])
def test_axis_weights_partition_of_unity(blend: float) -> None:
    length, tile, overlap, scale = 101, 40, 16, 3
    starts, tile = plan_axis(length, tile, overlap)
    acc = torch.zeros(length * scale)
    weights = axis_weights(length, starts, tile, overlap, scale, blend)
    for s, wt in zip(starts, weights):
        assert wt.shape == (tile * scale,) and float(wt.min()) >= 0.0
        acc[s * scale : (s + tile) * scale] += wt
    torch.testing.assert_close(acc, torch.ones_like(acc), atol=1e-6, rtol=0)
    first = weights[0]
    # Image borders are unweighted; the discarded margin next to an inner edge has weight 0.
    assert float(first[0]) == 1.0 and float(first[-1]) < 1e-3
    if blend < 1.0:
        margin = int(overlap * (1 - blend) / 2) * scale
        assert float(first[-margin:].max()) == 0.0


def test_single_tile_and_validation() -> None:
    model = conv_stack()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(tiled_forward(model, x, 2, 64), model(x))
    with pytest.raises(ValueError, match="too small"):
        tiled_forward(model, torch.rand(1, 3, 64, 64), 2, 8)
    with pytest.raises(ValueError, match="B×C×H×W"):
        tiled_forward(model, torch.rand(3, 64, 64), 2, 32)


def test_auto_tiler_halves_on_oom() -> None:
    model = conv_stack()
    seen: list[tuple[int, int]] = []

    def limited(t: torch.Tensor) -> torch.Tensor:
        seen.append((t.shape[-2], t.shape[-1]))
        if t.shape[-1] * t.shape[-2] > 80 * 80:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return model(t)

    x = torch.rand(1, 3, 150, 130, generator=torch.Generator().manual_seed(4))
    tiler = Tiler("auto", overlap=12, budget_bytes=2**40)  # budget says "whole image": only OOM can shrink it
    with torch.no_grad():
        out = tiler(limited, x, 2)
        ref = model(x)
    assert seen[0] == (150, 130) and tiler.tile == 75
    assert float((out - ref).abs().max()) <= 1e-5
    seen.clear()
    with torch.no_grad():
        tiler(limited, x, 2)
    assert max(seen) <= (75, 75)  # the learnt size is reused on the next image

    def broken(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch")  # not memory: must not be swallowed

    with pytest.raises(RuntimeError, match="shape mismatch"):
        Tiler("auto", budget_bytes=2**40)(broken, x, 2)


def test_auto_tile_size_from_budget() -> None:
    assert auto_tile_size(100, 100, 4, budget_bytes=2**30) is None  # fits
    side = auto_tile_size(4000, 3000, 4, budget_bytes=2**30)
    per_px = 4 * 4 * 64 * 16
    assert side is not None and side % 8 == 0 and side * side * per_px <= 2**30 < (side + 8) ** 2 * per_px
