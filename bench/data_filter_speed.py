"""Quality-filter throughput, measured side by side in one run: ms per 256-px tile for each metric, and the whole
pipeline with the default gates (tiling + stage-1 gates + NIQE against the packaged model + CSV) in tiles/s with
1 worker vs N workers.

    .venv/bin/python bench/data_filter_speed.py [--images 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from paragonsr.data.filter import load_config, run_filter  # noqa: E402
from paragonsr.data.filter.heuristics import HEURISTICS  # noqa: E402
from paragonsr.io.files import read_image_native  # noqa: E402
from paragonsr.metrics.niqe_fit import PACKAGED_NIQE, NIQEModel  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    paths = sorted(PHOTOS.glob("*.jpg"))
    imgs = [read_image_native(p) for p in paths[: a.images]]
    tiles = [im[y : y + 256, x : x + 256] for im in imgs[:4] for y in (0, 256) for x in (0, 256, 512)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = NIQEModel.fit([im[::2, ::2] for im in (read_image_native(p) for p in paths[-6:])])
        model.save(tmp / "niqe.npz")
        print(f"per-metric cost on {len(tiles)} 256-px tiles:")
        packaged = NIQEModel.load(PACKAGED_NIQE)
        niqe = [(f"niqe {packaged.patch}px", packaged.score), (f"niqe {model.patch}px", model.score)]
        for name, fn in [*HEURISTICS.items(), *niqe]:
            t0 = time.perf_counter()
            for t in tiles:
                fn(t)
            print(f"  {name:11s} {1000 * (time.perf_counter() - t0) / len(tiles):7.2f} ms/tile")
        src = tmp / "in"
        src.mkdir()
        for p in paths[: a.images]:
            shutil.copy(p, src / p.name)
        cfg = load_config()
        rates = {}
        for w in (1, a.workers):
            t0 = time.perf_counter()
            res = run_filter(src, tmp / f"r{w}.csv", cfg, workers=w, progress=False, plots=False)
            dt = time.perf_counter() - t0
            rates[w] = len(res.rows) / dt
            print(f"pipeline, {w} worker(s): {len(res.rows)} tiles in {dt:.1f} s = {rates[w]:.0f} tiles/s")
        print(f"speed-up {a.workers} workers vs 1: {rates[a.workers] / rates[1]:.2f}x")
        t0 = time.perf_counter()
        run_filter(src, tmp / f"r{a.workers}.csv", cfg, workers=a.workers, progress=False, plots=False)
        print(f"resume of a finished report (nothing to score): {time.perf_counter() - t0:.2f} s")
        print(f"verdicts: {dict(zip(*np.unique([r['verdict'] for r in res.rows], return_counts=True)))}")


if __name__ == "__main__":
    main()
