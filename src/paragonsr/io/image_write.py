"""Converting and encoding images for writing: float [0, 1] or 8/16-bit samples -> the bytes of a file.

:func:`paragonsr.io.image_io.write_image` (atomic) is the one write function; these are its parts, re-exported by
:mod:`paragonsr.io.image_io`.
"""

from __future__ import annotations

import cv2
import numpy as np

from paragonsr.io.image_format import encode_png_gray_alpha

# Formats that can hold more than 8 bits per channel when written.
_DEEP_FORMATS = {"png": (8, 16), "tiff": (8, 16, 32)}


def to_dtype(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """float [0, 1] -> uint8/uint16 (rounded, clipped) or float32 for bit_depth 32.

    Integer input (uint8/uint16 samples) is returned as it is when it already has ``bit_depth`` bits (not a
    copy), else rescaled with rounding (16 -> 8: ``round(v · 255 / 65535)``; 8 -> 16: ``v · 257``; -> 32: ``v /
    peak``)."""
    if img.dtype in (np.uint8, np.uint16):
        have = 8 if img.dtype == np.uint8 else 16
        if bit_depth == have:
            return img
        if bit_depth == 32:
            return img.astype(np.float32) / np.float32(255.0 if have == 8 else 65535.0)
        if bit_depth == 8:
            return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return img.astype(np.uint16) * np.uint16(257)
    if bit_depth == 32:
        return img.astype(np.float32)
    peak, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    out = np.empty(img.shape, dtype)
    rows = max(1, (1 << 22) // max(1, img[:1].size))  # ~16 MB float temporaries, not three full-size ones
    for r in range(0, img.shape[0], rows):
        part = np.clip(img[r : r + rows], 0.0, 1.0)
        part *= peak
        part += 0.5
        out[r : r + rows] = part  # float -> int truncates, so + 0.5 rounds
    return out


def written_depth(fmt: str, bit_depth: int) -> int:
    """The bit depth a ``fmt`` file gets for a ``bit_depth`` source: 16 and 32 only where the format holds
    them (PNG: 8/16, TIFF: 8/16/32), else 8."""
    return bit_depth if bit_depth in _DEEP_FORMATS.get(fmt, (8,)) else 8


def encode_image(
    img: np.ndarray,
    fmt: str,
    bit_depth: int = 8,
    quality: int = 95,
    background: float = 1.0,
    *,
    consume: bool = False,
) -> bytes:
    """Encode HWC gray, gray + alpha, RGB or RGBA: float in [0, 1], or uint8/uint16 samples. Formats without
    alpha (JPEG) get it composited over ``background`` (white by default); formats that cannot store the
    requested depth get 8 bits. Gray + alpha stays gray + alpha in PNG and becomes RGBA in TIFF/WebP/BMP.
    ``consume=True``: the caller hands ``img`` over, and integer samples already at the written depth are
    reordered for the encoder in place instead of copied (``img`` is then BGR). PNG uses OpenCV's default
    settings (fast deflate, RLE strategy: on photos as small as level 3 in a third of the time)."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"cannot write an image of shape {img.shape} (need HxW, HxWx1, HxWx2, HxWx3 or HxWx4)"
        )
    depth = written_depth(fmt, bit_depth)
    if img.shape[2] == 2 and fmt == "png":
        return encode_png_gray_alpha(to_dtype(img, depth))
    owned = consume
    if img.shape[2] in (2, 4) and fmt == "jpeg":
        img = to_dtype(img, 32) if img.dtype != np.float32 else img
        alpha = np.clip(img[..., -1:], 0.0, 1.0)
        img, owned = img[..., :-1] * alpha + background * (1.0 - alpha), True
    elif img.shape[2] == 2:  # TIFF/WebP/BMP through OpenCV: gray + alpha as RGBA with equal colour channels
        img, owned = img[..., [0, 0, 0, 1]], True
    arr = to_dtype(img, depth)  # float input: a fresh array, reordered in place (no second full-size copy)
    if arr is img and not owned and arr.shape[2] in (3, 4):
        arr = arr.copy()  # never reorder the caller's samples
    if arr.shape[2] in (3, 4):  # RGB(A) -> BGR(A) for OpenCV
        arr = np.ascontiguousarray(arr)
        cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA, dst=arr)
    arr = np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    q = int(np.clip(quality, 1, 100))
    params = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, q],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, q],
    }.get(fmt, [])
    ext = {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}")
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} {arr.dtype} image as {fmt}")
    return buf.tobytes()


__all__ = ["encode_image", "to_dtype", "written_depth"]
