"""Fit the NIQE pristine model that ships with paragonsr and calibrate its per-tile-size thresholds.

    nice -n 10 python scripts/fit_niqe.py [--photos ../shared/data/photos] [--out src/paragonsr/assets/niqe]

Fits on the CC0 / CC-BY photographs of the project's photo set only (the licences that allow shipping something
derived from them with a credit; see ``CREDITS``), then, for each filter tile size, scores

- the clean tiles that pass the stage-1 heuristics (what the NIQE gate sees in a default run), and
- the same tiles degraded three ways: Gaussian blur σ = 2, JPEG quality 10, Gaussian noise σ = 25 (0-255),

and places the threshold halfway (geometric mean) between the 95th percentile of the clean scores and the 5th
percentile of the degradation that comes closest to them; when those overlap (small tiles: blur is not
separable with a few blocks), at the 99th percentile of the clean scores, so clean tiles are kept and the
stage-1 sharpness gate is left to catch the blur. It prints, per tile size, how many clean tiles pass and how
many degraded ones fail, on the fitting photos and on the other (held-out) photos of the folder. Writes ``pristine.npz`` (the model, read by ``NIQEModel.load``) and
``pristine.json`` (provenance: inputs with their SHA-256, parameters, and the figures printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from paragonsr.data.filter import load_config
from paragonsr.data.filter.heuristics import HEURISTICS
from paragonsr.io.files import read_image_native
from paragonsr.metrics.niqe_fit import NIQEModel
from paragonsr.utils.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
# CC0 / CC-BY photographs of the photo set (the CC-BY-SA and GPL ones are used for held-out figures only)
CC_PHOTOS: dict[str, tuple[str, str]] = {
    "lomiri_seeding_by_Clements_Engelhardt.jpg": ("Clemens Engelhardt", "CC0-1.0"),
    "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
    "lomiri_friends_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
    "lomiri_life_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
    "lomiri_picosdeeuropa_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
    "lomiri_sunset_by_Aitzol_Berasategi.jpg": ("Aitzol Berasategi", "CC-BY-4.0"),
    "lomiri_Picture_0B_by_freespace.jpg": ('Trevor "Freespace"', "CC-BY-4.0"),
    "lomiri_Picture_1A_by_freespace.jpg": ('Trevor "Freespace"', "CC-BY-4.0"),
    "lomiri_Wine_by_Jakkub_Mede.jpg": ("Jakub Mede", "CC-BY-4.0"),
}
TILE_SIZES = (64, 96, 128, 192, 256, 384, 512)


def degrade(tile: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The three 'clearly degraded' cases the threshold must reject (uint8 RGB in, uint8 RGB out)."""
    if kind == "blur2":
        return cv2.GaussianBlur(tile, (0, 0), 2.0)
    if kind == "jpeg10":
        ok, buf = cv2.imencode(".jpg", tile[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 10])
        assert ok
        return cast(np.ndarray, cv2.imdecode(buf, cv2.IMREAD_COLOR))[..., ::-1]
    if kind == "noise25":
        return np.clip(tile + rng.normal(0, 25, tile.shape), 0, 255).astype(np.uint8)
    raise ValueError(kind)


DEGRADATIONS = ("blur2", "jpeg10", "noise25")


def stage1_tiles(images: list[np.ndarray], size: int, per_image: int, rng: np.random.Generator) -> list:
    """Up to ``per_image`` non-overlapping ``size`` tiles per image that pass the default stage-1 gates."""
    gates = [g for g in load_config().gates if g.stage == 1]
    out = []
    for img in images:
        grid = [
            (y, x)
            for y in range(0, img.shape[0] - size + 1, size)
            for x in range(0, img.shape[1] - size + 1, size)
        ]
        rng.shuffle(grid)
        kept = 0
        for y, x in grid:
            t = np.ascontiguousarray(img[y : y + size, x : x + size])
            if all(g.check(HEURISTICS[g.metric](t)) for g in gates):
                out.append(t)
                kept += 1
                if kept == per_image:
                    break
    return out


def measure(model: NIQEModel, tiles: list[np.ndarray], rng: np.random.Generator) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {"clean": [model.score(t) for t in tiles]}
    for kind in DEGRADATIONS:
        scores[kind] = [model.score(degrade(t, kind, rng)) for t in tiles]
    return scores


def place_threshold(scores: dict[str, list[float]]) -> float:
    """Halfway (log) between clean p95 and the closest degradation's p5; clean p99 when they overlap."""
    clean95 = float(np.percentile(scores["clean"], 95))
    worst5 = min(float(np.percentile(scores[k], 5)) for k in DEGRADATIONS)
    if worst5 > clean95:
        return float(np.sqrt(clean95 * worst5))
    return float(np.percentile(scores["clean"], 99))


