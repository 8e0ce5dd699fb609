"""Image I/O: the one reader and writer of the package (:mod:`paragonsr.io.image_io`), with its one extension list
(``READ_EXTS`` / ``WRITE_EXTS``), format sniffing and truncation checks (:mod:`~paragonsr.io.image_format`),
the decompression-bomb guard (:mod:`~paragonsr.io.image_limits`), ICC -> sRGB conversion
(:mod:`~paragonsr.io.color`), animated GIF/WebP (:mod:`~paragonsr.io.animation`) and folder listing / native-type
copies (:mod:`~paragonsr.io.files`).

Arrays are HWC numpy: ``read_image`` returns float32 in [0, 1] (1, 2, 3 or 4 channels, RGB order) plus an
:class:`ImageInfo`; ``write_image`` takes the same. This package imports nothing from the rest of paragonsr except
``paragonsr.errors`` and ``paragonsr.utils``.
"""

from __future__ import annotations

from paragonsr.io.files import list_images, read_image_native, write_image_native
from paragonsr.io.image_io import READ_EXTS, WRITE_EXTS, ImageInfo, ImageReadError, read_image, write_image

__all__ = [
    "READ_EXTS",
    "WRITE_EXTS",
    "ImageInfo",
    "ImageReadError",
    "list_images",
    "read_image",
    "read_image_native",
    "write_image",
    "write_image_native",
]
