"""CPU training throughput: the trainer's step against a bare fp32 eager PyTorch loop of the same network.

Side by side in one process, interleaved round by round (bare fp32, bare bf16, trainer, bare fp32, ...) so load on
a shared machine hits every path alike; the median of the rounds is reported. Timing is CPU time of this process
(``time.process_time``): on an oversubscribed machine wall time mostly measures the neighbours.

* ``bare fp32``: ``net(lq)`` → L1 → backward → AdamW, fp32, NCHW, eager. The reference of the speed-up.
* ``bare bf16+CL``: the same loop under bf16 autocast with channels_last tensors and weights.
* ``trainer``: :class:`paragonsr.train.sr_model.SRModel.optimize_parameters` with the shipped fidelity recipe
  (bf16 autocast + channels_last, L1 + 0.1 MS-SSIM, EMA 0.999, grad_clip 1.0, AdamW), i.e. what
  ``paragonsr train`` runs per iteration once the batch is loaded.
* ``trainer L1``: the same with L1 only (the ``classic`` recipe): the step without MS-SSIM.
* ``bf16+CL compiled`` (``--compile``): the bare bf16 loop with the network through ``torch.compile`` (inductor),
  timed after the compiling first call; whether inductor beats oneDNN's eager kernels on this CPU.
* ``+data cache off/on`` (when ``--data`` is a folder of HR photos, default ``$PARAGONSR_PHOTOS`` or
  ``../shared/data/photos``): the trainer step plus making its batch with the OTF dataset (crop, flips, bicubic
  ×2 LR) in this process, without and with the decoded-image cache: the CPU cost of a whole iteration.

Effective GFLOP/s = the network's forward + backward FLOPs (``torch.utils.flop_counter``; the loss and optimizer
are not counted) / CPU seconds per iteration, against this CPU's measured conv peak: a large 3×3 conv (64→64 on
16×64×128×128), forward + backward, fp32 NCHW and bf16 channels_last.

What bounds the speed-up: the network's own Conv2d layers, each timed alone forward + backward at its training
shape (bf16 + channels_last, oneDNN), split into HR-resolution layers and the rest. The HR head's dense 3×3 convs
run close to the conv peak already, so ``bare fp32 / HR conv time`` is the most any exact reformulation of the
rest of the step can reach.

The allocator is tuned as ``paragonsr train`` tunes it (``paragonsr.utils.malloc``; process-wide, so every row
gets it; ``--no-malloc-tuning`` leaves glibc's defaults).

    python bench/train.py [--net paragonsr2_nano] [--net-opt hr_blocks=0] [--batch 16] [--gt 128] [--iters 3] [--rounds 3] [--threads 1]
                          [--data PHOTOS] [--compile] [--no-malloc-tuning]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from paragonsr.archs import build_arch
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel
from paragonsr.utils.malloc import tune_malloc

CL = torch.channels_last


def make_net(net: dict[str, Any]) -> nn.Module:
    """The network of an option dict ``{"type": name, **arch kwargs}`` (``network_g`` of a config), built for ×2."""
    kwargs = {k: v for k, v in net.items() if k != "type"}
    return build_arch(net["type"], scale=2, **kwargs)


def trainer_options(net: dict[str, Any], batch: int, gt: int, mssim: bool = True) -> dict:
    opt: dict[str, Any] = {
        "name": "bench", "scale": 2,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": "-", "dataroot_lq": "-",
                               "gt_size": gt, "batch_size_per_gpu": batch}},
        "network_g": dict(net),
        "train": {"total_iter": 10**6, "warmup_iter": -1, "ema_decay": 0.999, "grad_clip": 1.0,
                  "optim_g": {"type": "AdamW", "lr": 5e-4, "betas": [0.9, 0.99], "weight_decay": 0},
                  "use_amp": True, "amp_bf16": True, "use_channels_last": True,
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
                  "mssim_opt": {"type": "MSSSIMLoss", "loss_weight": 0.1}},
        "logger": {"use_tb_logger": False},
    }  # fmt: skip
    if not mssim:
        del opt["train"]["mssim_opt"]
    return opt


def bare_step(
    net_spec: dict[str, Any], batch: dict, bf16: bool, compile_net: bool = False
) -> Callable[[], None]:
    """One bare training step; ``compile_net`` runs the network through ``torch.compile`` (inductor; the first
    call compiles, so callers warm up before timing)."""
    torch.manual_seed(0)
    fmt = CL if bf16 else torch.contiguous_format
    module = make_net(net_spec).to(memory_format=fmt).train()  # type: ignore[call-overload]
    opt = torch.optim.AdamW(module.parameters(), lr=5e-4, betas=(0.9, 0.99), weight_decay=0)
    net = torch.compile(module, dynamic=False) if compile_net else module
    lq, gt = batch["lq"].contiguous(memory_format=fmt), batch["gt"].contiguous(memory_format=fmt)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sr = net(lq)
        F.l1_loss(sr.float(), gt).backward()
        opt.step()

    return step


def trainer_step(
    net: dict[str, Any], batch: dict, batch_size: int, gt: int, mssim: bool = True
) -> Callable[[], None]:
    torch.manual_seed(0)
    model = SRModel(parse_options(trainer_options(net, batch_size, gt, mssim)), torch.device("cpu"))
    b = model.to_device(batch)
    it = [0]

    def step() -> None:
        it[0] += 1
        model.optimize_parameters([b], it[0])

    return step


def loaded_trainer_step(
    net: dict[str, Any], data: Path, batch_size: int, gt: int, cache: bool
) -> Callable[[], None]:
    """The trainer step fed by the OTF dataset (bicubic x2 LR, as the classic config), loading in this process:
    what one ``paragonsr train`` iteration costs in CPU time, data included. With ``cache`` the images are decoded
    into the cache before timing, as the trainer fills it before its workers start."""
    from paragonsr.data.datasets import OTFDataset
    from paragonsr.degrade import build_degradation

    ds = OTFDataset(str(data), 2, build_degradation("resize", {"kernel": "bicubic"}, 2), gt_size=gt,
                    cache_images=cache)  # fmt: skip
    if cache:
        ds.fill_cache()  # as `paragonsr train` does before its loader workers start: timed rows then crop, not decode
    torch.manual_seed(0)
    model = SRModel(parse_options(trainer_options(net, batch_size, gt)), torch.device("cpu"))
    pos = [0]

    def run() -> None:
        keys = [(0, (pos[0] + i) % len(ds)) for i in range(batch_size)]
        pos[0] += batch_size
        items = [ds[k] for k in keys]
        b = {k: torch.stack([it[k] for it in items]) for k in ("gt", "lq")}
        model.optimize_parameters([model.to_device(b)], pos[0] // batch_size)

    return run


def network_flops(net_spec: dict[str, Any], lq: torch.Tensor) -> int:
    """Training-graph forward + backward FLOPs, counted on the upsampler's filter form (its matrix form on CPU
    spends more, mostly on zeros, and is not the network's work)."""
    import paragonsr.archs.mks_upsample as mks_upsample

    net = make_net(net_spec).train()
    side = getattr(mks_upsample, "MATRIX_PATH_MAX", 0)
    mks_upsample.MATRIX_PATH_MAX = 0
    try:
        with FlopCounterMode(display=False) as fc:
            net(lq).float().abs().mean().backward()
    finally:
        mks_upsample.MATRIX_PATH_MAX = side
    return fc.get_total_flops()