def markdown_table(figures: dict[str, dict]) -> str:
    """The calibration figures as the table in docs/data_filter.md."""
    lines = [
        "| tile px | threshold | clean kept: fitting photos | held-out photos | degraded dropped (fitting / held-out):"
        " blur σ 2 | JPEG q10 | noise σ 25 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in figures.items():
        f, h = row["fit"], row["held_out"]
        deg = " | ".join(f"{f[k + '_fail']:.0%} / {h[k + '_fail']:.0%}" for k in DEGRADATIONS)
        lines.append(
            f"| {size} | {row['threshold']['value']:.2f} | {f['clean_pass']:.0%} (n={f['n']}) | "
            f"{h['clean_pass']:.0%} (n={h['n']}) | {deg} |"
        )
    return "\n".join(lines)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "photos")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "paragonsr" / "assets" / "niqe")
    ap.add_argument("--patch", type=int, default=32, help="NIQE block size (px)")
    ap.add_argument("--sharp-ref", type=float, default=50.0, help="block σ percentile for the 75 %% rule")
    ap.add_argument("--per-image", type=int, default=16, help="calibration tiles per photo and tile size")
    ap.add_argument("--tiles", type=int, nargs="+", default=list(TILE_SIZES))
    ap.add_argument(
        "--fit-scales", type=float, nargs="+", default=[1.0], help="also fit on area-downscaled copies"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dry-run", action="store_true", help="print the figures, write nothing")
    args = ap.parse_args(argv)
    if not args.photos.is_dir():
        print(f"error: photo folder not found: {args.photos}", file=sys.stderr)
        return 2
    missing = [n for n in CC_PHOTOS if not (args.photos / n).is_file()]
    if missing:
        print(f"error: {args.photos} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    fit_paths = [args.photos / n for n in CC_PHOTOS]
    held_paths = sorted(p for p in args.photos.glob("*.jpg") if p.name not in CC_PHOTOS)
    fit_imgs = [read_image_native(p)[..., :3] for p in fit_paths]
    held_imgs = [read_image_native(p)[..., :3] for p in held_paths]
    scaled = [
        img if f == 1 else cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        for f in args.fit_scales
        for img in fit_imgs
    ]
    model = NIQEModel.fit(scaled, args.patch, tile=256, max_tiles=0, sharp_ref=args.sharp_ref)
    print(
        f"fitted on {len(fit_imgs)} photos at scales {args.fit_scales}, patch {args.patch}, sharp_ref {args.sharp_ref}"
    )
    rng = np.random.default_rng(args.seed)
    thresholds: dict[int, float] = {}
    figures: dict[str, dict] = {}
    for size in args.tiles:
        fit_scores = measure(model, stage1_tiles(fit_imgs, size, args.per_image, rng), rng)
        thr = place_threshold(fit_scores)
        thresholds[size] = thr
        held_scores = measure(model, stage1_tiles(held_imgs, size, max(1, args.per_image // 2), rng), rng)
        row: dict[str, dict] = {"threshold": {"value": round(thr, 4)}}
        for name, sc in (("fit", fit_scores), ("held_out", held_scores)):
            clean = np.asarray(sc["clean"])
            row[name] = {"n": len(clean), "clean_pass": round(float((clean <= thr).mean()), 4)}
            row[name]["clean_p50"] = round(float(np.median(clean)), 3)
            for kind in DEGRADATIONS:
                d = np.asarray(sc[kind])
                row[name][f"{kind}_fail"] = round(float((d > thr).mean()), 4)
                row[name][f"{kind}_p5"] = round(float(np.percentile(d, 5)), 3)
        figures[str(size)] = row
        f, h = row["fit"], row["held_out"]
        print(
            f"tile {size:4d}: threshold {thr:6.2f} | clean pass fit {f['clean_pass']:.1%} (n={f['n']}), "
            f"held-out {h['clean_pass']:.1%} (n={h['n']}) | degraded fail (fit/held-out) "
            + ", ".join(f"{k} {f[k + '_fail']:.0%}/{h[k + '_fail']:.0%}" for k in DEGRADATIONS)
        )
    model.thresholds = thresholds
    print(markdown_table(figures))
    if args.dry_run:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "pristine.npz")
    provenance = {
        "what": "NIQE pristine model (MVG of 36 natural-scene-statistics features per block) + thresholds",
        "made_by": "scripts/fit_niqe.py",
        "args": {k: v for k, v in vars(args).items() if k not in ("dry_run", "photos", "out")},
        "fitted_on": [
            {
                "file": p.name,
                "sha256": sha256(p),
                "author": CC_PHOTOS[p.name][0],
                "license": CC_PHOTOS[p.name][1],
            }
            for p in fit_paths
        ],
        "source": "Debian package lomiri-wallpapers-16.04, long side downscaled to <= 2048 px, JPEG q97",
        "held_out": [p.name for p in held_paths],
        "degradations": {
            "blur2": "Gaussian blur sigma 2",
            "jpeg10": "JPEG q10",
            "noise25": "Gaussian noise sigma 25",
        },
        "thresholds": {str(k): round(v, 4) for k, v in thresholds.items()},
        "figures": figures,
    }
    atomic_write_text(args.out / "pristine.json", json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {args.out / 'pristine.npz'} and {args.out / 'pristine.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
