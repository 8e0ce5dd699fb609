"""Tiled inference with overlap and raised-cosine cross-fades.

Geometry (one axis, LR pixels): the fewest tiles of at most ``tile`` pixels whose neighbours share at least
``overlap`` pixels, shrunk to the size that needs and spread evenly (``plan_axis``). Inside each shared zone the
first ``margin = overlap·(1 - blend)/2`` pixels next to either tile's inner edge are discarded (weight 0: that is where
zero padding corrupts a tile's output) and the middle ``overlap·blend`` pixels are cross-faded with a raised
cosine whose two halves sum to exactly 1. Image borders are never weighted.

Consequences: for a translation-equivariant model whose receptive-field radius is r LR pixels the tiled output
equals the untiled one (fp32 rounding only) when ``margin ≥ r``, i.e. ``overlap ≥ 2r / (1 - blend)``;
``blend=0`` is a hard cut in the middle of the shared zone (exact from ``overlap ≥ 2r + 1``, the receptive
field), the default ``blend=0.5`` needs ``overlap ≥ 4r`` and hides seams of models that are not exactly
translation equivariant (dynamic kernels, global pooling) instead of showing a hard line.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable

import torch
from torch import Tensor

Forward = Callable[[Tensor], Tensor]

DEFAULT_OVERLAP = 32
MIN_TILE = 32


def plan_axis(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tile starts and tile length along one axis: the fewest tiles of at most ``tile`` px that cover
    ``[0, length)`` with neighbours sharing at least ``overlap`` px, shrunk to the size needed and spread
    evenly (no full-size last tile that recomputes most of its neighbour)."""
    if tile >= length:
        return [0], length
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length - overlap) / n) + overlap
    return [round(i * (length - size) / (n - 1)) for i in range(n)], size


def axis_weights(
    length: int, starts: list[int], tile: int, overlap: int, scale: int, blend: float
) -> list[Tensor]:
    """Per-tile 1-D weights in output pixels; at every output pixel the weights of all tiles sum to 1."""
    n_out = length * scale
    x = (torch.arange(n_out, dtype=torch.float64) + 0.5) / scale  # output pixel centres in LR units
    width = overlap * blend
    # rising[i]: weight of tile i+1 across the boundary between tiles i and i+1 (tile i gets 1 - rising[i]).
    rising = []
    for a, b in itertools.pairwise(starts):
        centre = (b + min(a + tile, length)) / 2.0  # middle of the actually shared zone
        if width > 0:
            t = ((x - (centre - width / 2)) / width).clamp(0.0, 1.0)
            rising.append(0.5 - 0.5 * torch.cos(math.pi * t))
        else:
            rising.append((x >= centre).to(torch.float64))
    # w_i = F_{i-1} - F_i telescopes to exactly 1 and stays >= 0 because the ramps are ordered left to right.
    ramps = [torch.ones(n_out, dtype=torch.float64), *rising, torch.zeros(n_out, dtype=torch.float64)]
    weights = []
    for i, s in enumerate(starts):
        w = ramps[i] - ramps[i + 1]
        weights.append(w[s * scale : min(s + tile, length) * scale].float())
    return weights


