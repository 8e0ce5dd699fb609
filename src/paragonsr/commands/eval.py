"""`paragonsr eval`: score models and resamplers side by side on a GT folder and write a report."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from paragonsr.commands import clean_temps
from paragonsr.tiling.option import add_tile_argument

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from paragonsr.evaluate import Method

HELP = (
    "evaluate models and classic resamplers (PSNR/SSIM-Y, LPIPS/DISTS when their weights are fetched, speed) on "
    "a GT folder, or on standard benchmark sets (--benchmark); writes a markdown report"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="FILE",
        help="checkpoint (.safetensors/.pth) or .onnx file, or a packaged model ('default', 'classic', 'perceptual'); "
        "repeat for several models",
    )
    parser.add_argument("--gt", type=Path, help="folder of ground-truth images")
    parser.add_argument(
        "--benchmark",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="standard-protocol benchmark set (folder of HR images, e.g. Set5; repeatable): MATLAB-style bicubic "
        "LR, PSNR/SSIM-Y, border = scale; writes benchmark.csv and a paper-style report.md",
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--lq", type=Path, help="folder of LQ images matching the GT file names (stem)")
    src.add_argument(
        "--degrade",
        default="bicubic",
        help="make the LQ from GT with this degradation pipeline (default: antialiased bicubic)",
    )
    parser.add_argument("--scale", type=int, default=2, help="scale factor (default 2)")
    parser.add_argument(
        "--resampler",
        action="append",
        default=[],
        metavar="KERNEL",
        help="also score a classic resampler, e.g. magic_sharp_2021 or lanczos3 (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradation pipeline")
    add_tile_argument(parser, default=512)
    parser.add_argument("--limit", type=int, default=0, help="only the first N GT images")
    parser.add_argument("--no-crops", action="store_true", help="skip the crop comparison images")
    parser.add_argument(
        "--weights-dir",
        type=Path,
        help="folder with perceptual-metric weights; LPIPS-alex, LPIPS-vgg, DISTS (and any other registered "
        "perceptual metric) are scored when their files are there and verified (default $PARAGONSR_WEIGHTS or "
        "~/.cache/paragonsr/weights; nothing is downloaded: `paragonsr weights fetch` gets them)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="report folder")


def run(args: argparse.Namespace) -> int:
    from paragonsr.evaluate import (
        bicubic_lq,
        evaluate,
        resampler_method,
        write_report,
    )
    from paragonsr.io.files import list_images
    from paragonsr.io.image_io import read_image, to_rgb

    if args.benchmark:
        return _run_benchmark(args)
    if args.gt is None:
        print("error: give --gt FOLDER or --benchmark FOLDER", file=sys.stderr)
        return 2
    try:
        gt_paths = list_images(args.gt, recursive=False, what="GT", allow_empty=False)
    except FileNotFoundError as exc:
        print(f"error: --gt: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        gt_paths = gt_paths[: args.limit]
    scale = args.scale

    lq_for: Callable[[Path, np.ndarray], np.ndarray]
    if args.lq is not None:
        lq_files = {p.stem: p for p in list_images(args.lq, recursive=False, what="LQ", allow_empty=False)}
        if not any(p.stem in lq_files for p in gt_paths):
            print(
                f"error: --lq {args.lq}: no LQ image has the name of a GT image (GT e.g. {gt_paths[0].name}, "
                f"LQ e.g. {next(iter(lq_files.values())).name}); LQ files must share the GT file names (stem)",
                file=sys.stderr,
            )
            return 2

        def lq_from_folder(path: Path, gt: np.ndarray) -> np.ndarray:
            if path.stem not in lq_files:
                raise FileNotFoundError(f"no LQ image for {path.name} in {args.lq}")
            lq, _ = read_image(lq_files[path.stem])
            lq = to_rgb(lq)
            want = (gt.shape[0] // scale, gt.shape[1] // scale)
            if lq.shape[:2] != want:
                raise ValueError(f"{lq_files[path.stem]}: LQ is {lq.shape[:2]}, expected {want} for x{scale}")
            return lq

        lq_for = lq_from_folder
    elif args.degrade == "bicubic":

        def lq_bicubic(path: Path, gt: np.ndarray) -> np.ndarray:
            return bicubic_lq(gt, scale)

        lq_for = lq_bicubic

    else:
        from paragonsr.degrade import build_degradation

        lq_for = pipeline_lq(build_degradation(args.degrade, None, scale), args.seed)

    from paragonsr.ops.resample import canonical_kernel

    kernels = ["bicubic"]  # the baseline every delta is measured against
    for k in args.resampler:
        name = canonical_kernel(k)  # unknown names: one line with a did-you-mean (printed by the CLI)
        if name not in kernels:
            kernels.append(name)
    methods = [resampler_method(k, scale) for k in kernels]
    try:
        methods += model_methods(args.model, scale, args.tile)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with _claimed(args.out) as owned:
        if not owned:
            return 1
        deep = _start_report(args)
        crops = None if args.no_crops else args.out / "crops"
        report = evaluate(
            gt_paths, methods, scale, lq_for, crops, deep_metrics=deep, weights_dir=args.weights_dir
        )
        md = write_report(report, args.out)
    print(md.read_text())
    print(f"report: {md}")
    if report.failed:
        print(
            f"error: {len(report.failed)} image(s) could not be scored (listed in the report)",
            file=sys.stderr,
        )
        return 1
    return 0


@contextlib.contextmanager
def _claimed(out: Path) -> Iterator[bool]:
    """Hold the report folder ``out`` (through its ``report.md`` claim, :mod:`paragonsr.utils.claims`) for the
    whole evaluation: a second ``eval`` into the same folder prints one line and yields False instead of
    computing and overwriting the same report, crops and per-image scores."""
    from paragonsr.utils.claims import OutputClaim, describe_holder

    claim = OutputClaim(out / "report.md")
    try:
        if not claim.acquire():
            print(
                f"error: {out}: this report folder is being written by {describe_holder(claim.holder)}; not "
                "evaluated twice (wait for it, or use another -o)",
                file=sys.stderr,
            )
            yield False
            return
        yield True
    finally:
        claim.release()


def _start_report(args: argparse.Namespace) -> list[str]:
    """In a held report folder: remove temp files a killed run left, and return the perceptual metrics to score
    (keys, :func:`paragonsr.evaluate.available_deep_metrics`), printing one line for each one left out."""
    from paragonsr.evaluate import available_deep_metrics

    clean_temps(args.out, recursive=True)
    deep, skipped = available_deep_metrics(args.weights_dir)
    for line in skipped:
        print(line)
    return deep


def model_labels(values: list[str]) -> list[str]:
    """One distinct report label per ``--model`` value: the file stem (or the packaged name), then as many parent
    folders as it takes to tell files with the same stem apart (``run_a/models/net_g_ema_2000``)."""
    paths = [Path(v) for v in values]
    depth = [1] * len(paths)
    while True:
        labels = ["/".join(p.parts[-d:]).removesuffix(p.suffix) for p, d in zip(paths, depth)]
        clash = {
            i for i, a in enumerate(labels) for j, b in enumerate(labels) if paths[i] != paths[j] and a == b
        }
        grow = [i for i in clash if depth[i] < len(paths[i].parts)]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):  # the same value given twice: number the repeats
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def pipeline_lq(pipeline: Callable[..., dict], seed: int) -> Callable[[Path, np.ndarray], np.ndarray]:
    """``(path, gt) -> lq`` for :func:`paragonsr.evaluate.evaluate`: ``pipeline`` (a ``paragonsr.degrade``
    pipeline) applied to the GT (float32 HWC RGB in [0, 1]), the LQ rounded to 8 bit. Each image gets its own
    random stream, seeded by ``seed`` (>= 0) and its file name, so the LQ does not depend on the order images are
    visited in."""
    import numpy as np

    def lq_for(path: Path, gt: np.ndarray) -> np.ndarray:
        out = pipeline(gt.astype(np.float32), np.random.default_rng([seed, *path.name.encode()]))
        return np.round(np.clip(out["lq"], 0, 1) * 255).astype(np.float32) / 255

    return lq_for


def model_methods(values: list[str], scale: int, tile: str) -> list[Method]:
    """One evaluation :class:`~paragonsr.evaluate.Method` per ``--model`` value (a checkpoint or ONNX path, or a
    packaged name such as ``default``), labelled by :func:`model_labels`; ``tile`` as ``--tile`` takes it.

    Raises FileNotFoundError for a missing file, ValueError for a bad tile value or an unreadable checkpoint."""
    from paragonsr.evaluate import model_method
    from paragonsr.infer import packaged_model  # ``default`` / ``classic`` / ``perceptual``: packaged models
    from paragonsr.tiling import parse_tile

    size = parse_tile(tile, "--tile")  # InputError (a ValueError): one line, exit status 2
    return [
        model_method(packaged_model(v), scale, tile=size, label=label)
        for v, label in zip(values, model_labels(values))
    ]


def _run_benchmark(args: argparse.Namespace) -> int:
    from paragonsr.benchmark import matlab_bicubic_method, run_benchmark, write_benchmark
    from paragonsr.evaluate import resampler_method
    from paragonsr.io.files import list_images
    from paragonsr.ops.resample import canonical_kernel

    if args.gt is not None or args.lq is not None or args.degrade != "bicubic":
        print(
            "error: --benchmark makes its own bicubic LR from the HR folders; drop --gt/--lq/--degrade",
            file=sys.stderr,
        )
        return 2
    sets = []
    for folder in args.benchmark:
        try:
            paths = list_images(folder, recursive=False, what="benchmark", allow_empty=False)
        except FileNotFoundError as exc:
            print(f"error: --benchmark: {exc}", file=sys.stderr)
            return 2
        sets.append((folder.name, paths[: args.limit] if args.limit else paths))
    scale = args.scale
    methods = [matlab_bicubic_method(scale)]
    try:
        kernels = [canonical_kernel(k) for k in args.resampler]
        methods += [resampler_method(k, scale) for k in dict.fromkeys(kernels) if k != "bicubic"]
        methods += model_methods(args.model, scale, args.tile)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with _claimed(args.out) as owned:
        if not owned:
            return 1
        deep = _start_report(args)
        scores, failed = run_benchmark(
            sets, methods, scale, args.out, deep_metrics=deep, weights_dir=args.weights_dir
        )
        csv_path, md = write_benchmark(scores, args.out, scale, failed)
    print(md.read_text())
    print(f"table: {csv_path}")
    if failed:
        print(f"error: {len(failed)} image(s) could not be scored (listed in the report)", file=sys.stderr)
        return 1
    return 0
