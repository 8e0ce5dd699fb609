"""Inference throughput (output megapixels/s) of ParagonSR2 variants vs SRVGGNetCompact, SPAN and others, side by side.

    python bench/infer.py                       # nano..s + Compact 32f/32c + v1 + RRDBNet + SPAN ch48, x2, 128x128 LR
    python bench/infer.py --size 256 --repeats 7 --archs 'paragonsr2_nano,compact*' --threads 1 --breakdown
    python bench/infer.py --precisions fp32,bf16_cl --no-malloc-tuning

Every model runs unfused (eval mode: ParagonSR2 uses its tracked static kernels there) and, where it has
``fuse_for_release``, fused; those also as their training graph ("training": a training-mode forward without
gradients, i.e. ParagonSR2's per-sample generated kernels, ParagonSR v1's unmerged branches), the form fusion
replaces. Precisions: fp32 (NCHW), fp32_cl (channels_last) and bf16_cl (bf16 autocast +
channels_last). All configurations are timed round-robin (one forward each per round, median of ``--repeats``), so
machine drift hits them alike. The process's glibc allocator is tuned as the CLI tunes it
(``paragonsr.utils.malloc``); ``--no-malloc-tuning`` shows the untuned figures.

Effective GFLOP/s (the physical limit on the page): each configuration's forward FLOPs (``bench/peak.py``,
``torch.utils.flop_counter``: convolutions and matrix products) per second, against this CPU's measured conv peak
(a 64→64 3×3 conv forward on ``--peak-batch``×64×128×128, same clock and threads) in fp32 NCHW, fp32 channels_last
and, where bf16 is native (``paragonsr.precision``), bf16 channels_last; where it is not, bf16_cl is left out of
the default precisions (emulated: slower than fp32). ``--no-gflops`` skips this table.

Targets (reported, never asserted): fused nano >= 1.5x unfused nano; fused nano >= 2x Compact-32/32, each in its
best precision. ``--breakdown`` prints where a fused ParagonSR2 forward spends its time, stage by stage.

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
from typing import Any, cast

import torch
from torch import Tensor, nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/peak.py

from paragonsr.archs import build_arch
from paragonsr.archs.compact import SRVGGNetCompact
from paragonsr.utils.malloc import tune_malloc
from peak import conv_peak, cpu_kind, native_bf16, network_flops


def _variant(name: str) -> Callable[[int], nn.Module]:
    return lambda scale: build_arch(name, scale=scale)


# name -> factory(scale). Order is the print order.
MODELS: dict[str, Callable[[int], nn.Module]] = {
    **{
        f"paragonsr2_{v}": _variant(f"paragonsr2_{v}") for v in ("nano", "anime", "tiny", "s", "m", "l", "xl")
    },
    # the speed/quality trade-off the fused-speed targets point at: nano without its HR refinement block
    "paragonsr2_nano_hr0": lambda scale: build_arch("paragonsr2_nano", scale=scale, hr_blocks=0),
    # the compressed Real-ESRGAN compact of configs/2x_realesrgan_compact_finetune.yml: 32 features, 32 convs
    "compact_32f32c": lambda scale: SRVGGNetCompact(
        num_feat=32, num_conv=32, upscale=scale, act_type="prelu"
    ),
    # the ParagonSR v1 family and Real-ESRGAN's original generator (RRDBNet 64 feat / 23 blocks)
    "paragonsr_nano": lambda scale: build_arch("paragonsr_nano", scale=scale),
    "paragonsr_s": lambda scale: build_arch("paragonsr_s", scale=scale),
    "rrdbnet_64x23": lambda scale: build_arch("rrdbnet", scale=scale),
    # SPAN as officially released (48 channels, input normalisation) and traiNNer-redux's default span (52)
    "span_ch48": lambda scale: build_arch("span_s", scale=scale, norm=True),
    "span_ch52": lambda scale: build_arch("span", scale=scale),
}
DEFAULT_ARCHS = (
    "paragonsr2_nano,paragonsr2_anime,paragonsr2_tiny,paragonsr2_s,compact_32f32c,"
    "paragonsr_nano,paragonsr_s,rrdbnet_64x23,span_ch48"
)
PRECISIONS = ("fp32", "fp32_cl", "bf16_cl")


def _prepare(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    model = model.to(device).eval()
    if precision.endswith("_cl"):
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("fp16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _forward_fn(model: nn.Module, mode: str) -> Callable[[Tensor], Tensor]:
    if mode != "training":
        return model

    def training_graph(x: Tensor) -> Tensor:
        # Training-mode forward (ParagonSR2: per-sample kernels; tracked-kernel EMA updates hit this copy only).
        model.train()
        with torch.no_grad():
            return model(x)

    return training_graph


class Config:
    """One (model, mode, precision) to time: a prepared model copy and its input."""

    def __init__(self, name: str, mode: str, prec: str, model: nn.Module, args: argparse.Namespace, device):
        self.key = (name, mode, prec)
        self.model = _prepare(copy.deepcopy(model), prec, device)
        self.forward = _forward_fn(self.model, mode)
        self.prec, self.device = prec, device
        self.x = torch.rand(args.batch, getattr(model, "in_ch", 3), args.size, args.size, device=device)
        if prec.endswith("_cl"):
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.times: list[float] = []
        self.out_px = 0

    def step(self, clock: Callable[[], float]) -> float:
        with torch.inference_mode(self.key[1] != "training"), _autocast(self.prec, self.device):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = clock()
            y = self.forward(self.x)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            dt = clock() - t0
        self.out_px = y.shape[0] * y.shape[-1] * y.shape[-2]
        return dt


def run(args: argparse.Namespace) -> dict[tuple[str, str, str], float]:
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    malloc = "off (--no-malloc-tuning)" if args.no_malloc_tuning else tune_malloc()
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
    bf16 = device.type != "cpu" or native_bf16()
    asked = args.precisions or ",".join(p for p in PRECISIONS if bf16 or not p.startswith("bf16"))
    precisions = [p.strip() for p in asked.split(",")]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise SystemExit(f"--precisions: unknown {bad}; choose from {', '.join(PRECISIONS)}")
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"input={args.batch}x3x{args.size}x{args.size} scale={args.scale} repeats={args.repeats} "
        f"clock={'process-cpu' if args.cpu_time else 'wall'} malloc={malloc}"
    )
    if device.type == "cpu":
        note = "" if bf16 or args.precisions else " (bf16_cl left out: emulated here, slower than fp32)"
        print(f"CPU kind: {cpu_kind()}{note}")
    configs: list[Config] = []
    for name in names:
        torch.manual_seed(0)
        base = MODELS[name](args.scale)
        modes = [("unfused", base)]
        if hasattr(base, "fuse_for_release"):
            if args.training_graph:
                modes.append(("training", base))
            modes.append(("fused", cast(Any, copy.deepcopy(base)).fuse_for_release()))
        for mode, model in modes:
            for prec in precisions:
                cfg = Config(name, mode, prec, model, args, device)
                try:
                    cfg.step(clock)  # warm-up (oneDNN primitive creation, allocator)
                except RuntimeError as exc:  # e.g. bf16 unsupported on this CPU
                    print(f"  {name} {mode} {prec}: {str(exc).splitlines()[0]}", file=sys.stderr)
                    continue
                configs.append(cfg)
    # Round-robin: every configuration is timed once per round, so drift (thermal, other load, allocator state)
    # hits all of them alike instead of whichever happened to run last.
    for _ in tqdm(range(args.repeats), desc="rounds", leave=False, disable=not sys.stderr.isatty()):
        for cfg in configs:
            cfg.times.append(cfg.step(clock))
    mps = {cfg.key: cfg.out_px / statistics.median(cfg.times) / 1e6 for cfg in configs}
    print(f"{'model':<22}{'mode':<9}" + "".join(f"{p:>12}" for p in precisions) + "   (output MP/s)")
    for name in names:
        for mode in ("unfused", "training", "fused"):
            if not any((name, mode, p) in mps for p in precisions):
                continue
            cells = "".join(
                f"{mps[(name, mode, p)]:>12.3f}" if (name, mode, p) in mps else f"{'n/a':>12}"
                for p in precisions
            )
            print(f"{name:<22}{mode:<9}{cells}", flush=True)
    _print_ratios(mps)
    if args.gflops and device.type == "cpu":
        _print_gflops(configs, precisions, clock, args.peak_batch)
    if args.breakdown:
        for cfg in configs:
            if cfg.key[1] == "fused" and cfg.key[0].startswith("paragonsr2_"):
                _print_breakdown(cfg, clock, args.repeats)
    return mps


def _print_gflops(
    configs: list[Config], precisions: list[str], clock: Callable[[], float], batch: int
) -> None:
    """Effective GFLOP/s of every timed forward against this CPU's conv peak in the same precision and layout."""
    fmt = {"fp32": torch.contiguous_format, "fp32_cl": torch.channels_last, "bf16_cl": torch.channels_last}
    dtype = {"fp32": torch.float32, "fp32_cl": torch.float32, "bf16_cl": torch.bfloat16}
    peak = {p: conv_peak(dtype[p], fmt[p], backward=False, batch=batch, clock=clock) for p in precisions}
    print("\nconv peak (64->64 3x3 forward): " + ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in peak.items()))
    print(
        f"{'model':<22}{'mode':<9}{'GFLOP':>8}"
        + "".join(f"{p:>16}" for p in precisions)
        + "   (GFLOP/s, % of peak)"
    )
    flops: dict[tuple[str, str], float] = {}
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for cfg in configs:
        name, mode, prec = cfg.key
        if mode == "training":
            continue
        if (name, mode) not in flops:
            flops[(name, mode)] = network_flops(cfg.model, cfg.x.float(), backward=False) / 1e9
        rows.setdefault((name, mode), {})[prec] = flops[(name, mode)] / statistics.median(cfg.times)
    for (name, mode), by_prec in rows.items():
        cells = "".join(
            f"{by_prec[p]:>8.1f} ={100 * by_prec[p] / peak[p]:>5.1f}%" if p in by_prec else f"{'n/a':>16}"
            for p in precisions
        )
        print(f"{name:<22}{mode:<9}{flops[(name, mode)]:>8.4g}{cells}")