def tiled_forward(
    fn: Forward,
    x: Tensor,
    scale: int,
    tile: int | None,
    overlap: int = DEFAULT_OVERLAP,
    blend: float = 0.5,
    out_ch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Run ``fn`` (B×C×h×w -> B×C'×h·s×w·s) over ``x`` in tiles and stitch the results on ``x``'s device.

    ``tile`` None/0, or ≥ both sides, runs the whole image at once. ``progress(done, total)`` is called per tile.
    """
    if x.ndim != 4:
        raise ValueError(f"tiled_forward expects B×C×H×W, got shape {tuple(x.shape)}")
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    b, _, h, w = x.shape
    if not tile or (tile >= h and tile >= w):
        whole = fn(x)
        if progress:
            progress(1, 1)
        return whole
    if tile < MIN_TILE:
        raise ValueError(f"tile size {tile} is too small (minimum {MIN_TILE})")
    overlap = max(0, min(overlap, tile // 2))
    (ys, th), (xs, tw) = plan_axis(h, tile, overlap), plan_axis(w, tile, overlap)
    wy = axis_weights(h, ys, th, overlap, scale, blend)
    wx = axis_weights(w, xs, tw, overlap, scale, blend)
    out: Tensor | None = None
    total, done = len(ys) * len(xs), 0
    for iy, y0 in enumerate(ys):
        for ix, x0 in enumerate(xs):
            patch = x[:, :, y0 : y0 + th, x0 : x0 + tw]
            res = fn(patch)
            if out is None:
                # channels_last = HWC in memory: the caller's HWC image is a view of it, not another full copy
                c = out_ch or res.shape[1]
                shape = (b, c, h * scale, w * scale)
                out = torch.empty(
                    shape, dtype=res.dtype, device=res.device, memory_format=torch.channels_last
                )
                out.zero_()
            ph, pw = patch.shape[2] * scale, patch.shape[3] * scale
            if res.shape[2:] != (ph, pw):
                raise RuntimeError(
                    f"model returned {tuple(res.shape)} for a {tuple(patch.shape)} tile (scale {scale})"
                )
            weight = wy[iy].to(res.device)[:, None] * wx[ix].to(res.device)[None, :]
            out[:, :, y0 * scale : y0 * scale + ph, x0 * scale : x0 * scale + pw] += res * weight
            done += 1
            if progress:
                progress(done, total)
    assert out is not None
    return out


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory or a failed CPU allocation (both surface as RuntimeError subclasses)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "not enough memory" in msg
    )


DEFAULT_CPU_BUDGET_MB = 128
# Activation bytes per LR pixel ≈ 4·4·feat·scale² (see auto_tile_size); feat 16 matches what the default
# ParagonSR2 nano really peaks at in bf16 (≈ 1 kB per LR pixel at x2, measured by RSS).
DEFAULT_FEAT_ESTIMATE = 16


def available_memory() -> int:
    """Bytes the OS could give us now (``MemAvailable``), else the physical RAM, else 8 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def cpu_memory_budget() -> int:
    """Bytes a tile's activations may use on the CPU: ``PARAGONSR_CPU_BUDGET_MB``, else a quarter of the available
    memory capped at ``DEFAULT_CPU_BUDGET_MB`` (128 MiB: ~360 px tiles for a photo at x2; larger tiles save < 20 %
    of the compute, while every extra MiB adds to the process peak)."""
    env = os.environ.get("PARAGONSR_CPU_BUDGET_MB")
    if env:
        return int(float(env) * 2**20)
    return int(min(available_memory() // 4, DEFAULT_CPU_BUDGET_MB * 2**20))


def auto_tile_size(h: int, w: int, scale: int, budget_bytes: int, feat: int = 64) -> int | None:
    """Largest tile side (multiple of 8) whose activations fit ``budget_bytes``; None = the whole image fits.

    Estimate per LR pixel: ~4 live fp32 feature maps of ``feat`` channels at output resolution (the HR head).
    """
    per_px = 4 * 4 * feat * scale * scale
    max_px = budget_bytes // per_px
    if h * w <= max_px:
        return None
    side = int(math.sqrt(max_px)) // 8 * 8
    return max(MIN_TILE * 2, side)


class AutoTiler:
    """``tile="auto"``: pick a tile from the memory budget, and on an out-of-memory error halve it and retry.
    The size that worked is remembered for the following images of a batch."""

    def __init__(self, budget_bytes: int | None = None, min_tile: int = MIN_TILE * 2) -> None:
        self.budget_bytes = budget_bytes
        self.min_tile = min_tile
        self.tile: int | None = None  # learnt cap after an OOM

    def __call__(
        self,
        fn: Forward,
        x: Tensor,
        scale: int,
        overlap: int = DEFAULT_OVERLAP,
        blend: float = 0.5,
        progress: Callable[[int, int], None] | None = None,
        on_cuda: bool = False,
    ) -> Tensor:
        h, w = x.shape[2:]
        if on_cuda:
            tile = self.tile  # CUDA: just try the whole image, OOM tells us
        else:
            budget = self.budget_bytes or cpu_memory_budget()
            est = auto_tile_size(h, w, scale, budget, feat=DEFAULT_FEAT_ESTIMATE)
            tile = est if self.tile is None else min(self.tile, est or self.tile)
        while True:
            try:
                return tiled_forward(fn, x, scale, tile, overlap, blend, progress=progress)
            except (RuntimeError, MemoryError) as exc:
                if not (isinstance(exc, MemoryError) or is_oom(exc)):
                    raise
                current = tile or max(h, w)
                if current // 2 < self.min_tile:
                    raise RuntimeError(
                        f"out of memory even with {current}px tiles; use a smaller model or a CPU device"
                    ) from exc
                tile = current // 2
                self.tile = tile
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


__all__ = ["DEFAULT_OVERLAP", "AutoTiler", "auto_tile_size", "axis_weights", "plan_axis", "tiled_forward"]
