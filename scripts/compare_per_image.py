"""Paired per-image comparison of two methods from ``paragonsr eval`` outputs: is a 0.01 dB difference real?

Set averages of two checkpoints often differ by hundredths of a dB, inside the spread from one checkpoint to the
next. Scoring the *same* images with both methods makes the comparison paired: this script reads the
``per_image.csv`` files that ``paragonsr eval`` writes (``OUT/per_image.csv`` for ``--gt``,
``OUT/per_set/<set>/per_image.csv`` for ``--benchmark``) and reports, per set and over all images, the mean
difference B − A, its paired standard error, a seeded bootstrap 95 % interval of the mean difference, and on how
many images B is better, equal (|Δ| ≤ ``--tie``, default 0: equal at the CSV's four decimals) or worse. With
few images (n < 10) the percentile bootstrap interval is narrower than a Student-t interval would be: read it as
the least uncertainty there is, not the most.

    paragonsr eval --benchmark Set5 --benchmark Set14 --model a.safetensors --model b.safetensors -o cmp/
    python scripts/compare_per_image.py cmp/ --a a --b b [--metric psnr_y] [-o cmp/paired.md]

A method is named as in the CSV's ``method`` column (as ``paragonsr eval`` labels models: a checkpoint's file stem,
made unique when two share one). Inputs are CSV files or folders searched for ``per_image.csv``, each file read
once; a set is named by its folder, relative to the inputs' common folder when two folders share a name (two runs'
``Set5``), and then no pooled row is written, since it would count the same images twice. Errors are one line
naming the file, and nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path

import numpy as np


class CompareError(ValueError):
    """A per-image CSV that cannot be compared; the message names the file."""


def find_csvs(inputs: list[Path]) -> list[Path]:
    """``per_image.csv`` files: the given files, and every one under each given folder; each file once.

    Raises:
        CompareError: an input that does not exist, or a folder without any ``per_image.csv``.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in inputs:
        if p.is_dir():
            found = sorted(p.rglob("per_image.csv"))
            if not found:
                raise CompareError(
                    f"{p}: no per_image.csv in this folder (an output folder of `paragonsr eval`)"
                )
        elif p.is_file():
            found = [p]
        else:
            raise CompareError(f"{p}: no such file or folder")
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def set_names(paths: list[Path]) -> tuple[list[str], bool]:
    """A name per CSV, and whether the sets may be pooled: each folder's own name when those are unique (True),
    else each folder relative to the common one (False: two runs' sets of the same name hold the same images)."""
    folders = [p.resolve().parent for p in paths]
    leaves = [f.name for f in folders]
    if len(set(leaves)) == len(leaves):
        return leaves, True
    root = Path(os.path.commonpath(folders))
    return [str(f.relative_to(root)) or f.name for f in folders], False


def read_pairs(path: Path, a: str, b: str, metric: str = "psnr_y") -> list[tuple[str, float, float]]:
    """``[(image, score_a, score_b), ...]`` in the CSV's image order.

    Raises:
        CompareError: no ``image``/``method``/``metric`` column, a short row, a score that is not a finite
            number, an image scored twice by one method, a method with no rows, or images scored by only one of
            the two methods; the message names the file (and line).
    """
    scores: dict[str, dict[str, tuple[float, int]]] = {a: {}, b: {}}
    methods: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            for col in ("image", "method", metric):
                if col not in cols:
                    raise CompareError(f"{path}: no column '{col}' (columns: {', '.join(cols) or 'none'})")
            for line, row in enumerate(reader, start=2):
                image, method, cell = row.get("image"), row.get("method"), row.get(metric)
                if image is None or method is None or cell is None:
                    raise CompareError(f"{path} line {line}: short row (expected {len(cols)} columns)")
                if method not in methods:
                    methods.append(method)
                if method not in scores:
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise CompareError(f"{path} line {line}: {metric} {cell!r} is not a finite number")
                if image in scores[method]:
                    first = scores[method][image][1]
                    raise CompareError(
                        f"{path} line {line}: image '{image}' already scored by '{method}' (line {first})"
                    )
                scores[method][image] = (value, line)
    except UnicodeDecodeError as e:
        raise CompareError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    for m in (a, b):
        if not scores[m]:
            there = ", ".join(methods) if methods else "none, no rows"
            raise CompareError(f"{path}: no rows of method '{m}' (methods there: {there})")
    only = sorted(set(scores[a]) ^ set(scores[b]))
    if only:
        raise CompareError(f"{path}: images scored by only one of '{a}' and '{b}': {', '.join(only)}")
    return [(img, scores[a][img][0], scores[b][img][0]) for img in scores[a]]


