"""meta_info files, as Real-ESRGAN and BasicSR read them.

- ``realesrgan`` format (Real-ESRGAN ``generate_meta_info.py``): one path per line, relative to its ``--root``,
  e.g. ``DIV2K_train_HR/0001.png``; ``RealESRGANDataset`` joins it with ``dataroot_gt``.
- ``basicsr`` format (``meta_info_DIV2K800sub_GT.txt``): ``name (h,w,c)`` per line, shape from decoding the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paragonsr.io.files import list_images, read_image_native
from paragonsr.utils.atomic import atomic_write_text

FORMATS = ("realesrgan", "basicsr")


@dataclass
class MetaInfoResult:
    lines: list[str]
    bad: list[str] = field(default_factory=list)  # "path: why" for unreadable images (check / basicsr)


def build_meta_info(
    inputs: Sequence[str | Path],
    roots: Sequence[str | Path] | None = None,
    fmt: str = "realesrgan",
    check: bool = False,
    recursive: bool = True,
) -> MetaInfoResult:
    """Lines for every image under each input folder, relative to the matching root.

    ``roots`` defaults to each input's parent for ``realesrgan`` (lines read ``<folder name>/<file>``) and to the
    input itself for ``basicsr`` (lines read ``<file> (h,w,c)``); a single root is used for every input. ``check`` decodes each image and lists the unreadable ones (they are
    left out of the lines).
    """
    if fmt not in FORMATS:
        raise ValueError(f"meta-info format must be one of {FORMATS}, got {fmt!r}")
    folders = [Path(p) for p in inputs]
    if not folders:
        raise ValueError("meta-info needs at least one --input folder")
    if roots is None or len(roots) == 0:
        # Real-ESRGAN lines carry the folder name (joined with dataroot_gt = the parent); BasicSR's
        # meta_info_DIV2K800sub_GT.txt lists bare names inside dataroot_gt = the folder itself
        root_list = [p.parent if fmt == "realesrgan" else p for p in folders]
    elif len(roots) == 1:
        root_list = [Path(roots[0])] * len(folders)
    elif len(roots) == len(folders):
        root_list = [Path(r) for r in roots]
    else:
        raise ValueError(f"give one --root, or one per --input ({len(folders)}), not {len(roots)}")
    lines, bad = [], []
    for folder, root in zip(folders, root_list):
        for p in list_images(folder, recursive=recursive, allow_empty=False):
            # abspath, not resolve(): a symlinked file (``data subset``'s default output) must keep its own
            # location, not be followed to its target outside the root
            rel = Path(os.path.relpath(os.path.abspath(p), os.path.abspath(root))).as_posix()
            if rel.startswith("../"):
                raise ValueError(f"{p} is not inside its root {root}")
            if check or fmt == "basicsr":
                try:
                    img = read_image_native(p)
                except (ValueError, OSError) as exc:
                    bad.append(f"{p}: {exc}")
                    continue
                if fmt == "basicsr":
                    h, w, c = img.shape
                    lines.append(f"{rel} ({h},{w},{c})")
                    continue
            lines.append(rel)
    return MetaInfoResult(lines, bad)


def write_meta_info(path: str | Path, lines: Sequence[str]) -> Path:
    """Write atomically (the file is often read by a training run that is already waiting for it)."""
    return atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def read_meta_info(path: str | Path) -> list[str]:
    """Relative paths listed in a meta_info file of either format (shape suffix dropped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.endswith(")") and " (" in line:
            line = line[: line.rindex(" (")]
        out.append(line)
    return out
