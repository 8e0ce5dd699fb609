"""Decoded-image cache for the training datasets.

A training sample is a small crop of a large photo; decoding the whole photo (and converting it to float32) for
every crop costs far more than the crop itself. :class:`ImageCache` keeps each decoded image once, in its stored
sample type (uint8 for 8-bit files: a quarter of the float32 size), bounded by a byte budget with
least-recently-used eviction. The datasets crop and augment the raw array and convert only the crop to float
with :func:`to_float`, which gives exactly the values :func:`paragonsr.data.transforms.imread_rgb` gives for the
same pixels (same expression, applied per pixel), so a sample is bit-identical with or without the cache.

The cache lives in each process. With the ``fork`` start method an image cached by the main process before the
loader workers start is shared by them (copy-on-write; the arrays are never written), see :meth:`ImageCache.fill`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def imread_raw(path: str | Path, alpha: bool = False) -> np.ndarray:
    """Read an image as RGB (or RGBA with ``alpha``) HWC in its stored sample type: uint8 (8-bit files), uint16
    (16-bit) or float32 (float files, clipped to [0, 1]). EXIF orientation, gray expansion and alpha handling are
    those of :func:`~paragonsr.data.channels.imread_channels`: ``to_float(imread_raw(p, a))`` equals
    ``imread_channels(p, a)`` bit for bit. Raises ``OSError`` naming the file when it cannot be read."""
    from paragonsr.data.transforms import read_training_image
    from paragonsr.io.image_io import to_dtype, to_rgb, to_rgba

    img, info = read_training_image(path)
    img = to_rgba(img) if alpha else to_rgb(img)  # as imread_channels (opaque alpha 1.0 = the peak value)
    if info.bit_depth in (8, 16):
        # The decoder computed k / peak in float32; k / peak * peak is within 1e-4 of k, so to_dtype's rounding
        # restores the stored integer exactly (and to_float recomputes the very same float32 from it).
        return to_dtype(img, info.bit_depth)
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def to_float(img: np.ndarray) -> np.ndarray:
    """Raw HWC array (uint8 / uint16 / float32) -> float32 in [0, 1], as the image decoder converts it."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.array(img, dtype=np.float32, copy=True)  # a copy: the cached array stays untouched


class ImageCache:
    """LRU cache of :func:`imread_raw` results keyed by path, holding at most ``max_bytes`` of pixels.

    ``max_bytes <= 0`` disables it (every ``get`` decodes to float32 as before). An image larger than the whole budget is decoded but
    not kept. Cached arrays are read-only; callers copy what they change (crops, flips and the float conversion
    all do)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[tuple[int, int], np.ndarray]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, path: object) -> bool:
        """Whether the RGB read of ``path`` is cached."""
        return str(path) in self._items

    def get(self, path: str | Path, alpha: bool = False) -> np.ndarray:
        """:func:`imread_raw` of ``path``; read again when the file changed (size or modification time)."""
        if self.max_bytes <= 0:  # off: the plain float32 read (to_float copies only the crop)
            from paragonsr.data.channels import imread_channels

            return imread_channels(path, alpha)
        key = f"{path}\0rgba" if alpha else str(path)
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None  # imread_raw names the missing file
        entry = self._items.get(key)
        if entry is not None and entry[0] == stamp:
            self._items.move_to_end(key)
            self.hits += 1
            return entry[1]
        if entry is not None:
            self._drop(key)
        self.misses += 1
        img = imread_raw(path, alpha)
        if stamp is not None and 0 < img.nbytes <= self.max_bytes:
            img.setflags(write=False)
            self._items[key] = (stamp, img)
            self.nbytes += img.nbytes
            while self.nbytes > self.max_bytes:
                self._drop(next(iter(self._items)))
        return img

    def _drop(self, key: str) -> None:
        _, old = self._items.pop(key)
        self.nbytes -= old.nbytes

    def fill(self, paths: Iterable[str | Path], alpha: bool = False) -> int:
        """Decode images in order until the budget is full (the first image that does not fit stops it); returns
        how many are cached. Run in the main process before the loader workers fork, they all share them."""
        for p in paths:
            if self.max_bytes <= 0 or self.nbytes >= self.max_bytes:
                break
            before = len(self._items)
            self.get(p, alpha)
            if len(self._items) == before:  # did not fit: stop rather than evict what is there
                break
        return len(self._items)
