"""Network interpolation: ``alpha·A + (1 − alpha)·B`` of two checkpoints of one architecture, parameter by parameter.

The perception–distortion dial of ESRGAN (Wang et al. 2018, "network interpolation"): A is a perceptual (GAN)
generator fine-tuned from the fidelity model B, so both share one loss basin and the blend moves smoothly between
them — lower ``alpha`` trades LPIPS for PSNR without retraining. Both inputs must be unfused checkpoints of the same
architecture and arch_kwargs with the same parameter names and shapes; the output is an unfused ``.safetensors``
with A's metadata plus ``extra.interpolation`` (both inputs' names and sha256, ``alpha``), which
``scripts/package_default_model.py`` copies into the manifest's training record.

    python scripts/interpolate_networks.py RUN/models/net_g_1500.safetensors \
        src/paragonsr/assets/models/default_unfused.safetensors --alpha 0.9 -o interp90.safetensors

Errors are one line naming the file; nothing is written then.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import torch

from paragonsr.checkpoint import CheckpointError, load_state_dict, save_model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpolate(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float, names: tuple[str, str] = ("A", "B")
) -> dict[str, torch.Tensor]:
    """``{k: alpha·a[k] + (1 − alpha)·b[k]}`` in float32, cast back to ``a[k]``'s dtype (integer buffers, e.g.
    counters, are taken from ``a``). Raises ``ValueError`` naming the first key that is missing or mismatched."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"{names[0]} and {names[1]} have different parameters (e.g. '{only[0]}')")
    out = {}
    for k, ta in a.items():
        tb = b[k]
        if ta.shape != tb.shape:
            raise ValueError(f"'{k}': shape {tuple(ta.shape)} in {names[0]}, {tuple(tb.shape)} in {names[1]}")
        if not ta.is_floating_point():
            out[k] = ta.clone()
            continue
        out[k] = (alpha * ta.float() + (1.0 - alpha) * tb.float()).to(ta.dtype)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="checkpoint weighted by alpha (e.g. the perceptual generator)")
    ap.add_argument(
        "b", type=Path, help="checkpoint weighted by 1 - alpha (e.g. the fidelity model it started from)"
    )
    ap.add_argument("--alpha", type=float, required=True, help="weight of A, in [0, 1]")
    ap.add_argument(
        "-o", "--output", type=Path, required=True, help="output .safetensors (never one of the inputs)"
    )
    args = ap.parse_args(argv)
    if args.output.resolve() in (args.a.resolve(), args.b.resolve()):
        print(f"error: {args.output}: would overwrite an input; choose another -o", file=sys.stderr)
        return 2
    try:
        sa, ma = load_state_dict(args.a)
        sb, mb = load_state_dict(args.b)
        for meta, path in ((ma, args.a), (mb, args.b)):
            if meta.get("fused"):
                raise ValueError(f"{path}: fused; interpolate the unfused (trainable) checkpoints")
        if (ma.get("arch"), ma.get("arch_kwargs")) != (mb.get("arch"), mb.get("arch_kwargs")):
            raise ValueError(
                f"{args.b}: arch {mb.get('arch')} {mb.get('arch_kwargs')} differs from {args.a}'s "
                f"{ma.get('arch')} {ma.get('arch_kwargs')}"
            )
        state = interpolate(sa, sb, args.alpha, (str(args.a), str(args.b)))
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra: dict[str, Any] = dict(ma.get("extra") or {})
    extra["interpolation"] = {
        "a": args.a.name, "a_sha256": sha256(args.a), "b": args.b.name, "b_sha256": sha256(args.b),
        "alpha": args.alpha,
    }  # fmt: skip
    meta = {k: ma[k] for k in ("scale", "in_ch", "out_ch") if ma.get(k) is not None}
    save_model(
        args.output, state, arch=ma.get("arch"), arch_kwargs=ma.get("arch_kwargs"), metadata={**meta, **extra,
        "fused": False},
    )  # fmt: skip
    print(f"wrote {args.output}: {args.alpha:g} x {args.a.name} + {1 - args.alpha:g} x {args.b.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
