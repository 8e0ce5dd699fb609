"""``paragonsr transfer``: shrink/reshape an SRVGGNetCompact checkpoint and report what it costs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "transfer SRVGGNetCompact weights to another width/depth (top-k channels by L2 norm, identity-inserted convs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", "-i", required=True, help="source checkpoint (.pth/.safetensors, Real-ESRGAN keys)"
    )
    parser.add_argument("--output", "-o", required=True, help="target checkpoint (.safetensors recommended)")
    parser.add_argument("--feat", type=int, default=32, help="target num_feat (default 32)")
    parser.add_argument("--conv", type=int, default=32, help="target num_conv (default 32)")
    parser.add_argument(
        "--depth-mode",
        choices=("identity", "copy"),
        default="identity",
        help="extra convs start as exact identities (default) or as copies of their source conv",
    )
    parser.add_argument(
        "--criterion",
        choices=("filter", "both"),
        default="filter",
        help="channel importance: L2 norm of each channel's filter (default), or that times the norm "
        "of the next conv's weights reading it",
    )
    parser.add_argument(
        "--noise", type=float, default=0.0, help="std of jitter added to inserted identity convs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samples",
        nargs="*",
        default=None,
        help="images (or folders) for the PSNR report; default: the bundled sample images; "
        "'--samples' with nothing after it: parameter counts only",
    )
    parser.add_argument(
        "--crop", type=int, default=128, help="centre crop of each sample image (0 = whole image)"
    )
    parser.add_argument("--max-samples", type=int, default=8)
    parser.add_argument(
        "--report", default=None, help="write the report as JSON here (default: OUTPUT.report.json)"
    )
    parser.add_argument(
        "--param-key", default="auto", help="key inside .pth files (params / params_ema / auto)"
    )


def _bundled_samples() -> list[str]:
    """The package's sample images (the report gives a PSNR on samples even when none are given)."""
    from importlib import resources

    folder = resources.files("paragonsr") / "assets" / "samples"
    return (
        sorted(str(p) for p in folder.iterdir() if p.name.lower().endswith(".png")) if folder.is_dir() else []
    )


def _load_samples(specs: list[str], crop: int, limit: int) -> list:
    import numpy as np

    from paragonsr.io.files import list_images, read_image_native

    paths: list[Path] = []
    for s in specs:
        p = Path(s)
        if not p.exists():
            raise FileNotFoundError(f"--samples: {p} not found")
        paths.extend(list_images(p, what="--samples", allow_empty=False) if p.is_dir() else [p])
    imgs = []
    for p in paths[:limit]:
        img = read_image_native(p)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        img = img[..., :3].astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        if crop:
            h, w = img.shape[:2]
            t, left = max(0, h // 2 - crop // 2), max(0, w // 2 - crop // 2)
            img = img[t : t + crop, left : left + crop]
        imgs.append(img)
    return imgs


def run(args: argparse.Namespace) -> int:
    from paragonsr.checkpoint import load_state_dict, save_model
    from paragonsr.transfer import build_pair, compare_outputs, transfer_compact
    from paragonsr.utils.atomic import atomic_write_text
    from paragonsr.utils.params import count_params

    try:
        if Path(args.output).resolve() == Path(args.input).resolve():
            raise ValueError(f"--output {args.output} is the input checkpoint; inputs are never overwritten")
        # samples first: a bad --samples path fails before any work, naming the file (read_image does)
        specs = _bundled_samples() if args.samples is None else args.samples
        imgs = _load_samples(specs, args.crop, args.max_samples) if specs else []
        state, _meta = load_state_dict(args.input, args.param_key)
        res = transfer_compact(
            state, args.feat, args.conv, args.depth_mode, args.noise, args.seed, args.criterion
        )
    except (OSError, KeyError, ValueError) as exc:
        from paragonsr.cli import error_line

        msg = error_line(exc)
        print(f"error: {msg if str(args.input) in msg else f'{args.input}: {msg}'}", file=sys.stderr)
        return 1
    src, dst = build_pair(res)
    src.load_state_dict(state, strict=True)
    report = {
        "source": str(args.input),
        "target": str(args.output),
        "source_arch": res.src_kwargs,
        "target_arch": res.dst_kwargs,
        "params_source": count_params(src),
        "params_target": count_params(dst),
        "depth_mode": args.depth_mode,
        "criterion": args.criterion,
        "layer_map": res.layer_map,
        "kept_channels": res.kept,
        "notes": res.notes,
    }
    if imgs:
        per = compare_outputs(src, dst, imgs)
        report["psnr_per_image"] = per
        report["psnr_dst_vs_src_mean"] = sum(r["psnr_dst_vs_src"] for r in per) / len(per)
        report["psnr_nearest_vs_src_mean"] = sum(r["psnr_nearest_vs_src"] for r in per) / len(per)
    save_model(
        args.output, dst, metadata={"transfer": {k: report[k] for k in ("source", "depth_mode", "notes")}}
    )
    rpath = Path(args.report or f"{args.output}.report.json")
    atomic_write_text(rpath, json.dumps(report, indent=2))
    s, d = res.src_kwargs, res.dst_kwargs
    print(
        f"source  {s['num_feat']} feat / {s['num_conv']} conv  x{s['upscale']}  {report['params_source']:,} params"
    )
    print(
        f"target  {d['num_feat']} feat / {d['num_conv']} conv  x{d['upscale']}  {report['params_target']:,} params"
    )
    if "psnr_dst_vs_src_mean" in report:
        print(
            f"PSNR vs source output on {len(report['psnr_per_image'])} image(s), before fine-tuning: "
            f"transferred {report['psnr_dst_vs_src_mean']:.2f} dB (nearest upscale: "
            f"{report['psnr_nearest_vs_src_mean']:.2f} dB)"
        )
    for n in res.notes:
        print(f"note: {n}")
    print(f"wrote {args.output} and {rpath}")
    return 0
