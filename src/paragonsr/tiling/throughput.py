"""Tile size for throughput: from output MP/s measured at a few tile sides, the tile with the least predicted time.

Predicted time of a tile side = LR pixels the tiler computes with it (overlaps counted once per tile that
computes them, planned exactly as :func:`~paragonsr.tiling.tiled_forward` plans them) / the rate measured at that
side. Only sides under the memory cap compete. Pure functions of measurements, tested with made-up numbers; the
measurements come from :mod:`paragonsr.infer.calibrate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from paragonsr.tiling.geometry import plan_axis


def tiled_pixels(h: int, w: int, tile: int | None, overlap: int, multiple: int = 1) -> int:
    """LR pixels the tiler computes for an ``h``×``w`` image with ``tile`` px tiles (overlaps counted once per
    tile that computes them), planned as :func:`~paragonsr.tiling.tiled_forward` plans them; ``None`` or a tile
    of at least both sides: the whole (padded) image."""
    m = max(1, multiple)
    hu, wu = -(-h // m), -(-w // m)
    if tile is None or (tile >= h and tile >= w):
        return hu * wu * m * m
    tu = tile // m
    ov = min(-(-min(overlap, tile // 2, tile - 1) // m), tu - 1)
    ys, sy = plan_axis(hu, tu, ov)
    xs, sx = plan_axis(wu, tu, ov)
    return len(ys) * sy * len(xs) * sx * m * m


def rate_at(rates: Mapping[int, float], side: int) -> float:
    """Output MP/s expected at a tile of ``side`` px: the rate measured at the largest side not above it (the
    smallest measured side for anything smaller). Raises ValueError on an empty table."""
    if not rates:
        raise ValueError("no tile rates measured")
    below = [s for s in rates if s <= side]
    return float(rates[max(below)] if below else rates[min(rates)])


def choose_tile(
    h: int,
    w: int,
    rates: Mapping[int, float],
    overlap: int,
    max_tile: int | None,
    multiple: int = 1,
) -> int | None:
    """Tile side for an ``h``×``w`` image (LR px) with the least predicted time; ``None`` = the whole image.

    Args:
        rates: output MP/s measured with square inputs of each side (LR px), e.g. ``{128: 1.9, 256: 2.4}``.
        overlap: the tiler's overlap (LR px).
        max_tile: the largest side the memory budget allows (``None``: the whole image fits).
        multiple: the backend's size multiple (tiles are planned in its units).

    Only measured sides up to ``max_tile`` compete, plus the whole image when it fits; on a tie the larger
    tile wins (fewer seams, fewer calls). With no measured side under the cap, the cap itself is returned.
    """
    whole_fits = max_tile is None or (h <= max_tile and w <= max_tile)
    options: list[int | None] = [s for s in sorted(rates) if max_tile is None or s <= max_tile]
    if whole_fits:
        options.append(None)
    if not options:
        return max_tile
    best: tuple[float, int] | None = None
    choice: int | None = None
    for side in options:
        eff = max(h, w) if side is None else side
        if side is not None and side >= h and side >= w:
            continue  # same as the whole image, counted there (or as the largest tile if the whole is capped)
        secs = tiled_pixels(h, w, side, overlap, multiple) / rate_at(rates, eff)
        key = (secs, -eff)
        if best is None or key < best:
            best, choice = key, side
    return choice


__all__ = ["choose_tile", "rate_at", "tiled_pixels"]