def _print_breakdown(cfg: Config, clock: Callable[[], float], repeats: int) -> None:
    """Median ms per top-level stage of a ParagonSR2 forward (where the time goes)."""
    stages = [
        "conv_in",
        "body",
        "conv_body",
        "upsampler",
        "hr_conv_in",
        "hr_head",
        "conv_out",
        "base_upsampler",
    ]
    spent: dict[str, list[float]] = {s: [] for s in stages}
    handles = []
    t0: dict[str, float] = {}
    for s in stages:
        mod = getattr(cfg.model, s, None)
        if mod is None:
            continue
        handles.append(mod.register_forward_pre_hook(lambda m, a, s=s: t0.__setitem__(s, clock())))
        handles.append(mod.register_forward_hook(lambda m, a, o, s=s: spent[s].append(clock() - t0[s])))
    total = [cfg.step(clock) for _ in range(max(3, repeats))]
    for h in handles:
        h.remove()
    med = statistics.median(total)
    parts = "  ".join(
        f"{s} {1e3 * statistics.median(v):.1f} ({100 * statistics.median(v) / med:.0f}%)"
        for s, v in spent.items()
        if v
    )
    print(f"  breakdown {cfg.key[0]} fused {cfg.key[2]}: total {1e3 * med:.1f} ms = {parts}")


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
            if (name, "fused", prec) in mps and (name, "training", prec) in mps:
                r = mps[(name, "fused", prec)] / mps[(name, "training", prec)]
                print(f"  {name} fused / training graph [{prec}]: {r:.2f}x")
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
    span_f = _best(mps, "span_ch48", "fused")
    if nano_f and span_f:
        r = span_f[0] / nano_f[0]
        print(f"  fused SPAN ch48 ({span_f[1]}) / fused nano ({nano_f[1]}), best each: {r:.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=DEFAULT_ARCHS, help="comma-separated names/globs from MODELS")
    ap.add_argument("--size", type=int, default=128, help="LR input height = width (default 128)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    ap.add_argument(
        "--precisions",
        default="",
        help=f"subset of {','.join(PRECISIONS)} (default: all; bf16_cl only where bf16 is native)",
    )
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time (robust on a busy machine; --threads 1)",
    )
    ap.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc's allocator at its defaults (the CLI tunes it; see paragonsr.utils.malloc)",
    )
    ap.add_argument(
        "--training-graph",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the training graph of fusable models (training-mode forward), the form fusion replaces",
    )
    ap.add_argument("--breakdown", action="store_true", help="per-stage time of each fused ParagonSR2")
    ap.add_argument(
        "--gflops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="effective GFLOP/s of each forward against this CPU's measured conv peak (CPU only)",
    )
    ap.add_argument("--peak-batch", type=int, default=16, help="batch of the conv-peak measurement (16)")
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
