"""Image reading/writing for inference: float32 HWC RGB(A) in [0, 1] plus an ``ImageInfo`` describing the file.

- Float images (32-bit TIFF) with values outside [0, 1] (HDR) are read as they are, with a
  :class:`FloatRangeWarning`: results (model outputs, every written format) are clamped to [0, 1] and the clamp is
  announced rather than silent.
- Bit depth comes from the decoded dtype (uint8 -> 8, uint16 -> 16, float -> 32), never from pixel values, so a
  dark 16-bit image stays 16-bit and is written back at 16 bits.
- Grayscale stays 1 channel (HW1), gray + alpha PNGs stay 2 channels (HW2, written back as gray + alpha PNGs),
  RGBA keeps its alpha, EXIF orientation is applied (the array is what a viewer
  shows); the decoder is OpenCV (``IMREAD_UNCHANGED``) with Pillow as fallback for what OpenCV cannot open.
- An embedded ICC profile (Display P3, Adobe RGB, ...) is applied: the array is sRGB, outputs are written as
  untagged sRGB (:mod:`paragonsr.io.color`); ``ImageInfo.color_profile`` names the source profile.
- Writes are atomic: encode in memory, write a temp file in the target folder, ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from paragonsr.errors import ParagonSRError
from paragonsr.io.image_format import check_complete, png_color_type, sniff_format
from paragonsr.io.image_limits import check_pixel_count
from paragonsr.io.image_write import encode_image, to_dtype, written_depth
from paragonsr.utils.atomic import atomic_write_bytes

READ_EXTS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".webp",
    ".tif",
    ".tiff",
    ".bmp",
    ".dib",
    ".ppm",
    ".pgm",
    ".pnm",
    ".gif",
    ".avif",  # OpenCV 4.9+ or Pillow 11.2+ decode it
)
WRITE_EXTS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".gif": "gif",
}


class ImageReadError(ParagonSRError, ValueError):
    """The file cannot be decoded as an image (message names the file and the reason)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the source file was, so the output can be written the same way."""

    path: str | None = None
    format: str | None = None  # "png", "jpeg", "tiff", "webp", "bmp", ...
    bit_depth: int = 8  # 8, 16, or 32 (float)
    channels: int = 3  # 1, 3 or 4
    height: int = 0
    width: int = 0
    orientation: int = 1  # EXIF orientation that was applied (1 = none)
    color_profile: str | None = (
        None  # embedded ICC profile the pixels were converted from to sRGB (None: sRGB)
    )

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    def with_size(self, height: int, width: int) -> ImageInfo:
        return replace(self, height=height, width=width)


def _pillow_header(data: bytes) -> tuple[int, bytes | None]:
    """EXIF orientation (1-8, 1 when absent or unreadable) and the embedded ICC profile (or None), read by Pillow
    from the file's header (no pixels are decoded)."""
    import io

    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))
    except Exception:
        return 1, None
    with im, contextlib.suppress(Exception):
        val = int(im.getexif().get(0x0112, 1))
        return (val if val in range(1, 9) else 1), im.info.get("icc_profile") or None
    return 1, im.info.get("icc_profile") or None


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an HWC array as EXIF orientation 1-8 prescribes (same result as PIL's exif_transpose)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, k=1),
    }
    op = ops.get(orientation)
    return img if op is None else np.ascontiguousarray(op(img))


def _decode_pillow(data: bytes, path: str) -> np.ndarray:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None
    # Pillow gives RGB(A); the caller expects OpenCV's BGR(A) order.
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[..., [2, 1, 0, *range(3, arr.shape[2])]]
    return arr


class FloatRangeWarning(UserWarning):
    """A float image holds values outside [0, 1] (HDR, or scene-linear data): the models and every output format
    work in [0, 1], so results are clamped there. Issued once per image by the reader; ``paragonsr upscale``
    prints it as one ``note:`` line naming the file."""


def _announce_float_range(img: np.ndarray, path: str) -> None:
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    if lo < 0.0 or hi > 1.0:
        import warnings

        warnings.warn(
            FloatRangeWarning(
                f"{path}: float image with values in [{lo:.4g}, {hi:.4g}] (HDR or out of range); the result is "
                "clamped to [0, 1]"
            ),
            stacklevel=3,
        )


