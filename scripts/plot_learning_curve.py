"""Learning curve from a ``paragonsr eval --benchmark`` CSV whose methods are checkpoints of one run.

Methods named ``<anything>_<iteration>`` (e.g. ``net_g_ema_2500``) become points at that iteration; other rows are
ignored except ``bicubic``, drawn as a line. One panel per set; published reference rows can be drawn with
``--ref NAME=SET:PSNR`` (repeatable), and the start of each training stage with ``--stage ITER=LABEL``.

    paragonsr eval --benchmark Set5 --benchmark Set14 --model run/models/net_g_ema_500.safetensors ... -o curve/
    python scripts/plot_learning_curve.py curve/benchmark.csv -o curve.png --ref FSRCNN=Set5:37.00
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path


def read_curve(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{set: [(iteration, psnr_y), ...]}`` sorted by iteration, from the methods ending in ``_<int>``."""
    curve: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            m = re.search(r"_(\d+)$", row["method"])
            if m:
                curve[row["set"]].append((int(m.group(1)), float(row["psnr_y"])))
    return {k: sorted(v) for k, v in curve.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--ref", action="append", default=[], help="NAME=SET:PSNR horizontal reference line")
    ap.add_argument(
        "--stage", action="append", default=[], help="ITER=LABEL vertical line where a stage starts"
    )
    ap.add_argument("--linear", action="store_true", help="linear iteration axis (default: log)")
    ap.add_argument("--title", default="PSNR-Y by training iteration")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paragonsr.utils.atomic import atomic_output

    curve = read_curve(args.csv)
    if not curve:
        raise SystemExit(f"error: {args.csv}: no method ends in _<iteration>")
    refs = [r.replace("=", ":").split(":") for r in args.ref]
    stages = [(int(it), label) for it, label in (s.split("=", 1) for s in args.stage)]
    fig, axes = plt.subplots(1, len(curve), figsize=(4.5 * len(curve), 3.6), squeeze=False)
    for ax, (name, pts) in zip(axes[0], curve.items()):  # sets in the order of the CSV
        ax.plot(*zip(*pts), marker="o", label="checkpoint (EMA)")
        for ref, ref_set, psnr in refs:
            if ref_set == name:
                ax.axhline(float(psnr), ls="--", color="gray")
                ax.annotate(ref, (pts[0][0], float(psnr)), va="bottom", fontsize=8, color="gray")
        for it, label in stages:
            ax.axvline(it, ls=":", color="tab:red", alpha=0.6)
            ax.annotate(
                label, (it, pts[0][1]), rotation=90, va="bottom", ha="right", fontsize=8, color="tab:red"
            )
        ax.set(
            title=name, xlabel="iteration", ylabel="PSNR-Y (dB)", xscale="linear" if args.linear else "log"
        )
        ax.grid(alpha=0.3)
    fig.suptitle(args.title)
    fig.tight_layout()
    with atomic_output(args.out, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
