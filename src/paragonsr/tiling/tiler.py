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
from paragonsr.tiling.stitch import IntImage, RowBands, Sink, crop
from paragonsr.tiling.throughput import choose_tile
from paragonsr.utils.finite import array_non_finite

Progress = Callable[[int, int], None]


class NonFiniteOutputError(ParagonSRError, ValueError):
    """A backend returned NaN/inf for a tile (``tiled_forward(..., check_finite=True)``)."""


def tiled_forward(
    fn: Forward,
    x: Tensor | IntImage,
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
        x: B×C×H×W float tensor, or an :class:`~paragonsr.tiling.stitch.IntImage` (8/16-bit, converted per tile).
        scale: the integer scale, or the backend's full :class:`SizeNeeds` (padding, static size, batch).
        tile: largest tile side in LR px; ``None``/``0`` (or ≥ both sides) runs the whole image at once. A static
            input size (``needs.fixed_hw``) overrides it: tiles are then exactly that size.
        overlap: LR px shared by neighbouring tiles, capped at ``max_overlap`` × the tile.
        blend: fraction of the overlap that is cross-faded (0 = hard cut in its middle), in [0, 1].
        progress: called as ``progress(done, total)`` after each tile.
        min_tile: smallest tile size accepted.
        check_finite: raise :class:`NonFiniteOutputError` at the first tile holding NaN/inf.

    Returns:
        B×C'×H·s×W·s float; a tiled result is channels_last (HWC in memory), so the caller's HWC image is a view.

    Raises:
        ValueError: ``x`` is not 4-D, ``blend`` outside [0, 1], a tile below ``min_tile``.
        RuntimeError: the backend returned a size other than ``scale ×`` its input.
    """
    canvas: list[Tensor] = []
    h, w = x.shape[-2:]

    def into_canvas(rows: Tensor, r0: int) -> None:
        if not canvas:
            b, c = rows.shape[:2]
            shape = (b, out_ch or c, h * _scale(scale), w * _scale(scale))
            canvas.append(
                torch.empty(shape, dtype=rows.dtype, device=rows.device, memory_format=torch.channels_last)
            )
        canvas[0][:, :, r0 : r0 + rows.shape[2]] = rows

    whole = tiled_rows(
        fn, x, scale, tile, into_canvas, overlap, blend, progress, min_tile=min_tile, max_overlap=max_overlap,
        check_finite=check_finite, out_ch=out_ch,
    )  # fmt: skip
    return whole if whole is not None else canvas[0]


def _scale(scale: int | SizeNeeds) -> int:
    return scale.scale if isinstance(scale, SizeNeeds) else int(scale)


def tiled_rows(
    fn: Forward,
    x: Tensor | IntImage,
    scale: int | SizeNeeds,
    tile: int | None,
    sink: Sink,
    overlap: int = DEFAULT_OVERLAP,
    blend: float = 0.5,
    progress: Progress | None = None,
    *,
    min_tile: int = MIN_TILE,
    max_overlap: float = 0.5,
    check_finite: bool = False,
    out_ch: int | None = None,
) -> Tensor | None:
    """:func:`tiled_forward` that hands finished output rows to ``sink(rows, first_row)`` as soon as no later
    tile touches them (:class:`~paragonsr.tiling.stitch.RowBands`) instead of building the whole float output:
    float memory is one band of tile height × the output width. Arguments and errors as :func:`tiled_forward`.

    Returns:
        None when tiled (every row went to ``sink``, top to bottom); the untiled B×C'×H·s×W·s output itself when
        the image ran whole (nothing went to ``sink``; the caller uses the returned tensor).
    """
    needs = scale if isinstance(scale, SizeNeeds) else SizeNeeds(scale=int(scale))
    if x.ndim != 4:
        raise ValueError(f"tiled_forward expects B×C×H×W, got shape {tuple(x.shape)}")
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    h, w = x.shape[2], x.shape[3]
    s, m, fixed = needs.scale, needs.multiple, needs.fixed_hw
    th, tw = fixed if fixed is not None else (tile or max(h, w), tile or max(h, w))
    with torch.no_grad():
        if h <= th and w <= tw:
            whole = run_padded(fn, crop(x, 0, h, 0, w), needs)
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
        bands = RowBands(sink, th * m * s)
        total, done = len(ys) * len(xs), 0
        for iy, y0 in enumerate(y * m for y in ys):
            y1 = min(y0 + th * m, h)
            bands.start_row(y0 * s, y1 * s)
            for ix, x0 in enumerate(xq * m for xq in xs):
                x1 = min(x0 + tw * m, w)
                res = run_padded(fn, crop(x, y0, y1, x0, x1), needs)
                _check(res, check_finite, y0, x0)
                ph, pw = res.shape[-2:]
                weight = wy[iy][:ph].to(res.device)[:, None] * wx[ix][:pw].to(res.device)[None, :]
                bands.add(res, weight, y0 * s, x0 * s, w * s, out_ch)
                done += 1
                if progress:
                    progress(done, total)
        bands.finish()
    return None


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
        self,
        fn: Forward,
        x: Tensor | IntImage,
        needs: SizeNeeds,
        tile: int | None,
        progress: Progress | None,
        sink: Sink | None = None,
    ) -> Tensor | None:
        if sink is not None:
            return tiled_rows(
                fn, x, needs, tile, sink, self.overlap, self.blend, progress, min_tile=self.min_tile,
                max_overlap=self.max_overlap, check_finite=self.check_finite,
            )  # fmt: skip
        return tiled_forward(
            fn, x, needs, tile, self.overlap, self.blend, progress=progress, min_tile=self.min_tile,
            max_overlap=self.max_overlap, check_finite=self.check_finite,
        )  # fmt: skip

    def __call__(
        self,
        fn: Forward,
        x: Tensor | IntImage,
        needs: SizeNeeds | int | None = None,
        progress: Progress | None = None,
        on_cuda: bool | None = None,
    ) -> Tensor:
        """``fn`` over ``x`` (B×C×h×w) with this policy. ``needs``: the backend's :class:`SizeNeeds` or scale
        (default: :func:`needs_of` ``fn``). ``on_cuda`` (default: ``fn.device``, else ``x.device``, is CUDA)."""
        out = self._policy(fn, x, needs, progress, on_cuda, None)
        assert out is not None
        return out

    def rows(
        self,
        fn: Forward,
        x: Tensor | IntImage,
        sink: Sink,
        needs: SizeNeeds | int | None = None,
        progress: Progress | None = None,
        on_cuda: bool | None = None,
    ) -> Tensor | None:
        """:meth:`__call__` through :func:`tiled_rows`: finished output rows go to ``sink`` (no whole float
        output); returns the untiled output instead when the image ran whole. After an out-of-memory retry the
        sink gets every row again, from the top."""
        return self._policy(fn, x, needs, progress, on_cuda, sink)

    def _policy(
        self,
        fn: Forward,
        x: Tensor | IntImage,
        needs: SizeNeeds | int | None,
        progress: Progress | None,
        on_cuda: bool | None,
        sink: Sink | None,
    ) -> Tensor | None:
        if not isinstance(needs, SizeNeeds):
            needs = needs_of(fn, needs)
        if self.request != "auto":
            return self._forward(fn, x, needs, self.request or None, progress, sink)
        if on_cuda is None:
            on_cuda = str(getattr(fn, "device", x.device)).startswith("cuda")
        h, w = x.shape[2], x.shape[3]
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
                return self._forward(fn, x, needs, tile, progress, sink)
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


__all__ = ["NonFiniteOutputError", "Progress", "Tiler", "tiled_forward", "tiled_rows"]
