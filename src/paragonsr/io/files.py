"""Folder listing and pixel-exact file copies on top of :mod:`paragonsr.io.image_io`.

:func:`list_images` is the one image-folder lister (extensions from :data:`paragonsr.io.image_io.READ_EXTS`);
:func:`read_image_native` / :func:`write_image_native` keep the file's sample type (uint8 / uint16 / float32), for
data tools that copy or crop pixels without a round trip through float.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from paragonsr.io.image_io import READ_EXTS, read_image, to_dtype
from paragonsr.utils.atomic import atomic_write_bytes


def list_images(
    root: str | Path, recursive: bool = True, *, what: str = "input", allow_empty: bool = True
) -> list[Path]:
    """Sorted image files under ``root`` (case-insensitive extensions; hidden files skipped).

    ``what`` names the folder in the not-found error; ``allow_empty=False`` makes "no images" an error too.
    Raises ``FileNotFoundError`` naming the folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {root}")
    it = root.rglob("*") if recursive else root.iterdir()
    files = sorted(
        p for p in it if p.is_file() and p.suffix.lower() in READ_EXTS and not p.name.startswith(".")
    )
    if not files and not allow_empty:
        raise FileNotFoundError(f"no images ({', '.join(READ_EXTS)}) in {root}")
    return files


def read_image_native(path: str | Path) -> np.ndarray:
    """HWC RGB, RGBA or gray (HW1) in the file's sample type (uint8 / uint16 / float32), for tools that copy
    pixels. Decoded by :func:`paragonsr.io.image_io.read_image` (EXIF orientation and ICC -> sRGB applied);
    gray + alpha becomes RGBA with equal colour channels. Raises ``FileNotFoundError`` / ``ImageReadError``
    (a ``ValueError``) naming the file."""
    img, info = read_image(path)
    if img.shape[2] == 2:
        img = img[..., [0, 0, 0, 1]]
    return to_dtype(img, info.bit_depth)


def write_image_native(path: str | Path, img: np.ndarray, png_level: int = 3) -> None:
    """Encode an RGB(A) / gray HWC (or HW) array as stored (uint8 / uint16 / float32; the format is chosen by the
    extension) and write it atomically (temp file + ``os.replace``). Raises ``ValueError`` naming the file when
    OpenCV cannot encode it (unknown extension, or a sample type the format cannot hold)."""
    path = Path(path)
    if img.ndim == 3 and img.shape[2] == 3:
        bgr = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        bgr = img[..., [2, 1, 0, 3]]
    else:
        bgr = img[..., 0] if img.ndim == 3 else img
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_level] if ext == ".png" else []
    try:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
    except cv2.error:  # no encoder for this extension
        ok = False
    if not ok:
        raise ValueError(f"cannot encode {path.name} as {ext or '(no extension)'}")
    atomic_write_bytes(path, buf.tobytes())
