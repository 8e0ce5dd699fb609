"""Cost of each loss (forward + backward into the prediction) and of one discriminator step with R3GAN, side by
side in one run. Perceptual backbones are random here (timing does not depend on the weights).

    python bench/losses.py [--batch 4] [--size 128] [--reps 5] [--device cpu|cuda] [--losses-only]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import torch

from paragonsr.archs import build_arch
from paragonsr.losses import build_loss

LOSSES: list[dict[str, Any]] = [
    {"type": "L1Loss"},
    {"type": "CharbonnierLoss"},
    {"type": "MSSSIMLoss"},
    {"type": "FFTLoss"},
    {"type": "FocalFrequencyLoss"},
    {"type": "HSLuvLoss"},
    {"type": "ConsistencyLoss"},
    {"type": "TVLoss"},
    {"type": "PerceptualLoss", "layer_weights": {"conv3_4": 1.0, "conv4_4": 1.0}, "pretrained": False},
    {"type": "ConvNeXtPerceptualLoss", "pretrained": False},
    {"type": "DISTSLoss", "pretrained": False},
    {"type": "LPIPSLoss", "pretrained": False},
    {"type": "LPIPSLoss", "net": "alex", "pretrained": False},
    {"type": "STLPIPSLoss", "pretrained": False},
    {"type": "STLPIPSVGGLoss", "pretrained": False},
    {"type": "EfficientNetLitePerceptualLoss", "pretrained": False},
    {"type": "ContrastiveLoss", "pretrained": False},
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, reps: int, device: torch.device) -> float:
    fn()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--losses-only", action="store_true", help="skip the discriminator steps")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(dev)
    lq = torch.nn.functional.avg_pool2d(gt, 2)
    pred0 = (gt + 0.05 * torch.randn(gt.shape, generator=g).to(dev)).clamp(0, 1)
    print(f"device={dev} batch={args.batch} size={args.size} threads={torch.get_num_threads()}")
    l1_ms = None
    print(f"{'loss':<32}{'fwd+bwd ms':>12}{'x L1':>8}")
    for opt in LOSSES:
        loss = build_loss(dict(opt)).to(dev)

        def step(loss=loss):
            p = pred0.clone().requires_grad_()
            loss(p, gt, lq=lq).backward()

        ms = timeit(step, args.reps, dev)
        l1_ms = l1_ms or ms
        name = opt["type"] + (f"[{opt['net']}]" if "net" in opt else "")
        print(f"{name:<32}{ms:>12.2f}{ms / l1_ms:>8.1f}")

    if args.losses_only:
        return
    print(f"\n{'D step (R3GAN)':<34}{'ms':>10}{'x no-pen':>10}")
    fake = pred0
    for name in ("munet", "unetdiscriminatorsn"):
        d = build_arch(name).to(dev)
        base = None
        for label, kw, steps in (("no penalty", {"r1_gamma": 0.0, "r2_gamma": 0.0}, None),
                                 ("R1+R2 every step", {"r1_gamma": 1.0}, None),
                                 ("R1+R2 lazy 4 (avg)", {"r1_gamma": 1.0, "lazy_interval": 4}, 4)):  # fmt: skip
            gl = build_loss({"type": "R3GANLoss", **kw})
            counter = iter(range(10**9))

            def dstep(gl=gl, d=d, counter=counter):
                loss, _ = gl.d_loss(d, gt, fake, step=next(counter))
                loss.backward()

            reps = max(args.reps, steps or 1)
            ms = timeit(dstep, reps, dev)
            base = base or ms
            print(f"{name + ' ' + label:<34}{ms:>10.1f}{ms / base:>10.2f}")


if __name__ == "__main__":
    main()
