"""``paragonsr upscale``: upscale files, folders and globs with a model (torch or ONNX) or a classic resampler."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import glob
import itertools
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from paragonsr.commands import clean_temps
from paragonsr.tiling.option import add_tile_argument
from paragonsr.utils.claims import OutputClaim, describe_holder

HELP = (
    "Upscale images with a model (.safetensors/.pth/.onnx) or a resampler (magic-sharp-2021, bicubic, ...)."
)

_GLOB_CHARS = set("*?[")


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
        help="model file: .safetensors / .pth (torch) or .onnx, or a packaged model: default, classic",
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


def collect_inputs(
    specs: list[str], recursive: bool, exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, path relative to its root) for every image found, plus one message per spec that found nothing.

    Folder scans skip ``exclude`` when it is a subfolder of the scanned folder (the output folder: results of an
    earlier run must not become inputs of the next one)."""
    skip = exclude.resolve() if exclude is not None else None
    from paragonsr.io.image_io import READ_EXTS

    found: dict[Path, tuple[Path, Path]] = {}
    problems: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_file():
            found.setdefault(path.resolve(), (path, Path(path.name)))
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in path.glob(pattern) if f.is_file() and f.suffix.lower() in READ_EXTS)
            if skip is not None and skip != path.resolve() and skip.is_relative_to(path.resolve()):
                files = [f for f in files if not f.resolve().is_relative_to(skip)]
            if not files:
                problems.append(f"{path}: no images ({', '.join(READ_EXTS)}) in this folder")
            for f in files:
                found.setdefault(f.resolve(), (f, f.relative_to(path)))
        elif _GLOB_CHARS & set(spec):
            files = sorted(
                Path(f)
                for f in glob.glob(spec, recursive=True)
                if Path(f).is_file() and Path(f).suffix.lower() in READ_EXTS
            )
            if not files:
                problems.append(f"{spec}: no image files match")
            # Keep the part below the pattern's fixed prefix so 'a/**/*.png' cannot map two files to one output.
            base = Path(
                *[part for part in itertools.takewhile(lambda q: not (_GLOB_CHARS & set(q)), path.parts)]
            )
            for f in files:
                found.setdefault(
                    f.resolve(), (f, f.relative_to(base) if f.is_relative_to(base) else Path(f.name))
                )
        else:
            problems.append(f"{spec}: no such file or folder")
    return list(found.values()), problems


def make_backend(args: argparse.Namespace) -> Any:
    """Backend from the CLI options; the ONNX one is imported only when asked for."""
    from paragonsr.infer.backends import ResamplerBackend, load_backend

    if args.resampler:
        return ResamplerBackend(args.resampler, args.scale or 2)
    model = args.model
    if model is not None:
        from paragonsr.infer import packaged_model

        model = packaged_model(model)
    else:
        from paragonsr.infer import default_model_path

        model = default_model_path()
        if model is None:
            raise ValueError(
                "give --model FILE or --resampler NAME (no packaged default model in this install)"
            )
    hint = int(args.scale) if args.scale and float(args.scale).is_integer() else None
    return load_backend(
        model,
        args.backend or "torch",
        args.device,
        args.precision,
        args.provider,
        args.arch,
        hint,
        size_multiple=getattr(args, "size_multiple", None),
    )


def _output_path(src: Path, rel: Path, args: argparse.Namespace, single_file: Path | None) -> Path:
    from paragonsr.io.image_io import WRITE_EXTS

    if single_file is not None:
        return single_file
    ext = f".{args.ext}" if args.ext else src.suffix.lower()
    if ext not in WRITE_EXTS:
        ext = ".png"  # input format we can read but not write (e.g. .ppm)
    return Path(args.output) / rel.parent / f"{rel.stem}{args.suffix}{ext}"


