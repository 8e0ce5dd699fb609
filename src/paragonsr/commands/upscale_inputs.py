"""``paragonsr upscale``, its inputs: folder/glob collection, output naming, option checks, the backend."""

from __future__ import annotations

import argparse
import glob
import itertools
import sys
from pathlib import Path
from typing import Any

_GLOB_CHARS = set("*?[")


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


def output_path(src: Path, rel: Path, args: argparse.Namespace, single_file: Path | None) -> Path:
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
    produced = {output_path(src, rel, args, None).resolve(): src for src, rel in files}
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


def check_numbers(args: argparse.Namespace) -> str | None:
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
