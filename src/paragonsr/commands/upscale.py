"""``paragonsr upscale``: upscale files, folders and globs with a model (torch or ONNX) or a classic resampler.

This module holds the CLI (arguments, set-up, summary line); inputs, output names, option checks and the backend
are in :mod:`paragonsr.commands.upscale_inputs`, the claim / compute / write loop in
:mod:`paragonsr.commands.upscale_loop`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from paragonsr.commands import clean_temps
from paragonsr.commands.upscale_inputs import (
    check_numbers,
    collect_inputs,
    drop_own_outputs,
    make_backend,
    output_path,
)
from paragonsr.tiling.option import add_tile_argument

__all__ = [
    "HELP",
    "add_arguments",
    "collect_inputs",
    "drop_own_outputs",
    "make_backend",
    "output_path",
    "run",
]

HELP = (
    "Upscale images with a model (.safetensors/.pth/.onnx) or a resampler (magic-sharp-2021, bicubic, ...)."
)


EXAMPLES = """examples:
  paragonsr upscale photo.jpg -o out/ -m model.safetensors          # model scale, metadata tells the arch
  paragonsr upscale shots/ -r -o up/ -m realesr-general-x4v3.pth --outscale 2 --ext webp --quality 90
  paragonsr upscale 'scans/*.tif' -o up/ -m model.onnx --provider cuda  # 16-bit TIFF stays 16-bit
  paragonsr upscale logo.png -o logo_x2.png --resampler magic-sharp-2021 --scale 2
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EXAMPLES
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output folder, or a file path for a single input")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "-m",
        "--model",
        help="model file: .safetensors / .pth (torch) or .onnx, or a packaged model: default, classic, perceptual",
    )
    src.add_argument(
        "--resampler",
        help="classic resizing instead of a model: magic-sharp-2021 (mks2021), magic-sharp-2013, magic, "
        "bicubic, lanczos3, bilinear, box, nearest",
    )
    p.add_argument("--arch", help="architecture name for checkpoints without paragonsr metadata")
    p.add_argument(
        "--size-multiple",
        type=int,
        metavar="N",
        help="the model needs H and W divisible by N (inputs are padded, outputs cropped back); default: the "
        "model's metadata, or found by probing a foreign ONNX file",
    )
    p.add_argument(
        "-s", "--scale", type=float, help="resampler scale (default 2); with a model: the expected scale"
    )
    p.add_argument("--outscale", type=float, help="final scale: resample the model output (MKS2021) to this")
    add_tile_argument(p, default="auto", short=True)
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=32,
        help="pixels shared by neighbouring tiles (default 32); with the default blend, tiled == untiled "
        "once overlap/4 >= the model's receptive-field radius",
    )
    p.add_argument(
        "--tile-blend", type=float, default=0.5, help="fraction of the overlap cross-faded (0 = cut)"
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto: bf16+channels_last on CPUs with native bf16, bf16/fp16 on CUDA, else fp32",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "ncnn"),
        default=os.environ.get("PARAGONSR_BACKEND") or "auto",
        help="auto (default, or $PARAGONSR_BACKEND): onnx for .onnx files, ncnn (CPU) for .param files; for torch "
        "models on the CPU the faster of torch and ONNX Runtime, measured once per model and machine and cached",
    )
    p.add_argument("--provider", help="ONNX Runtime execution provider (cpu, cuda, tensorrt, directml, ...)")
    p.add_argument(
        "--gray-mode", choices=("per_channel", "y"), default="per_channel", help="RGB into 1-ch models"
    )
    p.add_argument("--suffix", default="", help="appended to output file names, e.g. _x2")
    p.add_argument(
        "--ext",
        choices=("png", "jpg", "webp", "tif", "bmp", "gif"),
        help="output format (default: input's); animations need gif, png (APNG) or webp",
    )
    p.add_argument(
        "--first-frame",
        action="store_true",
        help="animated GIF/WebP/APNG: upscale only the first frame into a still image (default: every frame)",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 0-100 (default 95)")
    p.add_argument("-r", "--recursive", action="store_true", help="search folders recursively")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never inputs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from paragonsr.commands.upscale_loop import upscale_files
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.infer.onnx_cache import set_exporter
    from paragonsr.infer.upscale import Upscaler

    set_exporter(export_onnx)  # --backend auto may export a torch model once for ONNX Runtime (cached)
    from paragonsr.io.image_io import READ_EXTS, WRITE_EXTS

    # OpenCV would print its own decoder noise next to our one-line messages.
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

    def err(msg: str) -> None:
        tqdm.write(f"error: {msg}", file=sys.stderr)

    try:
        bad_option = check_numbers(args)
    except ValueError as exc:
        bad_option = str(exc)
    if bad_option:
        err(bad_option)
        return 2
    start, started_wall = time.perf_counter(), time.time()
    files, problems = collect_inputs(args.inputs, args.recursive, exclude=Path(args.output))
    for msg in problems:
        err(msg)
    out = Path(args.output)
    single_file = out if out.suffix.lower() in WRITE_EXTS else None
    if single_file is None and out.suffix.lower() in READ_EXTS:
        err(f"{out}: cannot write '{out.suffix}' files; use one of {', '.join(sorted(WRITE_EXTS))}")
        return 2
    if single_file is not None and len(files) > 1:
        err(f"{out}: is a file name but {len(files)} inputs were given; pass a folder as --output")
        return 2
    files = drop_own_outputs(files, args, single_file)
    clean_temps(out.parent if single_file is not None else out, recursive=args.recursive)
    try:
        backend = make_backend(args)
    except (OSError, ValueError, KeyError, RuntimeError, ModuleNotFoundError) as exc:
        err(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
        return 2
    if args.model and args.scale and float(args.scale) != float(backend.scale):
        err(
            f"{args.model}: the model upscales x{backend.scale} but --scale {args.scale:g} was requested "
            f"(use --outscale {args.scale:g} to resample the model's output)"
        )
        return 2
    upscaler = Upscaler(backend, args.tile, args.tile_overlap, args.tile_blend, args.gray_mode)
    c = upscale_files(files, args, upscaler, single_file, started_wall, err)
    failed = c.failed + len(problems)
    secs = time.perf_counter() - start
    where = single_file or out
    print(
        f"upscaled {c.done} image(s) with {backend!r} -> {where} in {secs:.1f}s"
        + (f"; {c.skipped} skipped (exist)" if c.skipped else "")
        + (f"; {c.busy} left to another run writing them" if c.busy else "")
        + (f"; {failed} problem(s)" if failed else "")
    )
    return 1 if failed or not (c.done or c.skipped or c.busy) else 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience for python -m
    parser = argparse.ArgumentParser(prog="paragonsr upscale", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
