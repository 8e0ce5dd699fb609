"""Refuse images whose header declares more pixels than we are willing to decode.

A 74-byte PNG can declare 100000×100000 pixels: decoding it would try to allocate 30 GB (OpenCV then fails with an
assertion, Pillow with a "decompression bomb" error). The size is read from the header first - the PNG IHDR
directly, other formats through Pillow's lazy ``Image.open`` (which reads only the header) - and compared with
``max_pixels()``: ``PARAGONSR_MAX_PIXELS`` or 2**28 (268 MP, e.g. 16384×16384).
"""

from __future__ import annotations

import io
import os
import struct
import warnings

DEFAULT_MAX_PIXELS = 2**28
MAX_PIXELS_ENV = "PARAGONSR_MAX_PIXELS"


def max_pixels() -> int:
    """Largest width × height decoded (``PARAGONSR_MAX_PIXELS``, default 2**28)."""
    env = os.environ.get(MAX_PIXELS_ENV)
    return int(float(env)) if env else DEFAULT_MAX_PIXELS


def header_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) declared by the file header, or None when it cannot be read cheaply.

    Raises ``OverflowError`` when Pillow refuses the header as a decompression bomb (size unknown but huge)."""
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as exc:
        raise OverflowError(str(exc)) from None
    except Exception:  # not something Pillow knows: the decoder will say what is wrong
        return None


def check_pixel_count(data: bytes, fmt: str | None, path: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``path`` when the header declares more than :func:`max_pixels` pixels."""
    limit = max_pixels()
    try:
        size = header_size(data, fmt)
    except OverflowError:
        raise error(
            f"{path}: image is too large to decode (its header declares more than Pillow's pixel limit; "
            f"at most {limit:,} pixels are read, set {MAX_PIXELS_ENV} to raise this)"
        ) from None
    if size is not None and size[0] * size[1] > limit:
        raise error(
            f"{path}: image is too large to decode ({size[0]}x{size[1]} = {size[0] * size[1]:,} pixels declared "
            f"in its header; at most {limit:,}, set {MAX_PIXELS_ENV} to raise this)"
        )
