"""Paired per-image comparison of two methods from ``paragonsr eval`` outputs: is a 0.01 dB difference real?

Set averages of two checkpoints often differ by hundredths of a dB, inside the spread from one checkpoint to the
next. Scoring the *same* images with both methods makes the comparison paired: this script reads the
``per_image.csv`` files that ``paragonsr eval`` writes (``OUT/per_image.csv`` for ``--gt``,
``OUT/per_set/<set>/per_image.csv`` for ``--benchmark``) and reports, per set and over all images, the mean
difference B − A, its paired standard error, a seeded bootstrap 95 % interval of the mean difference, and on how
many images B is better, equal (|Δ| < ``--tie``) or worse.

    paragonsr eval --benchmark Set5 --benchmark Set14 --model a.safetensors --model b.safetensors -o cmp/
    python scripts/compare_per_image.py cmp/ --a a --b b [--metric psnr_y] [-o cmp/paired.md]

A method is named as in the CSV's ``method`` column (a checkpoint's file stem). Inputs are CSV files or folders
searched for ``per_image.csv``; a set is named by the CSV's folder. Errors are one line naming the file, and
nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np


class CompareError(ValueError):
    """A per-image CSV that cannot be compared; the message names the file."""


def find_csvs(inputs: list[Path]) -> list[Path]:
    """``per_image.csv`` files: the given files, and every one under each given folder (sorted)."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            found = sorted(p.rglob("per_image.csv"))
            if not found:
                raise CompareError(
                    f"{p}: no per_image.csv in this folder (an output folder of `paragonsr eval`)"
                )
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise CompareError(f"{p}: no such file or folder")
    return out


def read_pairs(path: Path, a: str, b: str, metric: str = "psnr_y") -> list[tuple[str, float, float]]:
    """``[(image, score_a, score_b), ...]`` in the CSV's image order.

    Raises:
        CompareError: no ``image``/``method``/``metric`` column, a score that is not a finite number, a method
            with no rows, or images scored by only one of the two methods.
    """
    scores: dict[str, dict[str, float]] = {a: {}, b: {}}
    methods: list[str] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for col in ("image", "method", metric):
            if col not in cols:
                raise CompareError(f"{path}: no column '{col}' (columns: {', '.join(cols) or 'none'})")
        for line, row in enumerate(reader, start=2):
            method = row["method"]
            if method not in methods:
                methods.append(method)
            if method in scores:
                try:
                    value = float(row[metric])
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise CompareError(f"{path} line {line}: {metric} {row[metric]!r} is not a finite number")
                scores[method][row["image"]] = value
    for m in (a, b):
        if not scores[m]:
            raise CompareError(f"{path}: no rows of method '{m}' (methods there: {', '.join(methods)})")
    only = sorted(set(scores[a]) ^ set(scores[b]))
    if only:
        raise CompareError(f"{path}: images scored by only one of '{a}' and '{b}': {', '.join(only)}")
    return [(img, scores[a][img], scores[b][img]) for img in scores[a]]


def paired_stats(
    deltas: np.ndarray, tie: float = 5e-4, n_boot: int = 10000, seed: int = 0
) -> dict[str, float | int]:
    """Mean of ``deltas`` (B − A), paired standard error, bootstrap 95 % interval and win/tie/loss counts.

    Args:
        deltas: shape (n,), per-image differences B − A (e.g. dB), n ≥ 1.
        tie: |Δ| below this counts as a tie.
        n_boot: bootstrap resamples of the n images (with replacement); seeded by ``seed``.

    Returns:
        ``n, mean, se, lo, hi, better, tie, worse``; ``se`` is NaN for n = 1 (no spread to estimate).
    """
    n = int(deltas.size)
    if n == 0:
        raise ValueError("paired_stats: no images")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = deltas[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "n": n,
        "mean": float(deltas.mean()),
        "se": float(deltas.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "lo": float(lo),
        "hi": float(hi),
        "better": int((deltas >= tie).sum()),
        "tie": int((np.abs(deltas) < tie).sum()),
        "worse": int((deltas <= -tie).sum()),
    }


def report(
    sets: dict[str, list[tuple[str, float, float]]], a: str, b: str, metric: str, tie: float, seed: int
) -> str:
    """Markdown table: one row per set, then all images pooled (each image counts once)."""
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
    if len(rows) > 1:
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


def set_name(path: Path) -> str:
    return path.parent.name or str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "inputs", nargs="+", type=Path, help="per_image.csv files or `paragonsr eval` output folders"
    )
    ap.add_argument("--a", required=True, help="reference method (as in the CSV's method column)")
    ap.add_argument("--b", required=True, help="method compared with it")
    ap.add_argument("--metric", default="psnr_y", help="CSV column to compare (default psnr_y)")
    ap.add_argument("--tie", type=float, default=5e-4, help="|Δ| below this is a tie (default 0.0005)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("-o", "--out", type=Path, help="also write the markdown table here")
    args = ap.parse_args(argv)
    try:
        sets: dict[str, list[tuple[str, float, float]]] = {}
        for path in find_csvs(args.inputs):
            name = set_name(path)
            while name in sets:
                name += "'"
            sets[name] = read_pairs(path, args.a, args.b, args.metric)
    except (CompareError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = report(sets, args.a, args.b, args.metric, args.tie, args.seed)
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