def best_cpu_seconds(fn: Callable[[], None], reps: int) -> float:
    """Fastest of ``reps`` timed calls of ``fn`` in process CPU seconds, after one untimed warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def conv_peak(dtype: torch.dtype, fmt: torch.memory_format, reps: int = 3) -> float:
    """GFLOP/s of a 64→64 3×3 conv on 16×64×128×128, forward + backward (input and weight gradients)."""
    x = torch.randn(16, 64, 128, 128, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    w = torch.randn(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    flops = 3 * 2 * 16 * 64 * 64 * 9 * 128 * 128

    def run() -> None:
        y = F.conv2d(x, w, padding=1)
        y.backward(torch.ones_like(y))

    return flops / best_cpu_seconds(run, reps) / 1e9


def conv_layer_seconds(
    net_spec: dict[str, Any], lq: torch.Tensor, hr_side: int, reps: int = 2
) -> tuple[float, float]:
    """CPU seconds per iteration of the network's Conv2d layers alone, each forward + backward at its training
    input shape (bf16 autocast, channels_last): (layers at HR resolution, all other Conv2d layers)."""
    net = make_net(net_spec).to(memory_format=CL).train()  # type: ignore[call-overload]
    calls: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.append((m, i[0].shape)))
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(lq.contiguous(memory_format=CL))
    for h in hooks:
        h.remove()
    hr = rest = 0.0
    for conv, shape in calls:
        x = torch.randn(shape).to(torch.bfloat16).contiguous(memory_format=CL).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gy = torch.randn(conv(x).shape).to(torch.bfloat16).contiguous(memory_format=CL)

        def run(conv: nn.Conv2d = conv, x: torch.Tensor = x, gy: torch.Tensor = gy) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = conv(x)
            y.backward(gy)

        best = best_cpu_seconds(run, reps)
        if shape[-1] >= hr_side:
            hr += best
        else:
            rest += best
    return hr, rest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="paragonsr2_nano")
    ap.add_argument("--net-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="architecture option (YAML value), e.g. hr_blocks=0; repeatable")  # fmt: skip
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--gt", type=int, default=128, help="GT crop size (LQ = gt / 2)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per path per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    default_data = os.environ.get(
        "PARAGONSR_PHOTOS", Path(__file__).resolve().parents[2] / "shared/data/photos"
    )
    ap.add_argument("--data", type=Path, default=Path(default_data),
                    help="HR photo folder for the data-included rows (skipped when missing)")  # fmt: skip
    ap.add_argument("--compile", action="store_true",
                    help="add a 'bare bf16+CL compiled' row: the bare bf16 loop with torch.compile(network)")  # fmt: skip
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="leave glibc's allocator at its defaults (paragonsr train tunes it)")  # fmt: skip
    args = ap.parse_args(argv)
    net: dict[str, Any] = {"type": args.net}
    for item in args.net_opt:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--net-opt {item!r}: expected KEY=VALUE, e.g. hr_blocks=0")
        if key in ("type", "scale"):
            ap.error(f"--net-opt {item!r}: '{key}' is set by --net and the bench (x2), not here")
        try:
            net[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            ap.error(f"--net-opt {item!r}: the value is not valid YAML")
    try:
        make_net(net)
    except (TypeError, ValueError, KeyError) as e:
        opts = "".join(f" --net-opt {o}" for o in args.net_opt)
        ap.error(f"--net {args.net}{opts}: cannot build this network ({e})")
    malloc = "off (--no-malloc-tuning)" if args.no_malloc_tuning else tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(args.batch, 3, args.gt, args.gt, generator=g)
    batch = {"gt": gt, "lq": F.avg_pool2d(gt, 2)}
    steps = {
        "bare fp32": bare_step(net, batch, bf16=False),
        "bare bf16+CL": bare_step(net, batch, bf16=True),
        "trainer": trainer_step(net, batch, args.batch, args.gt),
        "trainer L1": trainer_step(net, batch, args.batch, args.gt, mssim=False),
    }
    if args.compile:
        steps["bf16+CL compiled"] = bare_step(net, batch, bf16=True, compile_net=True)
    if args.data.is_dir():
        for cache in (False, True):
            name = f"+data cache {'on' if cache else 'off'}"
            steps[name] = loaded_trainer_step(net, args.data, args.batch, args.gt, cache)
    warm: dict[str, float] = {}
    for name, step in steps.items():  # warm-up (allocator, oneDNN caches, first decodes, torch.compile)
        t0 = time.perf_counter()
        step()
        warm[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            c0 = time.process_time()
            for _ in range(args.iters):
                step()
            times[name].append((time.process_time() - c0) / args.iters)
    sec = {k: statistics.median(v) for k, v in times.items()}
    gflop = network_flops(net, batch["lq"][:1]) * args.batch / 1e9
    peak = {
        "fp32": conv_peak(torch.float32, torch.contiguous_format),
        "bf16+CL": conv_peak(torch.bfloat16, CL),
    }
    hr_conv, other_conv = conv_layer_seconds(net, batch["lq"], args.gt)
    label = args.net + "".join(f" {k}={v}" for k, v in net.items() if k != "type")
    print(f"{label} x2, batch {args.batch}, GT {args.gt} (LQ {args.gt // 2}), {torch.get_num_threads()} "
          f"thread(s), {args.iters} iters x {args.rounds} rounds, CPU time per iteration (median), "
          f"malloc tuning: {malloc}")  # fmt: skip
    print(f"network forward+backward: {gflop:.1f} GFLOP per iteration")
    print(
        f"conv peak (64->64 3x3, fwd+bwd): fp32 {peak['fp32']:.0f} GFLOP/s, bf16+CL {peak['bf16+CL']:.0f} GFLOP/s"
    )
    base = sec["bare fp32"]
    for name, s in sec.items():
        ref = peak["fp32"] if name == "bare fp32" else peak["bf16+CL"]
        print(
            f"{name:>16}: {s:6.3f} CPU-s/it  {1 / s:6.2f} it/CPU-s  {args.batch / s:6.1f} img/CPU-s  "
            f"x{base / s:4.2f} vs bare fp32  {gflop / s:6.1f} GFLOP/s = {100 * gflop / s / ref:4.1f} % of peak"
        )
    if "bf16+CL compiled" in sec:
        print(f"torch.compile: first call (compiling) {warm['bf16+CL compiled']:.0f} s wall; compiled / eager "
              f"bf16+CL loop: {sec['bf16+CL compiled'] / sec['bare bf16+CL']:.2f}x the CPU time per iteration")  # fmt: skip
    if "+data cache on" in sec:
        print(f"+data rows: trainer step plus loading its batch from {args.data} (OTF, bicubic x2, in-process); "
              f"image cache: {sec['+data cache off'] / sec['+data cache on']:.2f}x per iteration")  # fmt: skip
    print(f"trainer vs bare fp32 eager: {base / sec['trainer']:.2f}x, L1 only {base / sec['trainer L1']:.2f}x "
          f"(goal >= 4x); trainer overhead over the bare bf16+CL loop (MS-SSIM, EMA, clipping, logging): "
          f"{100 * (sec['trainer'] - sec['bare bf16+CL']) / sec['bare bf16+CL']:+.0f} %, L1 only "
          f"{100 * (sec['trainer L1'] - sec['bare bf16+CL']) / sec['bare bf16+CL']:+.0f} %")  # fmt: skip
    print(f"bound: the network's Conv2d layers alone (each fwd+bwd, bf16+CL): HR {hr_conv:.3f} CPU-s/it, others "
          f"{other_conv:.3f}; with everything else free: x{base / hr_conv:.2f} (HR convs only), "
          f"x{base / (hr_conv + other_conv):.2f} (all Conv2d layers) vs bare fp32")  # fmt: skip


if __name__ == "__main__":
    main()
