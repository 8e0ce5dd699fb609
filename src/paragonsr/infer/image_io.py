"""Image reading/writing for inference: float32 HWC RGB(A) in [0, 1] plus an ``ImageInfo`` describing the file.

- Bit depth comes from the decoded dtype (uint8 -> 8, uint16 -> 16, float -> 32), never from pixel values, so a
  dark 16-bit image stays 16-bit and is written back at 16 bits.
- Grayscale stays 1 channel (HW1), gray + alpha PNGs stay 2 channels (HW2, written back as gray + alpha PNGs),
  RGBA keeps its alpha, EXIF orientation is applied (the array is what a viewer
  shows); the decoder is OpenCV (``IMREAD_UNCHANGED``) with Pillow as fallback for what OpenCV cannot open.
- An embedded ICC profile (Display P3, Adobe RGB, ...) is applied: the array is sRGB, outputs are written as
  untagged sRGB (:mod:`paragonsr.infer.color`); ``ImageInfo.color_profile`` names the source profile.
- Writes are atomic: encode in memory, write a temp file in the target folder, ``os.replace``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from paragonsr.errors import ParagonSRError
from paragonsr.infer.image_limits import check_pixel_count
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
    ".gif",
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
# Formats that can hold more than 8 bits per channel when written.
_DEEP_FORMATS = {"png": (8, 16), "tiff": (8, 16, 32)}


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


def _sniff_format(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"GIF8",):
        return "gif"
    if data[:2] in (b"P5", b"P6", b"P2", b"P3"):
        return "pnm"
    return None


def _png_color_type(data: bytes) -> int | None:
    """The PNG IHDR colour type (0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA), or None."""
    return data[25] if len(data) > 25 and data[12:16] == b"IHDR" else None


def _encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """A gray + alpha PNG (colour type 4) from uint8/uint16 HxWx2. OpenCV cannot write 2 channels and Pillow
    cannot write them at 16 bits, so the few chunks are written here (Sub filter, zlib level 6)."""
    h, w, _ = arr.shape
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = arr.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1)
    bpp = 2 * depth // 8  # bytes per pixel
    sub = rows.copy()
    sub[:, bpp:] = rows[:, bpp:] - rows[:, :-bpp]  # uint8 arithmetic wraps mod 256, as the filter wants
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1).tobytes()  # filter byte 1 = Sub per row

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _check_complete(data: bytes, fmt: str | None, path: str) -> None:
    """Decoders may return a half-grey image for a truncated file instead of failing: check the end markers."""
    if fmt == "png" and data.rfind(b"IEND") == -1:  # (some writers append bytes after IEND: search it all)
        raise ImageReadError(f"{path}: truncated PNG (no IEND chunk at the end)")
    if fmt == "jpeg" and _jpeg_truncated(data):
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")


def _jpeg_truncated(data: bytes) -> bool:
    """Walk the JPEG segments from SOI to the image's own EOI. True only when the data ends first.

    Searching the whole file for markers is not enough: phones append data after the EOI (motion photos carry an
    MP4, MPF files a second JPEG) whose bytes can look like a start-of-scan, and an EXIF thumbnail has its own
    EOI. Anything structurally unexpected is left to the decoder (False)."""
    n, i = len(data), 2
    while i + 1 < n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # EOI
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stand-alone markers
            i += 2
            continue
        if i + 4 > n:
            return True
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data up to the next real marker (not FF00 stuffing, not RSTn)
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return True
            nxt = data[j + 1]
            if nxt == 0x00 or nxt == 0xFF or 0xD0 <= nxt <= 0xD7:
                i = j + 1 if nxt == 0xFF else j + 2
                continue
            i = j
            break
    return True


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


def decode_image(data: bytes, path: str = "<bytes>") -> tuple[np.ndarray, ImageInfo]:
    """Decode encoded image bytes into float32 HWC RGB(A)/gray in [0, 1] and its ``ImageInfo``."""
    if len(data) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    fmt = _sniff_format(data)
    _check_complete(data, fmt, path)
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
    if fmt == "png" and arr.ndim == 3 and arr.shape[2] == 4 and _png_color_type(data) == 4:
        arr = arr[..., [0, 3]]  # OpenCV expands gray + alpha to BGRA; the file is gray, so keep it gray
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{path}: unsupported image layout {arr.shape} (need gray, gray + alpha, RGB or RGBA)"
        )
    if arr.dtype == np.uint8:
        depth, img = 8, arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        depth, img = 16, arr.astype(np.float32) / 65535.0
    elif arr.dtype in (np.float32, np.float64):
        depth, img = 32, arr.astype(np.float32)
    else:
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype} (need 8/16-bit integer or float)")
    if img.shape[2] >= 3:
        img = img[..., [2, 1, 0, *range(3, img.shape[2])]]  # BGR(A) -> RGB(A)
    orientation, icc = _pillow_header(data) if fmt in ("jpeg", "tiff", "webp", "png") else (1, None)
    if not oriented_by_decoder:
        img = apply_orientation(img, orientation)
    profile = None
    if icc:  # colour-managed sources become sRGB here, at full precision (see paragonsr.infer.color)
        from paragonsr.infer.color import file_to_srgb

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


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file (see module doc). Raises ``FileNotFoundError``/``ImageReadError`` naming the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, str(p))


def output_format(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    if ext not in WRITE_EXTS:
        raise ValueError(
            f"{path}: cannot write '{ext or '(no extension)'}' files; use one of {sorted(WRITE_EXTS)}"
        )
    return WRITE_EXTS[ext]


def to_dtype(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """float [0, 1] -> uint8/uint16 (rounded, clipped) or float32 for bit_depth 32."""
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


def encode_image(
    img: np.ndarray, fmt: str, bit_depth: int = 8, quality: int = 95, background: float = 1.0
) -> bytes:
    """Encode float HWC gray, gray + alpha, RGB or RGBA in [0, 1]. Formats without alpha (JPEG) get it composited
    over ``background`` (white by default); formats that cannot store the requested depth get 8 bits. Gray + alpha
    stays gray + alpha in PNG and becomes RGBA in TIFF/WebP/BMP."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"cannot write an image of shape {img.shape} (need HxW, HxWx1, HxWx2, HxWx3 or HxWx4)"
        )
    depth = bit_depth if bit_depth in _DEEP_FORMATS.get(fmt, (8,)) else 8
    if img.shape[2] == 2 and fmt == "png":
        return _encode_png_gray_alpha(to_dtype(img, depth))
    if img.shape[2] in (2, 4) and fmt == "jpeg":
        alpha = np.clip(img[..., -1:], 0.0, 1.0)
        img = img[..., :-1] * alpha + background * (1.0 - alpha)
    elif img.shape[2] == 2:  # TIFF/WebP/BMP through OpenCV: gray + alpha as RGBA with equal colour channels
        img = img[..., [0, 0, 0, 1]]
    arr = to_dtype(img, depth)  # a fresh array: reordered in place, no second full-size copy
    if arr.shape[2] in (3, 4):  # RGB(A) -> BGR(A) for OpenCV
        cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA, dst=arr)
    arr = np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    q = int(np.clip(quality, 1, 100))
    params = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, q],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, q],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
    }.get(fmt, [])
    ext = {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}")
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.shape} {arr.dtype} image as {fmt}")
    return buf.tobytes()


def write_image(
    path: str | os.PathLike[str],
    img: np.ndarray,
    info: ImageInfo | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
) -> Path:
    """Write float HWC in [0, 1] atomically; format from the extension, depth = ``bit_depth`` or the source's."""
    fmt = output_format(path)
    depth = bit_depth or (info.bit_depth if info is not None else 8)
    if fmt == "gif":  # OpenCV cannot write GIF: Pillow's palette writer (one frame)
        from paragonsr.infer.animation import encode_animation

        atomic_write_bytes(path, encode_animation([to_dtype(img, 8)], [0], None, "gif"))
        return Path(path)
    atomic_write_bytes(path, encode_image(img, fmt, depth, quality))
    return Path(path)


__all__ = [
    "READ_EXTS",
    "WRITE_EXTS",
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
    "write_image",
]