def decode_image(
    data: bytes, path: str = "<bytes>", *, integer: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    """Decode encoded image bytes into float32 HWC RGB(A)/gray in [0, 1] and its ``ImageInfo``.

    ``integer=True``: an 8/16-bit file without an ICC profile comes back as its decoded samples (uint8/uint16, RGB
    order, orientation applied; ``x.astype(float32) / peak`` is exactly the float image), so a large image has no
    full-size float copy; float files and colour-managed ones still come back as float32."""
    if len(data) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    fmt = sniff_format(data)
    check_complete(data, fmt, path, ImageReadError)
    check_pixel_count(data, fmt, path, ImageReadError)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # a header OpenCV refuses (e.g. its own size limit): Pillow tries, naming the file
        arr = None
    # OpenCV's TIFF decoder applies the TIFF Orientation tag itself (even with IMREAD_UNCHANGED or
    # IMREAD_IGNORE_ORIENTATION); its JPEG/PNG/WebP decoders do not. Applying it again would rotate twice.
    oriented_by_decoder = arr is not None and fmt == "tiff"
    if arr is None:
        if fmt is None:
            raise ImageReadError(f"{path}: not a recognised image format")
        arr = _decode_pillow(data, path)
    if arr.size == 0:
        raise ImageReadError(f"{path}: image has zero size")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if fmt == "png" and arr.ndim == 3 and arr.shape[2] == 4 and png_color_type(data) == 4:
        arr = arr[..., [0, 3]]  # OpenCV expands gray + alpha to BGRA; the file is gray, so keep it gray
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{path}: unsupported image layout {arr.shape} (need gray, gray + alpha, RGB or RGBA)"
        )
    if arr.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype} (need 8/16-bit integer or float)")
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.shape[2] >= 3:  # BGR(A) -> RGB(A) on the decoded samples: exact, and 4x less to move than floats
        arr = cv2.cvtColor(
            np.ascontiguousarray(arr), cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        )
    depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype, 32)
    orientation, icc = _pillow_header(data) if fmt in ("jpeg", "tiff", "webp", "png", "avif") else (1, None)
    img: np.ndarray
    if integer and depth != 32 and not icc:
        img = arr
    else:
        img = arr.astype(np.float32)  # a fresh array: scaled in place, no second full-size temporary
        if depth == 32:
            _announce_float_range(img, path)
        else:
            img /= 255.0 if depth == 8 else 65535.0
    if not oriented_by_decoder:
        img = apply_orientation(img, orientation)
    profile = None
    if icc:  # colour-managed sources become sRGB here, at full precision (see paragonsr.io.color)
        from paragonsr.io.color import file_to_srgb

        img, profile = file_to_srgb(img, icc, path)
    info = ImageInfo(
        path=path,
        format=fmt,
        bit_depth=depth,
        channels=img.shape[2],
        height=img.shape[0],
        width=img.shape[1],
        orientation=orientation,
        color_profile=profile,
    )
    return np.ascontiguousarray(img), info


def to_rgb(img: np.ndarray) -> np.ndarray:
    """HWC gray / gray + alpha / RGB / RGBA -> HWx3 RGB: gray is repeated, alpha dropped (not composited)."""
    if img.ndim == 2:
        img = img[..., None]
    c = img.shape[2]
    if c in (2, 4):
        img, c = img[..., :-1], c - 1
    return np.repeat(img, 3, axis=2) if c == 1 else img


def to_rgba(img: np.ndarray) -> np.ndarray:
    """Float HWC gray / gray + alpha / RGB / RGBA in [0, 1] -> HWx4 RGBA: gray is repeated, a missing alpha is
    opaque (1.0)."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] in (1, 2):
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)
    if img.shape[2] == 3:
        img = np.concatenate([img, np.ones_like(img[..., :1])], axis=2)
    return img


def read_image(path: str | os.PathLike[str], *, integer: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file (see module doc; ``integer`` as in :func:`decode_image`). Raises
    ``FileNotFoundError``/``ImageReadError`` naming the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(p), integer=integer)


def output_format(path: str | os.PathLike[str]) -> str:
    """The format written for ``path``'s extension (``"png"``, ``"jpeg"``, ...: :data:`WRITE_EXTS`); raises
    ValueError naming the file and the writable extensions otherwise."""
    ext = Path(path).suffix.lower()
    if ext not in WRITE_EXTS:
        raise ValueError(
            f"{path}: cannot write '{ext or '(no extension)'}' files; use one of {sorted(WRITE_EXTS)}"
        )
    return WRITE_EXTS[ext]


def write_image(
    path: str | os.PathLike[str],
    img: np.ndarray,
    info: ImageInfo | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
    *,
    consume: bool = False,
) -> Path:
    """Write HWC float in [0, 1] or uint8/uint16 samples atomically; format from the extension, depth =
    ``bit_depth`` or the source's; ``consume`` as in :func:`encode_image`."""
    fmt = output_format(path)
    depth = bit_depth or (info.bit_depth if info is not None else 8)
    if fmt == "gif":  # OpenCV cannot write GIF: Pillow's palette writer (one frame)
        from paragonsr.io.animation import encode_animation

        atomic_write_bytes(path, encode_animation([to_dtype(img, 8)], [0], None, "gif"))
        return Path(path)
    atomic_write_bytes(path, encode_image(img, fmt, depth, quality, consume=consume))
    return Path(path)


__all__ = [
    "READ_EXTS",
    "WRITE_EXTS",
    "FloatRangeWarning",
    "ImageInfo",
    "ImageReadError",
    "apply_orientation",
    "atomic_write_bytes",
    "decode_image",
    "encode_image",
    "output_format",
    "read_image",
    "to_dtype",
    "to_rgb",
    "to_rgba",
    "write_image",
    "written_depth",
]
