"""Sub-image (tile) extraction with BasicSR ``extract_subimages`` semantics.

Tile positions along one axis: ``0, step, 2·step, ...`` while the tile fits, plus one last tile flush with the far
edge when the leftover exceeds ``thresh`` px. Tiles are saved as ``{stem}_s{NNN}{ext}`` numbered row-major from 1,
exactly like BasicSR, so existing meta_info files and habits carry over. Writes are atomic and a re-run skips
images whose tiles all exist (resumable). Each image is claimed (its first tile's claim,
:mod:`paragonsr.utils.claims`) while it is tiled, so two runs into one folder never tile the same image twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from paragonsr.io.files import read_image_native, write_image_native
from paragonsr.utils.claims import OutputClaim, describe_holder
from paragonsr.utils.procs import worker_pool

BUSY = "busy: "  # prefix of extract_one's message for an image another run is tiling


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
    """Tile one image. Returns (name, tiles written, error message or ""); the message starts with ``BUSY``
    when another live run holds the image's claim (it is tiling it; nothing is written here)."""
    claim = OutputClaim(out_dir / _tile_names(path, 1, ext)[0])
    try:
        if not claim.acquire():
            return path.name, 0, f"{BUSY}{path}: being tiled by {describe_holder(claim.holder)}"
        img = read_image_native(path)
        grid = tile_grid(img.shape[0], img.shape[1], crop, step, thresh)
        names = _tile_names(path, len(grid), ext)
        if not grid:
            return path.name, 0, f"{path.name}: {img.shape[1]}x{img.shape[0]} is smaller than crop {crop}"
        if all((out_dir / n).is_file() for n in names):
            return path.name, 0, ""  # resumed (or tiled by another run meanwhile): already done
        for (y, x), name in zip(grid, names):
            write_image_native(out_dir / name, np.ascontiguousarray(img[y : y + crop, x : x + crop]))
        return path.name, len(grid), ""
    except (ValueError, OSError, cv2.error) as exc:
        return path.name, 0, f"{path}: {exc}"
    finally:
        claim.release()


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
    busy: list[str] | None = None,
) -> tuple[int, list[str]]:
    """Tile every image into ``out_dir``; returns (tiles written, error messages). Keeps going past bad files.

    With ``root`` (the input folder), images in sub-folders get their tiles in the same sub-folders of
    ``out_dir`` (``a/x.png`` -> ``OUT/a/x_s001.png``). Two images that would produce the same tile names
    (``x.png`` and ``x.jpg`` in one folder, or same-named files from several folders without ``root``) are an
    error for the second one instead of silently overwriting (or "resuming" onto) the first one's tiles.
    An image another live run is tiling into the same folder is left to it: one line per such image goes to
    ``busy`` (when given), not to the errors.
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
    # closed however the loop ends: an interrupt's one line must come after the bar, not before its last redraw
    with tqdm(total=len(jobs), desc="extract-tiles", unit="img", disable=not progress) as bar:
        if workers > 1:
            with worker_pool(workers) as pool:  # quiet workers, terminated on Ctrl-C / SIGTERM
                for _name, n, err in pool.imap_unordered(_extract_star, jobs):
                    written += n
                    _sort_message(err, errors, busy)
                    bar.update()
        else:
            for job in jobs:
                _name, n, err = extract_one(*job)
                written += n
                _sort_message(err, errors, busy)
                bar.update()
    return written, errors


def _sort_message(msg: str, errors: list[str], busy: list[str] | None) -> None:
    if msg.startswith(BUSY):
        if busy is not None:
            busy.append(msg[len(BUSY) :])
    elif msg:
        errors.append(msg)
