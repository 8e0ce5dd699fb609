"""Inference throughput (output megapixels/s) of ParagonSR2 variants vs SRVGGNetCompact, measured side by side.

    python bench/infer.py                       # nano..s + Compact 32f/32c, x2, 128x128 LR input
    python bench/infer.py --size 256 --repeats 5 --archs 'paragonsr2_nano,compact*'
    python bench/infer.py --precisions fp32,bf16_cl --threads 2

Every model runs unfused (eval mode) and, where it has ``fuse_for_release``, fused, in three precisions:
fp32 (NCHW), fp32_cl (channels_last) and bf16_cl (bf16 autocast + channels_last). Targets (reported, never
asserted): fused nano >= 1.5x unfused nano; fused nano >= 2x Compact-32/32, each in its best precision.

Other engineers add models by extending ``MODELS`` (name -> factory(scale) -> nn.Module).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fnmatch
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paragonsr.archs import build_arch
from paragonsr.archs.compact import SRVGGNetCompact

# name -> factory(scale). Order is the print order.
MODELS: dict[str, Callable[[int], nn.Module]] = {
    **{
        f"paragonsr2_{v}": (lambda scale, v=v: build_arch(f"paragonsr2_{v}", scale=scale))
        for v in ("nano", "anime", "tiny", "s", "m", "l", "xl")
    },
    # seed 002's model: Real-ESRGAN compact, 32 features, 32 convs
    "compact_32f32c": lambda scale: SRVGGNetCompact(
        num_feat=32, num_conv=32, upscale=scale, act_type="prelu"
    ),
    # issue 8: the ParagonSR v1 family and Real-ESRGAN's original generator (RRDBNet 64 feat / 23 blocks)
    "paragonsr_nano": lambda scale: build_arch("paragonsr_nano", scale=scale),
    "paragonsr_s": lambda scale: build_arch("paragonsr_s", scale=scale),
    "rrdbnet_64x23": lambda scale: build_arch("rrdbnet", scale=scale),
}
DEFAULT_ARCHS = (
    "paragonsr2_nano,paragonsr2_anime,paragonsr2_tiny,paragonsr2_s,compact_32f32c,"
    "paragonsr_nano,paragonsr_s,rrdbnet_64x23"
)
PRECISIONS = ("fp32", "fp32_cl", "bf16_cl")


def _prepare(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    model = model.to(device).eval()
    if precision.endswith("_cl"):
        model = model.to(memory_format=torch.channels_last)
    return model


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("fp16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def time_model(
    model: nn.Module,
    precision: str,
    size: int,
    batch: int,
    repeats: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, tuple[int, ...]]:
    """Median seconds of one forward over ``repeats`` runs (after one warm-up) and the output shape."""
    model = _prepare(model, precision, device)
    x = torch.rand(batch, getattr(model, "in_ch", 3), size, size, device=device)
    if precision.endswith("_cl"):
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), _autocast(precision, device):
        y = model(x)  # warm-up (oneDNN primitive creation, allocator)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            y = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(clock() - t0)
    return statistics.median(times), tuple(y.shape)


def run(args: argparse.Namespace) -> dict[tuple[str, str, str], float]:
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter
    if args.cpu_time:
        if device.type != "cpu":
            raise SystemExit("--cpu-time only makes sense on the CPU")
        # process CPU time ignores time spent waiting for a core on a shared machine (sums threads: use --threads 1)
        clock = time.process_time
    patterns = [p.strip() for p in args.archs.split(",") if p.strip()]
    names = [n for n in MODELS if any(fnmatch.fnmatch(n, p) for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in MODELS)]
    if unknown:
        raise SystemExit(f"--archs: no model matches {unknown}; known: {', '.join(MODELS)}")
    precisions = [p.strip() for p in args.precisions.split(",")]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise SystemExit(f"--precisions: unknown {bad}; choose from {', '.join(PRECISIONS)}")
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"input={args.batch}x3x{args.size}x{args.size} scale={args.scale} repeats={args.repeats} "
        f"clock={'process-cpu' if args.cpu_time else 'wall'}"
    )
    print(f"{'model':<22}{'mode':<9}" + "".join(f"{p:>12}" for p in precisions) + "   (output MP/s)")
    mps: dict[tuple[str, str, str], float] = {}
    for name in names:
        torch.manual_seed(0)
        base = MODELS[name](args.scale)
        modes = [("unfused", base)]
        if hasattr(base, "fuse_for_release"):
            modes.append(("fused", copy.deepcopy(base).fuse_for_release()))
        for mode, model in modes:
            row = f"{name:<22}{mode:<9}"
            for prec in precisions:
                try:
                    sec, shape = time_model(
                        copy.deepcopy(model), prec, args.size, args.batch, args.repeats, device, clock
                    )
                    mps[(name, mode, prec)] = shape[0] * shape[-1] * shape[-2] / sec / 1e6
                    row += f"{mps[(name, mode, prec)]:>12.3f}"
                except RuntimeError as exc:  # e.g. bf16 unsupported on this CPU
                    row += f"{'n/a':>12}"
                    print(f"  {name} {mode} {prec}: {str(exc).splitlines()[0]}", file=sys.stderr)
            print(row, flush=True)
    _print_ratios(mps)
    return mps


def _best(mps: dict[tuple[str, str, str], float], name: str, mode: str) -> tuple[float, str] | None:
    cands = [(v, k[2]) for k, v in mps.items() if k[0] == name and k[1] == mode]
    return max(cands) if cands else None


def _print_ratios(mps: dict[tuple[str, str, str], float]) -> None:
    print("\nratios")
    names = sorted({k[0] for k in mps if k[1] == "fused"})
    for name in names:
        for prec in PRECISIONS:
            if (name, "fused", prec) in mps and (name, "unfused", prec) in mps:
                r = mps[(name, "fused", prec)] / mps[(name, "unfused", prec)]
                print(f"  {name} fused / unfused [{prec}]: {r:.2f}x")
    nano_f, nano_u = _best(mps, "paragonsr2_nano", "fused"), _best(mps, "paragonsr2_nano", "unfused")
    comp = _best(mps, "compact_32f32c", "unfused")
    if nano_f and nano_u:
        r = nano_f[0] / nano_u[0]
        print(
            f"  TARGET fused nano ({nano_f[1]}) / unfused nano ({nano_u[1]}), best each: {r:.2f}x (target >= 1.5x)"
        )
    if nano_f and comp:
        r = nano_f[0] / comp[0]
        print(
            f"  TARGET fused nano ({nano_f[1]}) / Compact 32f32c ({comp[1]}), best each: {r:.2f}x (target >= 2x)"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=DEFAULT_ARCHS, help="comma-separated names/globs from MODELS")
    ap.add_argument("--size", type=int, default=128, help="LR input height = width (default 128)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help=f"subset of {','.join(PRECISIONS)}")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time (robust on a busy machine; --threads 1)",
    )
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