def paired_stats(
    deltas: np.ndarray, tie: float = 0.0, n_boot: int = 10000, seed: int = 0
) -> dict[str, float | int]:
    """Mean of ``deltas`` (B − A), paired standard error, bootstrap 95 % interval and win/tie/loss counts.

    Args:
        deltas: shape (n,), per-image differences B − A (e.g. dB), n ≥ 1.
        tie: |Δ| up to this (≥ 0) counts as a tie; Δ is rounded to 1e-9 first, so differences of scores
            printed to a few decimals classify exactly.
        n_boot: bootstrap resamples of the n images (with replacement); seeded by ``seed``.

    Returns:
        ``n, mean, se, lo, hi, better, tie, worse`` (better + tie + worse = n); ``se`` is NaN for n = 1 (no
        spread to estimate); ``lo``/``hi`` are the 2.5th / 97.5th percentiles of the resampled means.

    Raises:
        ValueError: no deltas, or a negative or non-finite ``tie``.
    """
    n = int(deltas.size)
    if n == 0:
        raise ValueError("paired_stats: no images")
    if not (math.isfinite(tie) and tie >= 0):
        raise ValueError(f"paired_stats: tie must be a finite number >= 0, got {tie}")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = deltas[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    d = np.round(deltas, 9)
    ties = np.abs(d) <= tie
    return {
        "n": n,
        "mean": float(deltas.mean()),
        "se": float(deltas.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "lo": float(lo),
        "hi": float(hi),
        "better": int(((d > 0) & ~ties).sum()),
        "tie": int(ties.sum()),
        "worse": int(((d < 0) & ~ties).sum()),
    }


def report(
    sets: dict[str, list[tuple[str, float, float]]],
    a: str,
    b: str,
    metric: str,
    tie: float,
    seed: int,
    pooled: bool = True,
) -> str:
    """Markdown table: one row per set, then (``pooled`` and more than one set) all images, each counted once."""
    lines = [
        f"# {b} against {a}: paired per-image {metric}",
        "",
        f"Δ = {b} − {a} per image; s.e. = paired standard error; 95 % = bootstrap interval of the mean Δ "
        f"(10,000 resamples, seed {seed}); better / tie / worse: images where {b} scores higher / within "
        f"{tie:g} / lower.",
        "",
        f"| set | n | {a} | {b} | mean Δ | s.e. | 95 % interval | better / tie / worse |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = list(sets.items())
    if pooled and len(rows) > 1:
        rows.append(("all images", [p for pairs in sets.values() for p in pairs]))
    for name, pairs in rows:
        sa = np.array([p[1] for p in pairs])
        sb = np.array([p[2] for p in pairs])
        s = paired_stats(sb - sa, tie=tie, seed=seed)
        se = "—" if math.isnan(float(s["se"])) else f"{s['se']:.4f}"
        lines.append(
            f"| {name} | {s['n']} | {sa.mean():.4f} | {sb.mean():.4f} | {s['mean']:+.4f} | {se} | "
            f"[{s['lo']:+.4f}, {s['hi']:+.4f}] | {s['better']} / {s['tie']} / {s['worse']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring); returns 0, or 2 after a one-line error with nothing written."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "inputs", nargs="+", type=Path, help="per_image.csv files or `paragonsr eval` output folders"
    )
    ap.add_argument("--a", required=True, help="reference method (as in the CSV's method column)")
    ap.add_argument("--b", required=True, help="method compared with it")
    ap.add_argument("--metric", default="psnr_y", help="CSV column to compare (default psnr_y)")
    ap.add_argument("--tie", type=float, default=0.0, help="|Δ| up to this is a tie (default 0)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("-o", "--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)
    if args.a == args.b:
        ap.error(f"--a and --b name the same method '{args.a}'")
    if not (math.isfinite(args.tie) and args.tie >= 0):
        ap.error(f"--tie {args.tie}: expected a finite number >= 0")
    try:
        paths = find_csvs(args.inputs)
        names, pooled = set_names(paths)
        sets = {name: read_pairs(path, args.a, args.b, args.metric) for name, path in zip(names, paths)}
    except (CompareError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = report(sets, args.a, args.b, args.metric, args.tie, args.seed, pooled=pooled)
    print(text, end="")
    if args.out:
        from paragonsr.utils.atomic import atomic_output

        try:
            with atomic_output(args.out) as tmp:
                tmp.write_text(text)
        except OSError as e:
            print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
