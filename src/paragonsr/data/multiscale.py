"""Multi-scale GT copies of a photo set: each HR image also downscaled by 3/4, 1/2, 1/3, ... .

Camera photos and wallpapers of 2000+ px are soft at the pixel level (demosaicing, lens blur, JPEG smoothing),
while the images of the standard SR benchmarks (Set5, Set14, Urban100, ...) are dense in edges and texture. An
antialiased downscale of a photo packs the same content into fewer pixels, so crops of the copy carry the detail
an x2/x4 model must learn to restore. The DF2K multi-scale set of BasicSR/Real-ESRGAN is made the same way
(scales 0.75, 0.5, 1/3 of every DIV2K + Flickr2K image).

The downscale is MATLAB's antialiased bicubic :func:`paragonsr.ops.imresize.imresize_matlab` (8-bit images are
rounded per axis exactly as MATLAB does; 16-bit ones go through float and keep their depth). Copies are written
as PNG named ``<stem>_scale<scale*100:03d>.png`` (``photo_scale050.png`` is the half-size copy; ``_scale100`` is
the original re-encoded losslessly, so a folder of copies is a complete training set), plus a ``meta_info.txt``
listing them. Copies are opaque: an alpha channel (RGBA or gray + alpha) is dropped.
An existing copy is kept (the tool resumes); every write is atomic. Each image is claimed while its copies are
made (:mod:`paragonsr.utils.claims`), so two runs into one folder never make the same copy twice; the
``meta_info.txt`` lists every copy in the folder at the end, so the run that finishes last writes the full list.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paragonsr.io.image_io import read_image, write_image
from paragonsr.ops.imresize import imresize_matlab
from paragonsr.utils.atomic import atomic_write_text
from paragonsr.utils.claims import OutputClaim, describe_holder
from paragonsr.utils.finite import array_non_finite

DEFAULT_SCALES = (1.0, 0.75, 0.5, 1 / 3)


def copy_name(stem: str, scale: float) -> str:
    """File name of the ``scale`` copy of ``stem``: ``copy_name("a", 0.5) == "a_scale050.png"``."""
    return f"{stem}_scale{round(scale * 100):03d}.png"


def downscale(img: np.ndarray, scale: float, bit_depth: int) -> np.ndarray:
    """Antialiased MATLAB-bicubic downscale of a float HWC image in [0, 1]; returns float32 in [0, 1].

    8-bit sources are resized as uint8 (MATLAB's per-axis rounding), others in float and clipped to [0, 1].
    ``scale == 1`` returns the image unchanged. Raises ``ValueError`` unless ``0 < scale <= 1``.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"multi-scale factors must be in (0, 1], got {scale}")
    if scale == 1:
        return img
    if bit_depth == 8:
        u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        return imresize_matlab(u8, scale=scale).astype(np.float32) / 255.0
    return np.clip(imresize_matlab(img.astype(np.float64), scale=scale), 0.0, 1.0).astype(np.float32)


@dataclass
class MultiscaleResult:
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # already there (resumed run)
    errors: list[str] = field(default_factory=list)  # one line per unreadable input
    skipped: list[str] = field(default_factory=list)  # copies below min_size
    busy: list[str] = field(default_factory=list)  # images another live run is copying into the same folder


def make_multiscale(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    scales: Sequence[float] = DEFAULT_SCALES,
    min_size: int = 128,
    progress: Callable[[int, int, str], None] | None = None,
) -> MultiscaleResult:
    """Write the ``scales`` copies of every image in ``paths`` to folder ``out`` and ``out/meta_info.txt``.

    ``min_size``: a copy whose shorter side would be below this many pixels is skipped (a GT crop of that size must
    fit; listed in ``skipped``). Input stems must be unique. A bad input (unreadable, or a float file holding
    NaN/inf) is reported in ``errors`` and the others go on.
    ``progress(i, n, name)`` is called after each input. Raises ``ValueError`` for a scale outside (0, 1],
    two scales that share a copy name (e.g. 0.5 and 0.501: both ``_scale050``) or duplicate stems.
    """
    scales = sorted({float(s) for s in scales}, reverse=True)
    for s in scales:
        if not 0 < s <= 1:
            raise ValueError(f"multi-scale factors must be in (0, 1], got {s}")
    for a, b in itertools.pairwise(scales):
        if copy_name("", a) == copy_name("", b):  # one file would hold both copies, listed twice
            raise ValueError(
                f"multi-scale factors {b:g} and {a:g} share the copy name {copy_name('<stem>', a)}; "
                "use factors that differ by at least 0.01"
            )
    stems = [Path(p).stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ValueError(f"input images share a name, their copies would collide: {', '.join(dup)}")
    dst = Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    res = MultiscaleResult()
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        claim = OutputClaim(dst / copy_name(stem, scales[0]))
        try:
            if claim.acquire():
                _copies_of(path, dst, stem, scales, min_size, res)
            else:
                res.busy.append(f"{path}: its copies are being made by {describe_holder(claim.holder)}")
        finally:
            claim.release()
        if progress:
            progress(i + 1, len(paths), Path(path).name)
    # every copy there now (kept, written, or made by a concurrent run), largest copy first per image; listed and
    # written under the list's claim, so the run that finishes its copies last writes the complete list
    meta = OutputClaim(dst / "meta_info.txt")
    deadline = time.monotonic() + 60.0
    while not meta.acquire() and time.monotonic() < deadline:  # another run writing its list: milliseconds
        time.sleep(0.02)
    try:
        listed = [copy_name(s, f) for s in stems for f in scales if (dst / copy_name(s, f)).is_file()]
        atomic_write_text(dst / "meta_info.txt", "".join(f"{name}\n" for name in listed))
    finally:
        meta.release()
    return res


def _copies_of(
    path: str | os.PathLike[str],
    dst: Path,
    stem: str,
    scales: Sequence[float],
    min_size: int,
    res: MultiscaleResult,
) -> None:
    """Write the missing copies of one image, recording them in ``res``."""
    todo = [s for s in scales if not (dst / copy_name(stem, s)).exists()]
    res.kept += [dst / copy_name(stem, s) for s in scales if s not in todo]
    if not todo:
        return
    try:
        img, info = read_image(path)
    except (OSError, ValueError) as exc:
        res.errors.append(str(exc))
        return
    img = img[..., :3] if img.shape[2] >= 3 else img[..., :1]  # alpha dropped (gray + alpha too)
    if (bad := array_non_finite(img)) is not None:  # a float file: NaN/inf would become arbitrary pixels
        res.errors.append(f"{path}: holds {bad} values; no copies written")
        return
    h, w = img.shape[:2]
    for s in todo:
        if min(int(np.ceil(s * h)), int(np.ceil(s * w))) < min_size:
            res.skipped.append(f"{path}: the x{s:.2f} copy would be below {min_size} px")
            continue
        target = write_image(
            dst / copy_name(stem, s),
            downscale(img, s, info.bit_depth),
            bit_depth=16 if info.bit_depth == 16 else 8,
        )
        res.written.append(target)