def drop_own_outputs(
    files: list[tuple[Path, Path]], args: argparse.Namespace, single_file: Path | None
) -> list[tuple[Path, Path]]:
    """Leave out inputs that are this run's own outputs of other inputs (``upscale d -o d --suffix _x2`` run
    twice must not upscale ``a_x2.png`` into ``a_x2_x2.png``): a file whose name ends with ``--suffix`` and that
    another input's output path points at."""
    if not args.suffix or single_file is not None:
        return files
    produced = {_output_path(src, rel, args, None).resolve(): src for src, rel in files}
    keep, own = [], []
    for src, rel in files:
        parent = produced.get(src.resolve())
        if parent is not None and parent.resolve() != src.resolve() and src.stem.endswith(args.suffix):
            own.append(src)
        else:
            keep.append((src, rel))
    if own:
        print(
            f"skip: {len(own)} input(s) are outputs of this naming scheme (--suffix {args.suffix}), "
            f"e.g. {own[0]}",
            file=sys.stderr,
        )
    return keep


def _check_numbers(args: argparse.Namespace) -> str | None:
    """Options that would fail (or silently give nonsense, e.g. ``--outscale 0`` -> a 1x1 image) on every file:
    rejected once, before any work."""
    from paragonsr.tiling import parse_tile

    if args.outscale is not None and not args.outscale > 0:
        return f"--outscale must be a positive factor, got {args.outscale:g}"
    if args.scale is not None and not args.scale > 0:
        return f"--scale must be a positive factor, got {args.scale:g}"
    if not 0 <= args.quality <= 100:
        return f"--quality must be a JPEG/WebP quality in [0, 100], got {args.quality}"
    if not 0.0 <= args.tile_blend <= 1.0:
        return f"--tile-blend must be in [0, 1], got {args.tile_blend:g}"
    if args.tile_overlap < 0:
        return f"--tile-overlap must be >= 0 pixels, got {args.tile_overlap}"
    if getattr(args, "size_multiple", None) is not None and not 1 <= args.size_multiple <= 1024:
        return f"--size-multiple must be a whole number of pixels in [1, 1024], got {args.size_multiple}"
    args.tile = parse_tile(args.tile, "--tile")  # InputError: one line naming --tile
    return None


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.infer.onnx_cache import set_exporter
    from paragonsr.infer.overlap import OverlappedFiles
    from paragonsr.infer.upscale import Upscaler

    set_exporter(export_onnx)  # --backend auto may export a torch model once for ONNX Runtime (cached)
    from paragonsr.io.image_io import READ_EXTS, WRITE_EXTS, FloatRangeWarning

    # OpenCV would print its own decoder noise next to our one-line messages.
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

    def err(msg: str) -> None:
        tqdm.write(f"error: {msg}", file=sys.stderr)

    try:
        bad_option = _check_numbers(args)
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
    inputs = {src.resolve() for src, _ in files}
    done = skipped = failed = busy = 0
    claimed: dict[Path, Path] = {}  # output -> the input it belongs to in this run
    bar = tqdm(files, unit="img", disable=args.quiet or not files, dynamic_ncols=True)
    tiles: list[Any] = []  # a second bar for big images split into tiles

    def on_tile(done_tiles: int, total: int) -> None:
        if args.quiet or total <= 1:
            return
        if not tiles or tiles[0].total != total:  # new image, or auto tiling restarted with smaller tiles
            for t in tiles:
                t.close()
            tiles[:] = [tqdm(total=total, unit="tile", leave=False, position=1, dynamic_ncols=True)]
        tiles[0].update(done_tiles - tiles[0].n)
        if done_tiles == total:
            tiles.pop().close()

    stop = False  # a write hit a full disk: every further image would fail

    def describe(src: Path, exc: BaseException) -> str:
        text = (
            str(exc)
            if isinstance(exc, (OSError, ValueError, RuntimeError))
            else f"{type(exc).__name__}: {exc}"
        )
        return text if str(src) in text else f"{src}: {text}"

    def written(src: Path, claim: Any, exc: BaseException | None) -> None:
        nonlocal done, failed, stop
        try:
            if exc is None:
                done += 1
                return
            failed += 1
            if _disk_full(exc) and stop:
                return  # the write already in flight when the disk filled: said once, above
            if _disk_full(exc):
                stop = True
                err(
                    f"{describe(src, exc)}; stopped (the disk is full: every further image would fail; a rerun resumes)"
                )
            else:
                err(describe(src, exc))
        finally:
            claim.release()

    pipe = OverlappedFiles(
        upscaler, [src for src, _ in files], outscale=args.outscale, quality=args.quality,
        first_frame=args.first_frame, progress=on_tile,
    )  # fmt: skip
    for src, rel in bar:
        bar.set_postfix_str(src.name[-40:], refresh=False)
        dst = _output_path(src, rel, args, single_file)
        if dst.resolve() in inputs:
            err(f"{src}: refusing to write {dst} because it is an input (set --suffix or another --output)")
            failed += 1
            continue
        # Two inputs with one output name (same file name in two folders, or x.png + x.jpg with --ext): the
        # second must neither be reported as "exists" nor, with --overwrite, replace the first one's result.
        first = claimed.setdefault(dst.resolve(), src)
        if first is not src:
            err(
                f"{src}: output {dst} is already the result of {first} in this run (use separate runs/--output)"
            )
            failed += 1
            continue
        if dst.exists() and not args.overwrite:
            tqdm.write(f"skip: {dst} exists (use --overwrite)", file=sys.stderr)
            skipped += 1
            continue
        # Another run writing into this folder: claim the output first, look again once it is ours
        claim = OutputClaim(dst)
        handed_over = False  # the claim goes with the write to the writer thread, released when it is done
        try:  # released whatever happens from here on (an interrupt included)
            if not claim.acquire():
                tqdm.write(
                    f"skip: {dst} is being written by {describe_holder(claim.holder)}", file=sys.stderr
                )
                busy += 1
                continue
            if dst.exists() and (not args.overwrite or dst.stat().st_mtime >= started_wall):
                # --overwrite replaces what was there before this run, not another run's new result
                tqdm.write(f"skip: {dst} was written by another run meanwhile", file=sys.stderr)
                skipped += 1
                continue
            # stills and animations (every frame, timing kept; --first-frame: the first one only); the write
            # overlaps the next image
            with warnings.catch_warnings(record=True) as notes:
                warnings.simplefilter("always", FloatRangeWarning)
                handed_over = True
                try:
                    pipe.upscale(src, dst, functools.partial(written, src, claim))
                except BaseException:
                    handed_over = False  # reading or computing failed: no write will follow
                    raise
            for note in notes:  # an HDR float input: its clamp to [0, 1] is said, once, as one line
                if issubclass(note.category, FloatRangeWarning):
                    tqdm.write(f"note: {note.message}", file=sys.stderr)
                else:
                    warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
        except Exception as exc:  # one bad file must not stop the batch
            failed += 1
            if _disk_full(exc):
                err(
                    f"{describe(src, exc)}; stopped (the disk is full: every further image would fail; a rerun resumes)"
                )
                break
            err(describe(src, exc))
            continue
        finally:
            if not handed_over:
                claim.release()
        if stop:
            break
    pipe.close()  # the last write, its callback (claim released); on an interrupt the claims file says who
    bar.close()
    failed += len(problems)
    secs = time.perf_counter() - start
    where = single_file or out
    print(
        f"upscaled {done} image(s) with {backend!r} -> {where} in {secs:.1f}s"
        + (f"; {skipped} skipped (exist)" if skipped else "")
        + (f"; {busy} left to another run writing them" if busy else "")
        + (f"; {failed} problem(s)" if failed else "")
    )
    return 1 if failed or not (done or skipped or busy) else 0


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience for python -m
    parser = argparse.ArgumentParser(prog="paragonsr upscale", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
