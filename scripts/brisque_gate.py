"""Figures behind the data filter's BRISQUE gate: BRISQUE (LIVE model) of 256-px tiles that pass the stage-1
heuristics, clean and degraded (Gaussian blur σ 2, JPEG q10, Gaussian noise σ 25, as scripts/fit_niqe.py), and the
share of each kept / dropped by candidate thresholds.

    nice -n 10 python scripts/brisque_gate.py --photos ../shared/data/photos [--per-image 8] [--tile 256]

Needs the ``brisque_live`` weights (``paragonsr weights fetch brisque_live``). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_niqe import DEGRADATIONS, degrade, stage1_tiles

from paragonsr.io.files import read_image_native
from paragonsr.metrics.brisque import brisque, load_live_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--per-image", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[40.0, 45.0, 50.0, 55.0, 60.0])
    args = ap.parse_args(argv)
    model = load_live_model()
    rng = np.random.default_rng(0)
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = [read_image_native(p)[..., :3] for p in paths]
    tiles = stage1_tiles(images, args.tile, args.per_image, rng)
    print(f"{len(tiles)} stage-1 tiles of {args.tile} px from {len(paths)} photos", file=sys.stderr)
    scores = {"clean": [brisque(t, model) for t in tiles]}
    for kind in DEGRADATIONS:
        scores[kind] = [brisque(degrade(t, kind, rng), model) for t in tiles]
        print(f"  {kind} done", file=sys.stderr)
    print("| scores | p5 | p50 | p95 |\n|---|---:|---:|---:|")
    for k, v in scores.items():
        p = np.percentile(v, [5, 50, 95])
        print(f"| {k} | {p[0]:.1f} | {p[1]:.1f} | {p[2]:.1f} |")
    print("\n| max | clean kept | " + " | ".join(f"{k} dropped" for k in DEGRADATIONS) + " |")
    print("|---:|---:|" + "---:|" * len(DEGRADATIONS))
    for t in args.thresholds:
        kept = np.mean(np.array(scores["clean"]) <= t)
        drops = [np.mean(np.array(scores[k]) > t) for k in DEGRADATIONS]
        print(f"| {t:g} | {kept:.0%} | " + " | ".join(f"{d:.0%}" for d in drops) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
