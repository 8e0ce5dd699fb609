"""Tile geometry along one axis: where the tiles start and how each one is weighted in the stitched output.

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

import torch
from torch import Tensor

from paragonsr.tiling.option import DEFAULT_OVERLAP, MIN_TILE


def plan_axis(length: int, tile: int, overlap: int, exact: bool = False) -> tuple[list[int], int]:
    """Tile starts and tile length along one axis: the fewest tiles of at most ``tile`` px that cover
    ``[0, length)`` with neighbours sharing at least ``overlap`` px, spread evenly. By default the tiles are
    shrunk to the size needed (no full-size last tile that recomputes most of its neighbour); ``exact=True``
    keeps every tile exactly ``tile`` px (a model with a static input size), the neighbours then share more.

    Raises:
        ValueError: ``overlap >= tile`` while more than one tile is needed.
    """
    if tile >= length:
        return [0], length
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    n = math.ceil((length - overlap) / (tile - overlap))
    size = tile if exact else math.ceil((length - overlap) / n) + overlap
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


__all__ = ["DEFAULT_OVERLAP", "MIN_TILE", "axis_weights", "plan_axis"]
