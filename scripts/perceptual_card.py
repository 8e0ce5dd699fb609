"""Model card of a perceptual nano candidate: scores against ``default``, bicubic and Magic Kernel Sharp 2021 on the
held-out photos, and side-by-side crops at fixed boxes. Run once on the checkpoint to release:

    python scripts/perceptual_card.py RUN/models/net_g_ema_2500.safetensors --work /tmp/card \\
        [--set old_x050=datasets/photos_val_x050] [--span-eval DIR] [--reuse]

Scores: ``paragonsr eval --tile 0`` per held-out set (x2 antialiased bicubic LR; PSNR/SSIM on Y, border 2, 8-bit
outputs; every perceptual metric whose weights are fetched: LPIPS-alex, LPIPS-vgg, DISTS, ST-LPIPS-alex, NIQE with
the MATLAB pristine model and with the project's fit, BRISQUE). The sets default to the committed held-out lists
(``configs/meta_info/photos_val.txt`` as ``old``, ``photos2_val_{manmade,nature,objects}.txt``) under
``--data-root`` (``../shared/data``), linked into ``WORK/sets``; ``--set NAME=DIR`` adds one (``--sets-only``: only
those). Eval folders stay under ``WORK/eval/<set>/``: ``baselines`` (bicubic, MKS, default) and one per candidate;
``--reuse`` keeps those that already score their models, so the next candidate costs only its own eval. ``--span-eval DIR`` adds the rows of an earlier
``paragonsr eval`` of SPAN x2 ch48 (``DIR/<set>/per_image.csv``) on the same images.

Writes ``OUT/README.md`` (the card: means over all images, per set, the issue's targets), ``OUT/card.json`` and
``OUT/crops/<box>.png`` (bicubic | MKS 2021 | default | candidate | HR, 2x nearest zoom).
A metric marked † shares a network with a training loss of that model (optimistic there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from paragonsr.deploy.card_tables import (
    METRICS,
    mark,
    mean,
    metric_columns,
    metric_weights,
    no_nan,
    packaged_train_weights,
    read_scores,
    render,
    targets,
)

REPO = Path(__file__).resolve().parents[1]
MKS = "magic_sharp_2021"
LISTS = {  # default held-out sets: name -> (list, folder under --data-root)
    "old": ("configs/meta_info/photos_val.txt", "photos"),
    "p2_manmade": ("configs/meta_info/photos2_val_manmade.txt", "photos2"),
    "p2_nature": ("configs/meta_info/photos2_val_nature.txt", "photos2"),
    "p2_objects": ("configs/meta_info/photos2_val_objects.txt", "photos2"),
}


class Box(NamedTuple):
    """A fixed crop: ``size`` px square at (``top``, ``left``) of the HR image ``image`` (file name)."""

    name: str
    image: str
    top: int
    left: int
    what: str
    size: int = 160


BOXES = (  # chosen by eye on the held-out photos (HR pixels); text, man-made structure, fine natural texture
    Box("text", "kait_herzog_8242.jpg", 620, 270, "painted letters on weathered wood (road sign)"),
    Box(
        "structure", "casa_mila.jpg", 280, 220, "window grille, railing and shutter slats (courtyard facade)"
    ),
    Box("feathers", "brendon_van_zyl_o9vnybnvtpm.jpg", 340, 180, "robin: eye, beak, breast feathers"),
    Box("scales", "lizard.jpg", 560, 600, "lizard scales over weathered wood grain"),
    Box("foliage", "kde_OneStandsOut.jpg", 560, 940, "pine needles on dark ground"),
)


def parse_box(text: str) -> Box:
    """``NAME=IMAGE:TOP,LEFT[,SIZE]`` -> Box. Raises ValueError with the expected form."""
    try:
        name, rest = text.split("=", 1)
        image, nums = rest.rsplit(":", 1)
        vals = [int(v) for v in nums.split(",")]
        return Box(name, image, vals[0], vals[1], "given on the command line", *vals[2:3])
    except (ValueError, IndexError):
        raise ValueError(f"--box {text!r}: expected NAME=IMAGE:TOP,LEFT[,SIZE] (HR pixels)") from None


def link_sets(data_root: Path, work: Path) -> dict[str, Path]:
    """The committed held-out lists as folders of links under ``work/sets`` (``paragonsr eval --gt`` reads a flat
    folder). Raises FileNotFoundError naming the first listed photo that is missing."""
    sets = {}
    for name, (listing, sub) in LISTS.items():
        folder = work / "sets" / name
        folder.mkdir(parents=True, exist_ok=True)
        for line in (REPO / listing).read_text(encoding="utf-8").split():
            src = (data_root / sub / line).resolve()
            if not src.is_file():
                raise FileNotFoundError(f"{listing}: {src} is missing (give --data-root or --set NAME=DIR)")
            dst = folder / Path(line).name
            if not dst.exists():
                dst.symlink_to(src)
        sets[name] = folder
    return sets


def crop_rows(
    boxes: tuple[Box, ...], sets: dict[str, Path], methods: list[tuple[str, Any]], out: Path, scale: int = 2
) -> list[dict[str, Any]]:
    """Write ``out/crops/<box>.png`` (one labelled row per box: each method, then HR).
    Each method runs on the box's LR region plus a 16 px LR margin of the eval's LR (antialiased bicubic of the
    whole image), so the crop matches the whole-image output. Boxes whose image is in no set are skipped."""
    from paragonsr.deploy.model_card import comparison_image
    from paragonsr.evaluate import bicubic_lq, mod_crop, quantize8
    from paragonsr.io.image_io import read_image, to_rgb

    done = []
    for box in boxes:
        path = next((d / box.image for d in sets.values() if (d / box.image).is_file()), None)
        if path is None:
            print(f"note: crop '{box.name}' skipped: {box.image} is in none of the sets")
            continue
        gt = mod_crop(to_rgb(read_image(path)[0]), scale)
        lq = bicubic_lq(gt, scale)
        t, lf, s = box.top, box.left, box.size
        if t + s > gt.shape[0] or lf + s > gt.shape[1]:
            raise ValueError(
                f"crop '{box.name}': box {t},{lf} size {s} exceeds {box.image} ({gt.shape[1]}x{gt.shape[0]})"
            )
        m = 16
        y0, x0 = max(0, t // scale - m), max(0, lf // scale - m)
        y1, x1 = min(lq.shape[0], (t + s) // scale + m), min(lq.shape[1], (lf + s) // scale + m)
        panels = []
        for label, run in methods:
            sr = run(np.ascontiguousarray(lq[y0:y1, x0:x1]))
            oy, ox = t - y0 * scale, lf - x0 * scale
            panels.append((label, quantize8(sr[oy : oy + s, ox : ox + s]) / 255.0))
        panels.append(("HR", quantize8(gt[t : t + s, lf : lf + s]) / 255.0))
        png = comparison_image(out / "crops" / f"{box.name}.png", panels)
        print(f"crop {box.name}: {png}")
        done.append({"box": box.name, "image": box.image, "top": t, "left": lf, "size": s, "what": box.what,
                     "file": f"crops/{box.name}.png"})  # fmt: skip
    return done


def crop_sets(sets: dict[str, Path], args: argparse.Namespace) -> dict[str, Path]:
    """Where the crop boxes' photos are looked up: the scored sets, then (``--sets-only``) the committed held-out
    lists when their photos are there, so a card scored on a few sets still shows the fixed crops."""
    if not args.sets_only:
        return sets
    try:
        linked = link_sets(args.data_root, args.work)
    except FileNotFoundError:
        return sets
    return {**sets, **{k: v for k, v in linked.items() if k not in sets}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "candidate", type=Path, help="perceptual checkpoint (unfused run checkpoint or packaged file)"
    )
    ap.add_argument(
        "--work", type=Path, required=True, help="folder for the eval runs (outside the repository)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "perceptual_nano", help="card folder")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another held-out set (or one of the lists')",
    )
    ap.add_argument(
        "--sets-only",
        action="store_true",
        help="score only the --set folders, not the committed held-out lists",
    )
    ap.add_argument(
        "--box",
        action="append",
        default=[],
        metavar="NAME=IMAGE:TOP,LEFT[,SIZE]",
        help="crop box (replaces the fixed ones)",
    )
    ap.add_argument(
        "--span-eval", type=Path, help="folder of an earlier eval of SPAN x2 ch48 (<set>/per_image.csv)"
    )
    ap.add_argument(
        "--reuse", action="store_true", help="keep a set's eval when it already scores these models"
    )
    ap.add_argument("--label", default="perceptual", help="the candidate's row label")
    ap.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"perceptual metrics to score (default {','.join(METRICS)})",
    )
    ap.add_argument("--weights-dir", type=Path, help="where the metric weights are (default: paragonsr's)")
    args = ap.parse_args(argv)  # fmt: skip

    from paragonsr.cli import main as cli
    from paragonsr.evaluate import model_method, resampler_method
    from paragonsr.infer import packaged_model
    from paragonsr.metrics.perceptual import training_loss_specs, training_weight_names

    try:
        boxes = tuple(parse_box(b) for b in args.box) or BOXES
        sets = {} if args.sets_only else link_sets(args.data_root, args.work)
        for text in args.set:
            name, sep, folder = text.partition("=")
            if not sep or not name or not Path(folder).is_dir():
                raise ValueError(f"--set {text!r}: expected NAME=DIR with an existing folder")
            sets[name] = Path(folder)
        keys = [k.strip() for k in args.metrics.split(",") if k.strip()]
        wdir, not_scored = metric_weights(keys, args.weights_dir, args.work)
        for line in not_scored:
            print(f"note: {line}")
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    cand = packaged_model(str(args.candidate)) if not args.candidate.exists() else args.candidate
    cand_label = Path(str(args.candidate)).stem
    cand_sha = hashlib.sha256(cand.read_bytes()).hexdigest()
    rows: list[dict[str, Any]] = []
    span_rows: list[dict[str, Any]] = []
    counts = {}
    for name, folder in sets.items():
        got: list[dict[str, Any]] = []
        # the baselines once per set (kept for the next candidate with --reuse), then the candidate
        for part, models, want in (
            ("baselines", ["default"], {"bicubic", MKS, "default"}),
            (f"{cand_label}_{cand_sha[:8]}", [str(cand)], {cand_label}),
        ):
            ev = args.work / "eval" / name / part
            csv_path = ev / "per_image.csv"
            have = (
                {r["method"] for r in read_scores(csv_path)} if args.reuse and csv_path.is_file() else set()
            )
            if not want <= have:
                argv_eval = ["eval", "--gt", str(folder), *(a for m in models for a in ("--model", m)), "--tile", "0",
                             "--no-crops", "--weights-dir", str(wdir), "-o", str(ev), *(["--resampler", MKS] if MKS in want else [])]  # fmt: skip
                print(f"== {name}: paragonsr {' '.join(argv_eval)}", flush=True)
                if cli(argv_eval) != 0:
                    print(f"error: paragonsr eval failed on set {name} ({folder})", file=sys.stderr)
                    return 1
            got += [r for r in read_scores(csv_path) if r["method"] in want]
        counts[name] = len({r["image"] for r in got})
        rows += [{**r, "set": name} for r in got]
        if args.span_eval is not None and (args.span_eval / name / "per_image.csv").is_file():
            span = read_scores(args.span_eval / name / "per_image.csv")
            span_rows += [{**r, "set": name} for r in span if r["method"].startswith("span")]

    labels = {"bicubic": "bicubic", MKS: "MKS 2021", "default": "default", cand_label: args.label}
    trained = {
        "default": packaged_train_weights("default"),
        args.label: training_weight_names(training_loss_specs(cand)),
    }
    cols = [c for c in metric_columns(rows) if c[0] in ("psnr_y", "ssim_y", *keys)]
    means: dict[str, dict[str, dict[str, float]]] = {}
    for scope in ["all", *sets]:
        sel = [r for r in rows if scope == "all" or r["set"] == scope]
        means[scope] = {lab: {k: mean(sel, m, k) for k, _, _ in cols} for m, lab in labels.items()}
    span_label = None
    if span_rows:
        span_label = "SPAN x2 ch48 (official)"
        for scope in means:
            sel = [r for r in span_rows if scope == "all" or r["set"] == scope]
            means[scope][span_label] = {
                k: mean(sel, sel[0]["method"], k) if sel else math.nan for k, _, _ in cols
            }
    marks = {
        lab: {k: mark(w, trained.get(lab)) if lab in trained else "" for k, _, w in cols}
        for lab in means["all"]
    }
    if span_label:
        marks[span_label] = {k: "" for k, _, _ in cols}

    methods = [("bicubic", resampler_method("bicubic", 2).run), ("MKS 2021", resampler_method(MKS, 2).run),
               ("default", model_method(packaged_model("default"), 2, tile=0).run),
               (args.label, model_method(cand, 2, tile=0).run)]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    card = {
        "candidate": {"file": cand.name, "sha256": cand_sha},
        "sets": counts,
        "images": sum(counts.values()),
        "columns": cols,
        "marks": marks,
        "means": means,
        "not_scored": not_scored,
        "targets": targets(means["all"], args.label, span_label),
        "span_note": "SPAN x2 ch48: the official fidelity checkpoint, scored on the same photos by an earlier "
        "`paragonsr eval` (PSNR-Y and LPIPS-alex; 2.2 M parameters against the nano's 31 k fused); never shipped."
        if span_label
        else "",
        "crops": crop_rows(boxes, crop_sets(sets, args), methods, args.out),
    }
    from paragonsr.utils.atomic import atomic_write_text

    atomic_write_text(args.out / "card.json", json.dumps(no_nan(card), indent=1, allow_nan=False) + "\n")
    atomic_write_text(args.out / "README.md", render(card))
    print(render(card))
    print(f"card: {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
