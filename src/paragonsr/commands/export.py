"""``paragonsr export``: fuse, export dynamic ONNX FP32/FP16/INT8, verify every artifact, write a model card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

HELP = "fuse a checkpoint and export verified ONNX (FP32/FP16/INT8) with a model card"

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "exit status: 0 every requested artifact passed its gate; 1 error (nothing unverified is left behind); "
        "3 exported, but an FP16/INT8 file was refused by its gate (the reason is printed and in the model card)"
    )
    parser.add_argument(
        "model",
        type=Path,
        help="checkpoint (.safetensors or .pth) of any registered arch, or a packaged model (default, classic, "
        "perceptual: its trainable twin is fused and gated again)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--arch", help="arch name, for checkpoints without paragonsr metadata")
    parser.add_argument("--name", help="artifact base name (default: the checkpoint's file stem)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    parser.add_argument(
        "--fp16", action="store_true", help="also write an FP16 ONNX (gate: PSNR >= 45 dB vs FP32)"
    )
    parser.add_argument(
        "--fp16-io",
        choices=("float32", "float16"),
        default="float32",
        help="FP16 model input/output type: float32 keeps callers unchanged (casts inside; default)",
    )
    parser.add_argument(
        "--ncnn",
        action="store_true",
        help="also write verified NCNN .param/.bin pairs (fp32 and fp16 storage) for upscayl/chaiNNer under OUTPUT/models "
        "(needs: pip install 'paragonsr[ncnn]')",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write a QDQ INT8 ONNX: calibrated on --calib, or with the scales of a QAT checkpoint "
        "(model_type: QATModel), gated against its FP32 twin",
    )
    parser.add_argument("--calib", type=Path, help="folder of images for INT8 calibration and verification")
    parser.add_argument(
        "--verify-images", type=Path, help="folder of images for verification (default: the --calib images)"
    )
    parser.add_argument(
        "--force-int8", action="store_true", help="write the INT8 file even when it fails its quality gate"
    )
    parser.add_argument(
        "--int8-method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="activation calibration",
    )
    parser.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="STEPS",
        help="re-settle ParagonSR2's tracked kernels on --calib crops for STEPS batches before fusing "
        "(default 0: keep the kernels the checkpoint trained)",
    )
    parser.add_argument(
        "--verify-whole",
        action="store_true",
        help="verify on whole images (LR = each image downscaled) instead of --crop centre crops",
    )
    parser.add_argument(
        "--perceptual",
        action="store_true",
        help="a perceptual (GAN) model: the INT8 gate also bounds the LPIPS increase (<= 0.003) when LPIPS "
        "weights are available; on by itself for the packaged 'perceptual' and for checkpoints whose training "
        "record (metadata, or the run's options.yml) says a GAN model_type",
    )
    parser.add_argument("--max-images", type=int, default=8, help="use at most this many images per folder")
    parser.add_argument("--crop", type=int, default=48, help="LR side of calibration/verification crops")
    parser.add_argument(
        "--latency-size",
        type=int,
        default=512,
        help="input side for the ORT CPU latency in the card (0 skips)",
    )
    parser.add_argument(
        "--latency-runs", type=int, default=3, help="timed runs per artifact (median reported)"
    )


def _load_folder(folder: Path | None, limit: int, min_side: int) -> list[tuple[str, np.ndarray]]:
    from paragonsr.deploy.verify import load_image
    from paragonsr.io.files import list_images

    if folder is None:
        return []
    out: list[tuple[str, np.ndarray]] = []
    for path in list_images(folder, recursive=False, what="calibration/verification", allow_empty=False):
        if len(out) >= limit:
            break
        try:
            img = load_image(path)
        except ValueError as exc:
            print(f"warning: skipping {exc}", file=sys.stderr)
            continue
        if min(img.shape[:2]) < min_side:
            print(f"warning: skipping {path}: smaller than {min_side}px (lower --crop)", file=sys.stderr)
            continue
        out.append((path.name, img))
    if not out:
        raise FileNotFoundError(f"no usable images in {folder} (need decodable images >= {min_side}px)")
    return out


def run(args: argparse.Namespace) -> int:
    from paragonsr.checkpoint import CheckpointError, load_model
    from paragonsr.deploy.model_card import card_paths
    from paragonsr.deploy.qat import load_qat_checkpoint
    from paragonsr.deploy.release import ExportError, ExportOptions, export_release
    from paragonsr.utils.claims import OutputClaim, describe_holder

    if args.ncnn:  # before the long export: the NCNN step needs the converter and the runtime
        import importlib.util

        missing = [m for m in ("pnnx", "ncnn") if importlib.util.find_spec(m) is None]
        if missing:
            print(
                f"error: --ncnn needs {' and '.join(missing)}: pip install 'paragonsr[ncnn]'", file=sys.stderr
            )
            return EXIT_ERROR
    from paragonsr.infer import PACKAGED_MODELS, packaged_model

    packaged_name = None
    if str(args.model) in PACKAGED_MODELS and not args.model.exists():  # a short name, not a file
        packaged_name = str(args.model)
        try:
            args.model = packaged_model(packaged_name, unfused=True)
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if args.opset < 17:
        print(f"error: --opset {args.opset} is too old; use 17 or newer", file=sys.stderr)
        return EXIT_ERROR
    try:
        pair = None if args.arch else load_qat_checkpoint(args.model)
        qat_model, model = (
            pair if pair is not None else (None, load_model(args.model, arch=args.arch, device="cpu"))
        )
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: cannot load {args.model}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if qat_model is not None:
        print(
            f"note: {args.model} is a QAT checkpoint: INT8 keeps its learned scales, FP32/FP16 are its FP32 twin"
        )
    if args.int8 and args.calib is None and (qat_model is None or args.verify_images is None):
        need = "--verify-images DIR (or --calib DIR)" if qat_model is not None else "--calib DIR"
        print(f"error: --int8 needs {'verification' if qat_model is not None else 'calibration'} images: {need}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    if getattr(model, "checkpoint_meta", {}).get("fused"):
        print(f"note: {args.model} is already fused; exporting it as is")
    perceptual = args.perceptual
    if not perceptual:
        from paragonsr.deploy.model_kind import perceptual_reason
        from paragonsr.deploy.verify import INT8_MAX_LPIPS_INCREASE

        why = perceptual_reason(args.model, getattr(model, "checkpoint_meta", None), packaged_name)
        if why is not None:
            perceptual = True
            if args.int8:
                print(
                    f"note: {args.model} is a perceptual (GAN) model ({why}): the INT8 gate also bounds the LPIPS "
                    f"increase (<= {INT8_MAX_LPIPS_INCREASE})"
                )
    scale = int(getattr(model, "scale", 1))
    min_side = args.crop * scale
    try:
        calib = _load_folder(args.calib, args.max_images, min_side)
        verify = _load_folder(args.verify_images, args.max_images, min_side) if args.verify_images else calib
        if not calib and qat_model is not None:
            calib = verify  # only FP16/fuse checks use them: QAT scales are not recalibrated
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    options = ExportOptions(
        fp16=args.fp16,
        keep_io_types=args.fp16_io == "float32",
        int8=args.int8,
        force_int8=args.force_int8,
        int8_method=args.int8_method,
        opset=args.opset,
        calibrate_steps=args.calibrate,
        lr_crop=args.crop,
        latency_size=max(0, args.latency_size),
        latency_runs=args.latency_runs,
        ncnn=args.ncnn,
        verify_whole=args.verify_whole,
        perceptual=perceptual,
    )
    name = args.name or packaged_name or args.model.stem
    # Two exports of one name into one folder: the second leaves it to the first (claim on the FP32 file, held
    # for the whole export) instead of computing it twice and removing the other's files under verification.
    claim = OutputClaim(args.output / f"{name}_fp32.onnx")
    try:
        if not claim.acquire():
            print(
                f"error: {args.output / name}_*: being exported by {describe_holder(claim.holder)}; not exported "
                "twice (wait for it, or use another --name/--output)",
                file=sys.stderr,
            )
            return EXIT_ERROR
        result = export_release(
            model, args.output, name, verify, calib_images=calib, options=options, qat_model=qat_model
        )
    except (ExportError, RuntimeError, ValueError) as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        claim.release()
    for kind, path in result.artifacts.items():
        print(f"wrote {kind}: {path}")
    print(f"model card: {card_paths(args.output, name)[1]}")
    for reason in result.refused:
        print(f"REFUSED: {reason}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_REFUSED
