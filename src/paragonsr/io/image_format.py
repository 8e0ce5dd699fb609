"""Facts about encoded image bytes, before or instead of decoding them, and the one writer OpenCV lacks.

- :func:`sniff_format`: the container from its magic bytes ("png", "jpeg", "webp", "tiff", "bmp", "gif", "pnm",
  "avif").
- :func:`check_complete`: truncated PNG/JPEG files fail with a message naming the file (decoders may return a
  half-grey image instead of failing).
- :func:`png_color_type`: the PNG IHDR colour type (4 = gray + alpha, which OpenCV expands to BGRA on reading).
- :func:`encode_png_gray_alpha`: gray + alpha PNGs (colour type 4) at 8 or 16 bits through pypng; OpenCV cannot
  write 2 channels and Pillow cannot write them at 16 bits.
"""

from __future__ import annotations

import io

import numpy as np


def sniff_format(data: bytes) -> str | None:
    """The image container of ``data`` from its first bytes, or None when it is none we know."""
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
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):  # ISO BMFF with an AVIF brand
        return "avif"
    return None


def png_color_type(data: bytes) -> int | None:
    """The PNG IHDR colour type (0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA), or None."""
    return data[25] if len(data) > 25 and data[12:16] == b"IHDR" else None


def check_complete(data: bytes, fmt: str | None, path: str, error: type[Exception]) -> None:
    """Raise ``error("<path>: truncated ...")`` when a PNG has no IEND chunk or a JPEG ends inside its data."""
    if fmt == "png" and data.rfind(b"IEND") == -1:  # (some writers append bytes after IEND: search it all)
        raise error(f"{path}: truncated PNG (no IEND chunk at the end)")
    if fmt == "jpeg" and jpeg_truncated(data):
        raise error(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")


def jpeg_truncated(data: bytes) -> bool:
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


def encode_png_gray_alpha(arr: np.ndarray) -> bytes:
    """A gray + alpha PNG (colour type 4) from uint8 or uint16 HxWx2 (16-bit when the array is uint16).

    8-bit goes through Pillow (its PNG row filters make files about half the size of unfiltered ones); 16-bit,
    which Pillow cannot write as gray + alpha, through pypng (zlib level 6, rows handed over packed big-endian)."""
    h, w, c = arr.shape
    if c != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"gray + alpha PNG needs uint8/uint16 HxWx2, got {arr.shape} {arr.dtype}")
    depth = 16 if arr.dtype == np.uint16 else 8
    if depth == 8:
        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(out, format="PNG", compress_level=6)
        return out.getvalue()
    import png

    rows = np.ascontiguousarray(arr.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8).reshape(h, -1)
    buf = io.BytesIO()
    writer = png.Writer(w, h, greyscale=True, alpha=True, bitdepth=depth, compression=6)
    writer.write_packed(buf, (row.tobytes() for row in rows))
    return buf.getvalue()
