"""``paragonsr data``: dataset preparation — meta_info, subsets, sub-image extraction, quality filter, NIQE fit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = (
    "dataset tools: meta-info, subset, extract-tiles, multiscale (downscaled GT copies), filter (staged quality "
    "gates, offline), niqe-fit"
)


def _workers_default() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="TOOL", required=True)

    p = sub.add_parser(
        "meta-info", help="write a meta_info.txt (Real-ESRGAN relative paths, or BasicSR shapes)"
    )
    p.add_argument("--input", nargs="+", required=True, help="image folder(s)")
    p.add_argument(
        "--root", nargs="*", default=None, help="root(s) the paths are relative to (default: parent)"
    )
    p.add_argument("--out", "--meta_info", dest="out", required=True, help="meta_info.txt to write")
    p.add_argument("--format", choices=("realesrgan", "basicsr"), default="realesrgan")
    p.add_argument("--check", action="store_true", help="decode every image and report unreadable ones")

    p = sub.add_parser("subset", help="reproducible random subset of image folders (links or copies)")
    p.add_argument("--input", nargs="+", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--n", nargs="+", type=int, help="images to take: one count, or one per --input")
    g.add_argument("--fraction", type=float, help="fraction of each input to take")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (gets one sub-folder per input)")
    p.add_argument("--mode", choices=("symlink", "hardlink", "copy"), default="symlink")

    p = sub.add_parser("extract-tiles", help="BasicSR extract_subimages: crop/step/thresh tiles, resumable")
    p.add_argument("--input", required=True, help="image folder (sub-folders are mirrored under --out)")
    p.add_argument("--out", required=True)
    p.add_argument("--crop", type=int, default=480)
    p.add_argument("--step", type=int, default=240)
    p.add_argument(
        "--thresh", type=int, default=0, help="keep a last edge tile when the leftover exceeds this"
    )
    p.add_argument("--ext", default=".png", help="tile format (.png default; 'same' keeps the input's)")
    p.add_argument("--workers", type=int, default=_workers_default())

    p = sub.add_parser(
        "multiscale",
        help="downscaled GT copies (x0.75, x0.5, x1/3, MATLAB antialiased bicubic) plus a meta_info.txt",
    )
    p.add_argument("--input", required=True, help="HR image folder")
    p.add_argument(
        "--meta_info", default=None, help="only the images this meta_info lists (paths under --input)"
    )
    p.add_argument("--out", required=True, help="output folder (PNG copies and meta_info.txt)")
    p.add_argument(
        "--scales", nargs="+", type=float, default=None, help="factors in (0, 1] (default: 1 0.75 0.5 0.3333)"
    )
    p.add_argument("--min-size", type=int, default=128, help="skip copies whose shorter side is below this")

    p = sub.add_parser(
        "filter",
        help="tile + score + gate (entropy, contrast, sharpness, blockiness, aliasing, NIQE; IQA opt-in)",
    )
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="report CSV (summary .md and <stem>_plots/ go beside it)")
    p.add_argument("--config", default=None, help="gates YAML (default gates: docs/data_filter.md)")
    p.add_argument("--keep-dir", default=None, help="save passing tiles here as PNG")
    p.add_argument(
        "--keep-unverified",
        action="store_true",
        help="also save tiles whose only issue is a skipped gate (also on a resumed run)",
    )
    p.add_argument(
        "--niqe-model", default=None, help="NIQE model .npz from niqe-fit (default: the packaged model)"
    )
    p.add_argument("--tile", type=int, default=None, help="tile size (overrides the config)")
    p.add_argument("--stride", type=int, default=None, help="tile stride (default: tile size)")
    p.add_argument("--workers", type=int, default=_workers_default())
    p.add_argument("--restart", action="store_true", help="discard an existing report instead of resuming it")
    p.add_argument("--no-plots", action="store_true")

    p = sub.add_parser("niqe-fit", help="fit the NIQE pristine model on your own clean images")
    p.add_argument("--input", required=True, help="folder of pristine images")
    p.add_argument("--out", required=True, help="model .npz")
    p.add_argument("--patch", type=int, default=64, help="block size (tiles must be at least this big)")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument(
        "--tile", type=int, default=256, help="filter tile size the stored p95 ('max: auto') is measured at"
    )


def _meta_info(args: argparse.Namespace) -> int:
    from paragonsr.data.meta_info import build_meta_info, write_meta_info
    from paragonsr.utils.claims import hold_output

    with hold_output(args.out, "meta_info"):  # a second run into the same file refuses in one line
        res = build_meta_info(args.input, args.root, args.format, args.check)
        write_meta_info(args.out, res.lines)
    print(f"wrote {len(res.lines)} entries to {args.out}")
    for b in res.bad:
        print(f"unreadable: {b}", file=sys.stderr)
    return 1 if res.bad else 0


def _not_inside(out: str, inputs: list[str], flag: str) -> None:
    """Image outputs inside an input folder would be read back as inputs by the next (resumed) run."""
    dst = Path(out).resolve()
    for folder in inputs:
        src = Path(folder).resolve()
        if dst == src or src in dst.parents:
            raise ValueError(f"{flag} {out} must not be the input folder {folder} or inside it")


def _subset(args: argparse.Namespace) -> int:
    from paragonsr.commands import clean_temps
    from paragonsr.data.subset import make_subset

    _not_inside(args.out, args.input, "--out")
    if Path(args.out).is_dir():
        clean_temps(args.out, recursive=True)  # temp links/copies and claims a killed run left
    res = make_subset(args.input, args.out, args.n, args.fraction, args.seed, args.mode)
    for folder, avail, taken in res.per_input:
        print(f"{folder}: {taken} of {avail}")
    print(
        f"{args.mode}: {res.written} new, {res.skipped_existing} already there"
        + (f", {res.busy} left to another run placing them" if res.busy else "")
        + f" -> {args.out}"
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    from paragonsr.commands import clean_temps
    from paragonsr.data.tiles import extract_tiles
    from paragonsr.io.files import list_images
    from paragonsr.utils.atomic import clean_stale_temps

    ext = None if args.ext == "same" else ("." + args.ext.lstrip("."))
    _not_inside(args.out, [args.input], "--out")  # tiles in the input would be tiled again by the next run
    busy: list[str] = []
    clean_temps(args.out, recursive=True)  # temp files and claims a killed run left
    try:
        written, errors = extract_tiles(
            list_images(args.input, allow_empty=False),
            args.out,
            args.crop,
            args.step,
            args.thresh,
            args.workers,
            ext,
            root=args.input,
            busy=busy,
        )
    finally:  # temp files of workers terminated mid-write (Ctrl-C, a full disk): their pids are gone by now
        clean_stale_temps(args.out, recursive=True, min_age_s=0.0)
    for line in busy:
        print(f"skip: {line}", file=sys.stderr)
    print(
        f"wrote {written} tiles to {args.out}"
        + (f"; {len(busy)} image(s) left to another run" if busy else "")
    )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _multiscale(args: argparse.Namespace) -> int:
    from paragonsr.commands import clean_temps
    from paragonsr.data.datasets import gt_paths
    from paragonsr.data.multiscale import DEFAULT_SCALES, make_multiscale

    _not_inside(args.out, [args.input], "--out")  # copies in the input would be copied again by the next run
    paths = gt_paths(args.input, args.meta_info)
    clean_temps(args.out)  # temp files and claims a killed run left

    def progress(i: int, n: int, name: str) -> None:
        print(f"[{i}/{n}] {name}", file=sys.stderr, flush=True)

    res = make_multiscale(paths, args.out, args.scales or DEFAULT_SCALES, args.min_size, progress)
    for line in res.busy:
        print(f"skip: {line}", file=sys.stderr)
    print(
        f"wrote {len(res.written)} copies, {len(res.kept)} already there"
        + (f", {len(res.busy)} image(s) left to another run" if res.busy else "")
        + f" -> {args.out} (meta_info.txt)"
    )
    for line in res.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    for e in res.errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if res.errors else 0


def _filter(args: argparse.Namespace) -> int:
    from paragonsr.data.filter import load_config, run_filter

    _not_inside(args.out, [args.input], "--out")  # its histograms (PNG) would be read back as images
    if args.keep_dir:
        _not_inside(args.keep_dir, [args.input], "--keep-dir")
    # the tile override goes into load_config: a niqe gate's 'max: auto' is resolved there for the tile size
    tile = None
    if args.tile:
        tile = {"size": args.tile, "stride": args.stride or args.tile}
    elif args.stride:
        tile = {"size": load_config(args.config).tile_size, "stride": args.stride}
    if tile and (tile["size"] < 32 or tile["stride"] < 1):  # same rule as tile.size / tile.stride in a config
        raise ValueError(f"--tile must be >= 32 and --stride >= 1 (got {tile['size']}, {tile['stride']})")
    cfg = load_config(args.config, niqe_model=args.niqe_model, tile=tile)
    for note in cfg.notes:
        print(f"note: {note}", file=sys.stderr)
    res = run_filter(
        args.input,
        args.out,
        cfg,
        args.keep_dir,
        args.keep_unverified,
        args.workers,
        args.restart,
        not args.no_plots,
    )
    print(res.summary)
    if res.plots:
        print(f"histograms: {res.plots[0].parent}")
    return 1 if res.errors else 0


def _niqe_fit(args: argparse.Namespace) -> int:

    from paragonsr.utils.claims import hold_output

    with hold_output(args.out, "NIQE model"):  # a second run into the same file refuses in one line
        return _niqe_fit_held(args)


def _niqe_fit_held(args: argparse.Namespace) -> int:
    from paragonsr.io.files import list_images, read_image_native
    from paragonsr.metrics.niqe_fit import NIQEModel

    paths = list_images(args.input)[: args.max_images]
    imgs, skipped = [], 0
    for p in paths:
        try:
            img = read_image_native(p)
        except (ValueError, OSError) as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        imgs.append(img[..., :3] if img.shape[2] >= 3 else img)
    model = NIQEModel.fit(imgs, args.patch, tile=args.tile)
    model.save(args.out)
    print(f"fitted on {len(imgs)} image(s) -> {args.out}")
    if model.tile_p95 is not None:
        print(
            f"95th percentile of the pristine images' {args.tile}-px tile scores: {model.tile_p95:.2f} "
            "(gate 'max: auto')"
        )
    return 1 if skipped else 0  # like every data tool: a bad file is reported and makes the exit non-zero


def run(args: argparse.Namespace) -> int:
    from paragonsr.utils.claims import OutputBusy

    handlers = {
        "meta-info": _meta_info,
        "subset": _subset,
        "extract-tiles": _extract,
        "multiscale": _multiscale,
        "filter": _filter,
        "niqe-fit": _niqe_fit,
    }
    try:
        return handlers[args.data_command](args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OutputBusy as exc:  # another run is computing this very output: not an input error
        print(f"error: {exc}", file=sys.stderr)
        return 1
