"""The one comparison-grid maker: captioned cells tiled in rows (eval crops, demo, degradation previews, model
cards all use it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def caption_band(
    width: int,
    text: str,
    height: int,
    *,
    font_scale: float,
    origin: tuple[int, int],
    background: int = 255,
    color: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 strip of grey level ``background`` with ``text`` drawn at ``origin`` (x, y of
    the baseline, pixels) in OpenCV's Hershey simplex font; text past the right edge is cut off."""
    import cv2

    band = np.full((height, width, 3), background, np.uint8)
    cv2.putText(band, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
    return band


def tile(cells: Sequence[np.ndarray], cols: int, gap: int = 0, fill: float = 255) -> np.ndarray:
    """HWC ``cells`` (one dtype, 3 channels) laid out row by row, ``cols`` per row, ``gap`` pixels of ``fill``
    between neighbours. Every slot has the size of the largest cell (smaller cells sit top-left, padded with
    ``fill``), and every row has ``cols`` slots (empty ones are ``fill``). Raises ValueError for no cells."""
    if not cells or cols < 1:
        raise ValueError(f"tile needs at least one cell and cols >= 1, got {len(cells)} cells, cols={cols}")
    h = max(c.shape[0] for c in cells)
    w = max(c.shape[1] for c in cells)
    rows = (len(cells) + cols - 1) // cols
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), fill, dtype=cells[0].dtype)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        out[y : y + cell.shape[0], x : x + cell.shape[1]] = cell
    return out


__all__ = ["caption_band", "tile"]
