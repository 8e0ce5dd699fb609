"""The tiler: one routine that runs any backend over an image in tiles and stitches a seam-free result.

``tiled_forward`` plans tiles around the backend's :class:`SizeNeeds` (a static input size forces tiles of exactly
that size), pads each tile as the backend needs, cross-fades the overlaps (``paragonsr.tiling.geometry``) and can
stop at the first tile whose output is not finite. :class:`Tiler` holds a tiling policy (``0``, ``auto`` or a
size; overlap; blend) and for ``auto`` picks the tile from the memory budget and halves it on out-of-memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from paragonsr.errors import ParagonSRError
from paragonsr.tiling.geometry import DEFAULT_OVERLAP, MIN_TILE, axis_weights, plan_axis
from paragonsr.tiling.memory import DEFAULT_FEAT_ESTIMATE, auto_tile_size, cpu_memory_budget, is_oom
from paragonsr.tiling.needs import Forward, SizeNeeds, needs_of, run_padded
from paragonsr.tiling.option import TileSize, parse_tile
from paragonsr.tiling.throughput import choose_tile
from paragonsr.utils.finite import array_non_finite

Progress = Callable[[int, int], None]


class NonFiniteOutputError(ParagonSRError, ValueError):
    """A backend returned NaN/inf for a tile (``tiled_forward(..., check_finite=True)``)."""


def tiled_forward(
    fn: Forward,
    x: Tensor,
    scale: int | SizeNeeds,
    tile: int | None,
    overlap: int = DEFAULT_OVERLAP,
    blend: float = 0.5,
    out_ch: int | None = None,
    progress: Progress | None = None,
    *,
    min_tile: int = MIN_TILE,
    max_overlap: float = 0.5,
    check_finite: bool = False,
) -> Tensor:
    """Run ``fn`` (B×C×h×w -> B×C'×h·s×w·s) over ``x`` in tiles and stitch the results on the output's device.

    Args:
        scale: the integer scale, or the backend's full :class:`SizeNeeds` (padding, static size, batch).
        tile: largest tile side in LR px; ``None``/``0`` (or ≥ both sides) runs the whole image at once. A static
            input size (``needs.fixed_hw``) overrides it: tiles are then exactly that size.
        overlap: LR px shared by neighbouring tiles, capped at ``max_overlap`` × the tile.
        blend: fraction of the overlap that is cross-faded (0 = hard cut in its middle), in [0, 1].
        progress: called as ``progress(done, total)`` after each tile.
        min_tile: smallest tile size accepted.
        check_finite: raise :class:`NonFiniteOutputError` at the first tile holding NaN/inf.

    Raises:
        ValueError: ``x`` is not 4-D, ``blend`` outside [0, 1], a tile below ``min_tile``.
        RuntimeError: the backend returned a size other than ``scale ×`` its input.
    """
    needs = scale if isinstance(scale, SizeNeeds) else SizeNeeds(scale=int(scale))
    if x.ndim != 4:
        raise ValueError(f"tiled_forward expects B×C×H×W, got shape {tuple(x.shape)}")
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    b, _, h, w = x.shape
    s, m, fixed = needs.scale, needs.multiple, needs.fixed_hw
    th, tw = fixed if fixed is not None else (tile or max(h, w), tile or max(h, w))
    with torch.no_grad():
        if h <= th and w <= tw:
            whole = run_padded(fn, x, needs)
            _check(whole, check_finite, 0, 0)
            if progress:
                progress(1, 1)
            return whole
        if fixed is None and th < max(min_tile, m):
            raise ValueError(f"tile size {th} is too small (minimum {max(min_tile, m)})")
        overlap = max(0, min(overlap, int(min(th, tw) * max_overlap), min(th, tw) - 1))
        # Planned in units of the size multiple: tiles start on multiples of it (a pixel-unshuffle or window grid
        # stays aligned with the whole image's) and only the tile at the image's end is padded, as the whole
        # image would be.
        hu, wu, ov = -(-h // m), -(-w // m), min(-(-overlap // m), th // m - 1, tw // m - 1)
        (ys, th), (xs, tw) = (
            plan_axis(hu, th // m, ov, fixed is not None),
            plan_axis(wu, tw // m, ov, fixed is not None),
        )
        wy, wx = axis_weights(hu, ys, th, ov, s * m, blend), axis_weights(wu, xs, tw, ov, s * m, blend)
        out: Tensor | None = None
        total, done = len(ys) * len(xs), 0
        for iy, y0 in enumerate(y * m for y in ys):
            y1 = min(y0 + th * m, h)
            for ix, x0 in enumerate(xq * m for xq in xs):
                x1 = min(x0 + tw * m, w)
                res = run_padded(fn, x[:, :, y0:y1, x0:x1], needs)
                _check(res, check_finite, y0, x0)
                if out is None:
                    # channels_last = HWC in memory: the caller's HWC image is a view of it, not another full copy
                    shape = (b, out_ch or res.shape[1], h * s, w * s)
                    out = torch.empty(
                        shape, dtype=res.dtype, device=res.device, memory_format=torch.channels_last
                    ).zero_()
                ph, pw = res.shape[-2:]
                weight = wy[iy][:ph].to(res.device)[:, None] * wx[ix][:pw].to(res.device)[None, :]
                # in place, no tile-sized temporary for res * weight
                out[:, :, y0 * s : y1 * s, x0 * s : x1 * s].addcmul_(res, weight)
                done += 1
                if progress:
                    progress(done, total)
    assert out is not None
    return out


def _check(res: Tensor, enabled: bool, y0: int, x0: int) -> None:
    if enabled and (bad := array_non_finite(res)) is not None:
        raise NonFiniteOutputError(f"the model output holds {bad} values (tile at LR y={y0}, x={x0})")


class Tiler:
    """A tiling policy for any backend: ``tile`` is ``0`` (whole image), ``"auto"`` or a size in LR px
    (see :mod:`paragonsr.tiling.option`); ``overlap``, ``blend``, ``max_overlap``, ``min_tile`` and
    ``check_finite`` as in :func:`tiled_forward`.

    ``auto``: on the CPU the tile comes from the activation budget (``budget_bytes``, default
    :func:`cpu_memory_budget`) and, when ``rates`` (output MP/s measured per tile side, see
    :mod:`paragonsr.infer.calibrate`) are given, is the side under that cap with the least predicted time
    (:func:`~paragonsr.tiling.throughput.choose_tile`); on CUDA the whole image is tried first. An out-of-memory error halves the tile
    and retries; the size that worked (``self.tile``) is kept for the following images of a batch.

    Raises:
        InputError: a bad tile size; ValueError: a negative overlap or a blend outside [0, 1].
    """

    def __init__(
        self,
        tile: object = 0,
        overlap: int = DEFAULT_OVERLAP,
        blend: float = 0.5,
        *,
        budget_bytes: int | None = None,
        min_tile: int = MIN_TILE,
        max_overlap: float = 0.5,
        check_finite: bool = False,
        rates: Mapping[int, float] | None = None,
    ) -> None:
        self.rates = dict(rates) if rates else None
        self.request: TileSize = parse_tile(tile, min_tile=min_tile)
        if overlap < 0:
            raise ValueError(f"tile overlap must be >= 0 pixels, got {overlap}")
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"tile blend must be in [0, 1], got {blend}")
        self.overlap, self.blend, self.budget_bytes = overlap, blend, budget_bytes
        self.min_tile, self.max_overlap, self.check_finite = min_tile, max_overlap, check_finite
        self.oom_floor = max(min_tile, MIN_TILE * 2)  # auto never halves below this
        self.tile: int | None = None  # auto: the cap learnt from an out-of-memory error

    def _forward(
        self, fn: Forward, x: Tensor, needs: SizeNeeds, tile: int | None, progress: Progress | None
    ) -> Tensor:
        return tiled_forward(
            fn, x, needs, tile, self.overlap, self.blend, progress=progress, min_tile=self.min_tile,
            max_overlap=self.max_overlap, check_finite=self.check_finite,
        )  # fmt: skip

    def __call__(
        self,
        fn: Forward,
        x: Tensor,
        needs: SizeNeeds | int | None = None,
        progress: Progress | None = None,
        on_cuda: bool | None = None,
    ) -> Tensor:
        """``fn`` over ``x`` (B×C×h×w) with this policy. ``needs``: the backend's :class:`SizeNeeds` or scale
        (default: :func:`needs_of` ``fn``). ``on_cuda`` (default: ``fn.device``, else ``x.device``, is CUDA)."""
        if not isinstance(needs, SizeNeeds):
            needs = needs_of(fn, needs)
        if self.request != "auto":
            return self._forward(fn, x, needs, self.request or None, progress)
        if on_cuda is None:
            on_cuda = str(getattr(fn, "device", x.device)).startswith("cuda")
        h, w = x.shape[2:]
        tile: int | None
        if on_cuda:
            tile = self.tile  # CUDA: just try the whole image, OOM tells us
        else:
            budget = self.budget_bytes or cpu_memory_budget()
            est = auto_tile_size(h, w, needs.scale, budget, feat=DEFAULT_FEAT_ESTIMATE)
            if self.rates:
                est = choose_tile(h, w, self.rates, self.overlap, est, needs.multiple)
            tile = est if self.tile is None else min(self.tile, est or self.tile)
        while True:
            try:
                return self._forward(fn, x, needs, tile, progress)
            except (RuntimeError, MemoryError) as exc:
                if not is_oom(exc):
                    raise
                current = tile or max(h, w)
                if current // 2 < self.oom_floor:
                    raise RuntimeError(
                        f"out of memory even with {current}px tiles; use a smaller model or a CPU device"
                    ) from exc
                tile = current // 2
                self.tile = tile
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"Tiler(tile={self.request!r}, overlap={self.overlap}, blend={self.blend})"


__all__ = ["NonFiniteOutputError", "Progress", "Tiler", "tiled_forward"]
