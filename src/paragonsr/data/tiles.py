"""Sub-image (tile) extraction with BasicSR ``extract_subimages`` semantics, plus the image I/O the data tools share.

Tile positions along one axis: ``0, step, 2·step, ...`` while the tile fits, plus one last tile flush with the far
edge when the leftover exceeds ``thresh`` px. Tiles are saved as ``{stem}_s{NNN}{ext}`` numbered row-major from 1,
exactly like BasicSR, so existing meta_info files and habits carry over. Writes are atomic and a re-run skips
images whose tiles all exist (resumable).
"""

from __future__ import annotations

from collections.abc import Iterable
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from paragonsr.infer.image_io import READ_EXTS, to_dtype
from paragonsr.infer.image_io import read_image as _read_image
from paragonsr.utils.atomic import atomic_write_bytes


def list_images(
    root: str | Path, recursive: bool = True, *, what: str = "input", allow_empty: bool = True
) -> list[Path]:
    """Sorted image files under ``root`` (case-insensitive extensions; hidden files skipped).

    ``what`` names the folder in the not-found error; ``allow_empty=False`` makes "no images" an error too.
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


def read_image(path: str | Path) -> np.ndarray:
    """HWC RGB, RGBA or gray (HW1) in the file's sample type (uint8 / uint16 / float32), for tools that copy
    pixels. Decoded by :func:`paragonsr.infer.image_io.read_image` (EXIF orientation and ICC -> sRGB applied);
    gray + alpha becomes RGBA with equal colour channels. Raises ``FileNotFoundError`` / ``ImageReadError``
    (a ``ValueError``) naming the file."""
    img, info = _read_image(path)
    if img.shape[2] == 2:
        img = img[..., [0, 0, 0, 1]]
    return to_dtype(img, info.bit_depth)


def write_image(path: str | Path, img: np.ndarray, png_level: int = 3) -> None:
    """Encode RGB(A)/gray HWC and write atomically (temp file + os.replace)."""
    path = Path(path)
    if img.ndim == 3 and img.shape[2] == 3:
        bgr = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        bgr = img[..., [2, 1, 0, 3]]
    else:
        bgr = img[..., 0] if img.ndim == 3 else img
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_level] if ext == ".png" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
    if not ok:
        raise ValueError(f"cannot encode {path.name} as {ext}")
    atomic_write_bytes(path, buf.tobytes())


def tile_positions(length: int, crop: int, step: int, thresh: int = 0) -> list[int]:
    """BasicSR start offsets along one axis; empty when the image is smaller than ``crop``."""
    if crop <= 0 or step <= 0:
        raise ValueError(f"crop and step must be positive (got {crop}, {step})")
    if length < crop:
        return []
    pos = list(range(0, length - crop + 1, step))
    if length - (pos[-1] + crop) > thresh:
        pos.append(length - crop)
    return pos


def tile_grid(h: int, w: int, crop: int, step: int, thresh: int = 0) -> list[tuple[int, int]]:
    return [
        (y, x) for y in tile_positions(h, crop, step, thresh) for x in tile_positions(w, crop, step, thresh)
    ]


def _tile_names(path: Path, n: int, ext: str | None) -> list[str]:
    return [f"{path.stem}_s{i:03d}{ext or path.suffix}" for i in range(1, n + 1)]


def extract_one(
    path: Path, out_dir: Path, crop: int, step: int, thresh: int, ext: str | None
) -> tuple[str, int, str]:
    """Tile one image. Returns (name, tiles written, error message or "")."""
    try:
        img = read_image(path)
        grid = tile_grid(img.shape[0], img.shape[1], crop, step, thresh)
        names = _tile_names(path, len(grid), ext)
        if not grid:
            return path.name, 0, f"{path.name}: {img.shape[1]}x{img.shape[0]} is smaller than crop {crop}"
        if all((out_dir / n).is_file() for n in names):
            return path.name, 0, ""  # resumed: already done
        for (y, x), name in zip(grid, names):
            write_image(out_dir / name, np.ascontiguousarray(img[y : y + crop, x : x + crop]))
        return path.name, len(grid), ""
    except (ValueError, OSError, cv2.error) as exc:
        return path.name, 0, f"{path}: {exc}"


def _extract_star(args: tuple) -> tuple[str, int, str]:
    return extract_one(*args)


def extract_tiles(
    paths: Iterable[Path],
    out_dir: str | Path,
    crop: int = 480,
    step: int = 240,
    thresh: int = 0,
    workers: int = 1,
    ext: str | None = ".png",
    progress: bool = True,
    root: str | Path | None = None,
) -> tuple[int, list[str]]:
    """Tile every image into ``out_dir``; returns (tiles written, error messages). Keeps going past bad files.

    With ``root`` (the input folder), images in sub-folders get their tiles in the same sub-folders of
    ``out_dir`` (``a/x.png`` -> ``OUT/a/x_s001.png``). Two images that would produce the same tile names
    (``x.png`` and ``x.jpg`` in one folder, or same-named files from several folders without ``root``) are an
    error for the second one instead of silently overwriting (or "resuming" onto) the first one's tiles.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs, errors = [], []
    owner: dict[tuple[Path, str, str], Path] = {}
    for p in map(Path, paths):
        dst = out / p.parent.relative_to(root) if root is not None else out
        key = (dst, p.stem, (ext or p.suffix).lower())
        if key in owner:
            errors.append(f"{p}: its tiles would overwrite those of {owner[key]} (same name {p.stem}_sNNN)")
            continue
        owner[key] = p
        jobs.append((p, dst, crop, step, thresh, ext))
    written = 0
    bar = tqdm(total=len(jobs), desc="extract-tiles", unit="img", disable=not progress)
    if workers > 1:
        with Pool(workers) as pool:
            results = pool.imap_unordered(_extract_star, jobs)
            for _name, n, err in results:
                written += n
                if err:
                    errors.append(err)
                bar.update()
    else:
        for job in jobs:
            _name, n, err = extract_one(*job)
            written += n
            if err:
                errors.append(err)
            bar.update()
    bar.close()
    return written, errors
