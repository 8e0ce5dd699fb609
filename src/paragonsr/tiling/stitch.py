"""Stitching tiles row band by row band, and feeding tiles from an 8/16-bit image: no full-size float image.

The tiler (:func:`paragonsr.tiling.tiler.tiled_rows`) visits tiles row by row. :class:`RowBands` accumulates the
cross-faded tiles of one row of tiles in a float band as tall as one tile (``tile · scale`` output rows × the
full output width) and hands every output row to a ``sink`` as soon as no later tile can touch it: the rows above
the next tile row's start. The rows the next tile row still blends into are carried over to the top of the band.
Peak float memory of the stitch is therefore one band (a 360 px tile at ×2 on a 3840 px wide image: 720 × 7680 × 3
× 4 bytes = 66 MB) instead of the whole float output (398 MB for a 4K photo at ×2), and the values handed out are
bit-identical to a full-size accumulation (same products, same order of additions, carried rows copied exactly).

:class:`IntImage` is the input side: an 8/16-bit HWC array read as the B×C×H×W float tensor in [0, 1] that the
tiler slices, converted one tile at a time with the decoder's own formula (``float32(v) / 255`` or ``/ 65535``),
so no full-size float input exists either.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

Sink = Callable[[Tensor, int], None]
"""``sink(rows, first_row)``: ``rows`` B×C×n×W float (channels_last; a view, valid only during the call) are
finished output rows ``first_row .. first_row + n - 1``."""

INT_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class IntImage:
    """An HWC ``uint8``/``uint16`` image (H×W×C, C ≥ 1) that the tiler reads as a 1×C'×H×W float32 tensor in
    [0, 1]; ``channels`` replicates a 1-channel image to ``C'`` channels (a gray image into an RGB model).

    Raises:
        ValueError: not a 3-D uint8/uint16 array, or ``channels`` set for an image of more than one channel.
    """

    def __init__(self, img: np.ndarray, channels: int | None = None) -> None:
        if img.ndim != 3 or img.dtype not in INT_PEAKS:
            raise ValueError(f"IntImage needs an HxWxC uint8/uint16 array, got {img.dtype} {img.shape}")
        if channels is not None and channels != img.shape[2] and img.shape[2] != 1:
            raise ValueError(f"only a 1-channel image can be read as {channels} channels, got {img.shape[2]}")
        self.img, self.peak = img, INT_PEAKS[img.dtype]
        h, w, c = img.shape
        self.channels = channels or c
        self.shape = torch.Size((1, self.channels, h, w))
        self.ndim, self.device = 4, torch.device("cpu")

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> Tensor:
        """Rows ``y0:y1``, columns ``x0:x1`` as a 1×C'×h×w float32 tensor (channels_last memory) in [0, 1]."""
        part = self.img[y0:y1, x0:x1].astype(np.float32)
        part /= np.float32(self.peak)  # the decoder's formula: arr.astype(float32) / peak, bit for bit
        t = torch.from_numpy(part).permute(2, 0, 1)[None]
        if self.channels != t.shape[1]:
            t = t.expand(-1, self.channels, -1, -1).contiguous()
        return t


def crop(x: Tensor | IntImage, y0: int, y1: int, x0: int, x1: int) -> Tensor:
    """A B×C×(y1-y0)×(x1-x0) float view (tensor) or converted tile (:class:`IntImage`) of ``x``."""
    return x.crop(y0, y1, x0, x1) if isinstance(x, IntImage) else x[:, :, y0:y1, x0:x1]


class RowBands:
    """Accumulate tiles band by band; finished output rows go to ``sink`` (see the module doc).

    Call :meth:`start_row` before the tiles of each tile row (``r0 .. r1``: its output rows, non-decreasing from
    row to row), :meth:`add` for each tile, :meth:`finish` after the last one. Raises ValueError for a tile row
    that starts above the previous one's start or is taller than ``band_rows``.
    """

    def __init__(self, sink: Sink, band_rows: int) -> None:
        self.sink, self.band_rows = sink, band_rows
        self.buf: Tensor | None = None
        self.r0 = self.r1 = 0  # output rows the band holds now

    def _alloc(self, like: Tensor, width: int, channels: int) -> Tensor:
        shape = (like.shape[0], channels, self.band_rows, width)
        return torch.empty(
            shape, dtype=like.dtype, device=like.device, memory_format=torch.channels_last
        ).zero_()

    def start_row(self, r0: int, r1: int) -> None:
        if self.buf is None:
            self.r0, self.r1 = r0, r0
            return
        if r0 < self.r0 or r1 - r0 > self.band_rows:
            raise ValueError(f"tile row {r0}..{r1} cannot follow band {self.r0}..{self.r1}")
        done = min(r0, self.r1) - self.r0
        if done > 0:
            self.sink(self.buf[:, :, :done], self.r0)
        keep = max(0, self.r1 - r0)
        if keep and done:  # carried rows move to the top of the band (exact copy)
            src = self.buf[:, :, done : done + keep]
            self.buf[:, :, :keep] = src.clone() if keep > done else src
        self.buf[:, :, keep:].zero_()
        self.r0, self.r1 = r0, max(r0 + keep, r0)

    def add(
        self, res: Tensor, weight: Tensor, r0: int, c0: int, width: int, channels: int | None = None
    ) -> None:
        """Add ``res * weight`` (weight h×w, broadcast over B and C) at output row ``r0``, column ``c0``."""
        if self.buf is None:
            self.buf = self._alloc(res, width, channels or res.shape[1])
        ph, pw = res.shape[-2:]
        top = r0 - self.r0
        if top < 0 or top + ph > self.band_rows:
            raise ValueError(f"tile at output row {r0} (height {ph}) is outside band {self.r0}..")
        self.buf[:, :, top : top + ph, c0 : c0 + pw].addcmul_(
            res, weight
        )  # in place, no tile-sized temporary
        self.r1 = max(self.r1, r0 + ph)

    def finish(self) -> None:
        """Hand the band's remaining rows to the sink."""
        if self.buf is not None and self.r1 > self.r0:
            self.sink(self.buf[:, :, : self.r1 - self.r0], self.r0)
        self.buf = None


def quantize_rows(rows: np.ndarray, out: np.ndarray, peak: float) -> None:
    """``out[...] = round(clip(rows, 0, 1) · peak)`` for float HWC ``rows`` into an integer array of the same
    shape, in blocks of about 16 MB of float temporaries; the formula of
    :func:`paragonsr.io.image_io.to_dtype` (clip, scale, + 0.5, truncate), so the result is identical to it."""
    step = max(1, (1 << 22) // max(1, rows[:1].size))
    for r in range(0, rows.shape[0], step):
        part = np.clip(rows[r : r + step], 0.0, 1.0)
        part *= peak
        part += 0.5
        out[r : r + step] = part


__all__ = ["INT_PEAKS", "IntImage", "RowBands", "Sink", "crop", "quantize_rows"]
