"""Reproducible random subsets of image folders (e.g. a DF2K + OST training set: all 800 DIV2K + 1500 Flickr2K + 1000 OST).

Selection is a pure function of (sorted file list, n, seed): ``random.Random(seed).sample`` over the sorted
relative paths, then re-sorted, so the same inputs and seed give the same subset on any machine and Python >= 3.
Each input ``DIR`` becomes ``OUT/<DIR name>/...``; files are symlinked (default), hard-linked or copied. Each
file is claimed while it is placed (:mod:`paragonsr.utils.claims`): two runs into one ``OUT`` never copy the
same file twice.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paragonsr.io.files import list_images
from paragonsr.utils.atomic import temp_path
from paragonsr.utils.claims import OutputClaim

MODES = ("symlink", "hardlink", "copy")


def choose(
    files: Sequence[str], n: int | None = None, fraction: float | None = None, seed: int = 0
) -> list[str]:
    """The subset of ``files`` (order-independent input; sorted output)."""
    pool = sorted(files)
    if (n is None) == (fraction is None):
        raise ValueError("give exactly one of n or fraction")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n = round(fraction * len(pool))
    assert n is not None
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= len(pool):
        return pool
    return sorted(random.Random(seed).sample(pool, n))


@dataclass
class SubsetResult:
    per_input: list[tuple[Path, int, int]]  # (input, available, taken)
    written: int
    skipped_existing: int
    busy: int = 0  # files another live run was placing (left to it)


def _place(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)  # the project's temp pattern: a killed run's leftover is cleaned by the next run
    try:
        if mode == "symlink":
            os.symlink(src.resolve(), tmp)
        elif mode == "hardlink":
            os.link(src, tmp)
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):  # an error or an interrupt before the replace
            tmp.unlink()


def make_subset(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    n: Sequence[int] | None = None,
    fraction: float | None = None,
    seed: int = 0,
    mode: str = "symlink",
) -> SubsetResult:
    """``n`` is one count for all inputs or one per input (``--n 800 1500 1000``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    folders = [Path(p) for p in inputs]
    counts: list[int | None]
    if n is not None:
        if len(n) not in (1, len(folders)):
            raise ValueError(f"give one --n, or one per --input ({len(folders)}), not {len(n)}")
        given: list[int | None] = list(n)
        counts = given * len(folders) if len(n) == 1 else given
    else:
        counts = [None] * len(folders)
    names = [p.resolve().name for p in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"input folders must have distinct names (they become OUT/<name>): {names}")
    out = Path(out_dir)
    per, written, existing, busy = [], 0, 0, 0
    plans = []
    for i, (folder, cnt) in enumerate(zip(folders, counts)):
        files = [p.relative_to(folder).as_posix() for p in list_images(folder, allow_empty=False)]
        # a different seed per input, derived from the user's seed, so equal-sized folders get unrelated picks
        picked = choose(files, cnt, fraction if cnt is None else None, seed + 1_000_003 * i)
        # a re-run resumes; a re-run with another seed/n into the same OUT would silently leave the union
        dst_dir = out / names[i]
        if dst_dir.is_dir():
            extra = sorted({p.relative_to(dst_dir).as_posix() for p in list_images(dst_dir)} - set(picked))
            if extra:
                raise ValueError(
                    f"{dst_dir} already holds {len(extra)} image(s) that are not in this subset (e.g. "
                    f"{extra[0]}; another --seed/--n/--fraction?); use a new --out"
                )
        plans.append((folder, files, picked))
    for i, (folder, files, picked) in enumerate(plans):
        for rel in picked:
            dst = out / names[i] / rel
            if dst.exists() or dst.is_symlink():
                existing += 1
                continue
            with OutputClaim(dst) as owned:
                if not owned:
                    busy += 1
                elif dst.exists() or dst.is_symlink():  # placed by another run meanwhile
                    existing += 1
                else:
                    _place(folder / rel, dst, mode)
                    written += 1
        per.append((folder, len(files), len(picked)))
    return SubsetResult(per, written, existing, busy)
