"""``paragonsr demo``: upscale the bundled samples with bicubic, Magic Kernel Sharp 2021 and (if available) a
model, and write a labelled side-by-side comparison. Offline, a few seconds on a CPU."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from paragonsr.infer.backends import Backend

HELP = "Upscale the bundled sample images (bicubic | MKS2021 | model) and write a labelled comparison image."

CELL = 256  # side of each crop in the comparison grid (output pixels)
HEADER = 34


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument(
        "-m",
        "--model",
        help="model file (.safetensors/.pth/.onnx) or a packaged model (default, classic, perceptual); "
        "default: the packaged default if any",
    )
    p.add_argument("-s", "--scale", type=int, default=2, help="scale for the resamplers without a model (2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--inputs", nargs="+", help="use these images instead of the bundled samples")


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    """Put a header strip with ``text`` above an HxWx3 float image."""
    from paragonsr.utils.grid import caption_band

    size = min(0.6, 0.6 * (cell.shape[1] - 16) / max(1, 11 * len(text)))  # shrink long labels to fit the cell
    white = (255, 255, 255)
    head = caption_band(
        cell.shape[1], text, HEADER, font_scale=size, origin=(8, HEADER - 11), background=30, color=white
    )
    head = head.astype(np.float32) / 255.0  # putText draws on 8-bit images only
    return np.concatenate([head, cell], axis=0)


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    crop = img[top : top + size, left : left + size, :3]
    pad_h, pad_w = size - crop.shape[0], size - crop.shape[1]
    return np.pad(crop, ((0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else crop


def _as_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]


def model_label(model: object) -> str | None:
    """A short column label from the model's class and its recorded registry name (``arch_name``): the family as
    the class spells it plus the variant suffix, e.g. ``paragonsr2_nano`` -> "ParagonSR2 nano", ``span_s`` ->
    "SPAN s", ``srvggnetcompact`` -> "SRVGGNetCompact". None when the model records no arch name (ONNX files)."""
    arch = getattr(model, "arch_name", None)
    if not arch:
        return None
    family = type(model).__name__
    if arch == family.lower():
        return family
    if arch.startswith(family.lower() + "_"):
        return f"{family} {arch[len(family) + 1 :]}"
    return arch


def comparison_grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], cell: int = CELL) -> np.ndarray:
    """rows = [(image name, [(method label, upscaled HWC float image), ...]), ...] -> one labelled grid image."""
    from paragonsr.utils.grid import tile

    cells = [
        _label(_center_crop(_as_rgb(img), cell), f"{name}: {label}")
        for name, results in rows
        for label, img in results
    ]
    return tile(cells, cols=len(rows[0][1]), gap=4, fill=1.0)


def run(args: argparse.Namespace) -> int:
    from paragonsr.infer import default_model_path, packaged_model, sample_images
    from paragonsr.infer.backends import ResamplerBackend, load_backend
    from paragonsr.infer.upscale import Upscaler
    from paragonsr.io.image_io import read_image, write_image

    start = time.perf_counter()
    out = Path(args.out)
    inputs = [Path(p) for p in args.inputs] if args.inputs else sample_images()
    if not inputs:
        print("error: no sample images found in this installation", file=sys.stderr)
        return 2
    try:
        model_path = packaged_model(args.model) if args.model else default_model_path()
    except FileNotFoundError as exc:  # a packaged name this install does not hold
        print(f"error: {exc}", file=sys.stderr)
        return 2
    methods: list[tuple[str, str, Backend]] = []  # (label, folder, backend)
    scale = args.scale
    if model_path is not None:
        try:
            model_backend = load_backend(model_path, device=args.device, precision=args.precision)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        scale = model_backend.scale
        name = Path(model_path).stem
        # short labels: the panel is 256 px wide (e.g. "ParagonSR2 nano" for the packaged default)
        arch_label = model_label(getattr(model_backend, "model", None))
        label = arch_label if args.model is None and arch_label else f"model {name}"
    methods.append(("input (nearest)", "input_nearest", ResamplerBackend("nearest", scale)))
    methods.append(("bicubic", "bicubic", ResamplerBackend("bicubic", scale)))
    methods.append(("MKS2021", "mks2021", ResamplerBackend("magic_sharp_2021", scale)))
    if model_path is not None:
        methods.append((label, f"model_{name}", model_backend))
    rows = []
    for path in inputs:
        try:
            img, info = read_image(path)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        results = []
        for label, folder, backend in methods:
            result, out_info = Upscaler(backend, tile="auto")(img, info)
            write_image(out / folder / f"{path.stem}_x{scale}.png", result, out_info)
            results.append((label, result))
        rows.append((path.stem, results))
    if not rows:
        return 1
    grid_path = out / "comparison.png"
    write_image(grid_path, comparison_grid(rows))
    print(f"upscaled {len(rows)} sample(s) x{scale} with {', '.join(m[0] for m in methods[1:])}")
    for _, folder, _ in methods:
        print(f"  {out / folder}/")
    print(f"comparison (centre crops, {CELL}px): {grid_path}")
    if model_path is None:
        print("no model given: pass --model FILE.safetensors to add a model column")
    print(f"done in {time.perf_counter() - start:.1f}s")
    return 0
