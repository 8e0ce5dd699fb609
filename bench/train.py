"""CPU training throughput: the trainer's step against a bare fp32 eager PyTorch loop of the same network, on
both kinds of CPU side by side: this one and, on a CPU with native bf16, the same CPU run as an AVX2 CPU without it
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` in a child process; ``--kinds this`` skips it).

Within one kind, side by side in one process, interleaved round by round (bare fp32, bare fp32+CL, trainer, ...)
so load on a shared machine hits every path alike; the median of the rounds is reported. Timing is CPU time of
this process (``time.process_time``): on an oversubscribed machine wall time mostly measures the neighbours.

* ``bare fp32``: ``net(lq)`` → L1 → backward → AdamW, fp32, NCHW, eager. The reference of the speed-up.
* ``bare fp32+CL``: the same with channels_last tensors and weights (what fp32 training runs now).
* ``bare bf16+CL``: the same loop under bf16 autocast with channels_last; only where bf16 is native (emulated bf16
  is ~9x slower than fp32: ``--emulated-bf16`` times it anyway).
* ``trainer``: :class:`paragonsr.train.sr_model.SRModel.optimize_parameters` with the shipped fidelity recipe
  (``use_amp`` + ``amp_bf16`` + ``use_channels_last``, L1 + 0.1 MS-SSIM, EMA 0.999, grad_clip 1.0, AdamW), i.e.
  what ``paragonsr train`` runs per iteration once the batch is loaded, in the precision
  :mod:`paragonsr.precision` resolves on this kind of CPU (bf16 autocast where native, else fp32).
* ``trainer L1``: the same with L1 only (the ``classic`` recipe): the step without MS-SSIM.
* ``bf16+CL compiled`` (``--compile``): the bare loop in the resolved precision with the network through
  ``torch.compile`` (inductor), timed after the compiling first call.
* ``+data cache off/on`` (when ``--data`` is a folder of HR photos, default ``$PARAGONSR_PHOTOS`` or
  ``../shared/data/photos``): the trainer step plus making its batch with the OTF dataset (crop, flips, bicubic
  ×2 LR) in this process, without and with the decoded-image cache: the CPU cost of a whole iteration.

Effective GFLOP/s = the network's forward + backward FLOPs (``bench/peak.py``; the loss and optimizer are not
counted) / CPU seconds per iteration, against this CPU's measured conv peak (``bench/peak.py``: a 64→64 3×3 conv on
16×64×128×128, forward + backward) in fp32 NCHW, fp32 channels_last and, where native, bf16 channels_last.

What bounds the speed-up: the network's own Conv2d layers, each timed alone forward + backward at its training
shape in the trainer's precision, split into HR-resolution layers and the rest: ``bare fp32 / Conv2d time`` is
the most any exact reformulation of the rest of the step can reach.

The allocator is tuned as ``paragonsr train`` tunes it (``paragonsr.utils.malloc``; process-wide, so every row
gets it; ``--no-malloc-tuning`` leaves glibc's defaults).

    python bench/train.py [--net paragonsr2_nano] [--net-opt hr_blocks=0] [--batch 16] [--gt 128] [--iters 3] [--rounds 3] [--threads 1]
                          [--data PHOTOS] [--compile] [--no-malloc-tuning] [--kinds both|this] [--emulated-bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/peak.py, also when imported by path

from paragonsr.archs import build_arch
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel
from paragonsr.utils.malloc import tune_malloc
from peak import AVX2_ENV, best_cpu_seconds, conv_peak, cpu_kind, native_bf16, network_flops

CL = torch.channels_last
__all__ = ["best_cpu_seconds", "conv_peak", "network_flops"]  # re-exported from bench/peak.py


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
    net_spec: dict[str, Any], batch: dict, bf16: bool, compile_net: bool = False, cl: bool | None = None
) -> Callable[[], None]:
    """One bare training step; ``cl`` channels_last (default: with bf16); ``compile_net`` runs the network
    through ``torch.compile`` (inductor; the first call compiles, so callers warm up before timing)."""
    torch.manual_seed(0)
    fmt = CL if (bf16 if cl is None else cl) else torch.contiguous_format
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


def trainer_model(net: dict[str, Any], batch_size: int, gt: int, mssim: bool = True) -> SRModel:
    """The trainer's model of the shipped recipe, precision resolved for this CPU (:mod:`paragonsr.precision`)."""
    torch.manual_seed(0)
    return SRModel(parse_options(trainer_options(net, batch_size, gt, mssim)), torch.device("cpu"))


def trainer_step(
    net: dict[str, Any], batch: dict, batch_size: int, gt: int, mssim: bool = True
) -> Callable[[], None]:
    model = trainer_model(net, batch_size, gt, mssim)
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
    model = trainer_model(net, batch_size, gt)
    pos = [0]

    def run() -> None:
        keys = [(0, (pos[0] + i) % len(ds)) for i in range(batch_size)]
        pos[0] += batch_size
        items = [ds[k] for k in keys]
        b = {k: torch.stack([it[k] for it in items]) for k in ("gt", "lq")}
        model.optimize_parameters([model.to_device(b)], pos[0] // batch_size)

    return run


def conv_layer_seconds(
    net_spec: dict[str, Any], lq: torch.Tensor, hr_side: int, reps: int = 2, bf16: bool = True
) -> tuple[float, float]:
    """CPU seconds per iteration of the network's Conv2d layers alone, each forward + backward at its training
    input shape (channels_last, bf16 autocast or fp32): (layers at HR resolution, all other Conv2d layers)."""
    net = make_net(net_spec).to(memory_format=CL).train()  # type: ignore[call-overload]
    calls: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.append((m, i[0].shape)))
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    dtype = torch.bfloat16 if bf16 else torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(lq.contiguous(memory_format=CL))
    for h in hooks:
        h.remove()
    hr = rest = 0.0
    for conv, shape in calls:
        x = torch.randn(shape).to(dtype).contiguous(memory_format=CL).requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            gy = torch.randn(conv(x).shape).to(dtype).contiguous(memory_format=CL)

        def run(conv: nn.Conv2d = conv, x: torch.Tensor = x, gy: torch.Tensor = gy) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(x)
            y.backward(gy)

        best = best_cpu_seconds(run, reps)
        if shape[-1] >= hr_side:
            hr += best
        else:
            rest += best
    return hr, rest


def parse_net(ap: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
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
    return net


def measure(args: argparse.Namespace, net: dict[str, Any]) -> dict[str, Any]:
    """Time every row on this process's CPU kind and print its section; returns the figures for the summary."""
    malloc = "off (--no-malloc-tuning)" if args.no_malloc_tuning else tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = native_bf16()
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(args.batch, 3, args.gt, args.gt, generator=g)
    batch = {"gt": gt, "lq": F.avg_pool2d(gt, 2)}
    resolved = trainer_model(net, args.batch, args.gt).precision
    steps = {
        "bare fp32": bare_step(net, batch, bf16=False),
        "bare fp32+CL": bare_step(net, batch, bf16=False, cl=True),
    }
    if bf16 or args.emulated_bf16:
        steps["bare bf16+CL"] = bare_step(net, batch, bf16=True)
    steps["trainer"] = trainer_step(net, batch, args.batch, args.gt)
    steps["trainer L1"] = trainer_step(net, batch, args.batch, args.gt, mssim=False)
    if args.compile:
        steps["compiled"] = bare_step(net, batch, bf16=resolved.dtype == "bf16", compile_net=True, cl=True)
    if args.data.is_dir():
        for cache in (False, True):
            steps[f"+data cache {'on' if cache else 'off'}"] = loaded_trainer_step(
                net, args.data, args.batch, args.gt, cache
            )
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
    gflop = network_flops(make_net(net), batch["lq"][:1]) * args.batch / 1e9
    peak = {
        "fp32": conv_peak(torch.float32, torch.contiguous_format, batch=args.peak_batch),
        "fp32+CL": conv_peak(torch.float32, CL, batch=args.peak_batch),
    }
    if bf16:
        peak["bf16+CL"] = conv_peak(torch.bfloat16, CL, batch=args.peak_batch)
    trainer_peak = (
        "bf16+CL" if resolved.dtype == "bf16" else ("fp32+CL" if resolved.channels_last else "fp32")
    )
    hr_conv, other_conv = conv_layer_seconds(net, batch["lq"], args.gt, bf16=resolved.dtype == "bf16")
    label = args.net + "".join(f" {k}={v}" for k, v in net.items() if k != "type")
    print(f"{label} x2, batch {args.batch}, GT {args.gt} (LQ {args.gt // 2}), {torch.get_num_threads()} "
          f"thread(s), {args.iters} iters x {args.rounds} rounds, CPU time per iteration (median), "
          f"malloc tuning: {malloc}")  # fmt: skip
    print(f"CPU kind: {cpu_kind()}")
    print(f"trainer runs: {resolved.summary()}")
    print(f"network forward+backward: {gflop:.1f} GFLOP per iteration")
    print("conv peak (64->64 3x3, fwd+bwd): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    base = sec["bare fp32"]
    for name, s in sec.items():
        ref = peak["fp32"] if name == "bare fp32" else peak["fp32+CL"] if name == "bare fp32+CL" else None
        ref = ref or (peak["bf16+CL"] if name == "bare bf16+CL" and bf16 else peak[trainer_peak])
        print(
            f"{name:>16}: {s:6.3f} CPU-s/it  {1 / s:6.2f} it/CPU-s  {args.batch / s:6.1f} img/CPU-s  "
            f"x{base / s:4.2f} vs bare fp32  {gflop / s:6.1f} GFLOP/s = {100 * gflop / s / ref:4.1f} % of peak"
        )
    if "compiled" in sec:
        eager = sec["bare fp32+CL" if resolved.dtype == "fp32" else "bare bf16+CL"]
        print(f"torch.compile: first call (compiling) {warm['compiled']:.0f} s wall; compiled / eager "
              f"{resolved.dtype}+CL loop: {sec['compiled'] / eager:.2f}x the CPU time per iteration")  # fmt: skip
    if "+data cache on" in sec:
        print(f"+data rows: trainer step plus loading its batch from {args.data} (OTF, bicubic x2, in-process); "
              f"image cache: {sec['+data cache off'] / sec['+data cache on']:.2f}x per iteration")  # fmt: skip
    goal = 2.5 if bf16 else 1.5
    print(f"trainer vs bare fp32 eager: {base / sec['trainer']:.2f}x, L1 only {base / sec['trainer L1']:.2f}x "
          f"(issue 22 goal >= {goal}x on this kind of CPU)")  # fmt: skip
    print(f"bound: the network's Conv2d layers alone (each fwd+bwd, {trainer_peak}): HR {hr_conv:.3f} CPU-s/it, "
          f"others {other_conv:.3f}; with everything else free: x{base / hr_conv:.2f} (HR convs only), "
          f"x{base / (hr_conv + other_conv):.2f} (all Conv2d layers) vs bare fp32")  # fmt: skip
    short = cpu_kind().split(":")[0] + (" (emulated)" if "[emulated" in cpu_kind() else "")
    return {"kind": short, "precision": resolved.summary(), "sec": sec, "gflop": gflop, "peak": peak,
            "conv_bound": base / (hr_conv + other_conv)}  # fmt: skip


def other_kind(argv: list[str]) -> dict[str, Any] | None:
    """Run this bench again as an AVX2 CPU without native bf16 (child process; its section is printed)."""
    env = {**os.environ, **AVX2_ENV}
    env.pop("PARAGONSR_CPU_BF16", None)
    fd_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_train_{os.getpid()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--kinds", "this", "--json", str(fd_path)]
    run = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=None)
    print(run.stdout, end="")
    if run.returncode != 0:
        print(
            f"the AVX2 run failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr
        )
        return None
    try:
        return dict(json.loads(fd_path.read_text()))
    finally:
        fd_path.unlink(missing_ok=True)


def summary(rows: list[dict[str, Any]]) -> None:
    """Both kinds of CPU side by side: each ratio measured within its own run."""
    print(
        "\nside by side (each kind's rows timed interleaved in its own run; ratios vs that run's bare fp32)"
    )
    print(
        f"{'CPU kind':<58}{'bare fp32':>10}{'fp32+CL':>9}{'trainer':>9}{'ratio':>7}{'L1 ratio':>9}{'goal':>6}"
    )
    for r in rows:
        sec = r["sec"]
        goal = 2.5 if "bf16+CL" in r["peak"] else 1.5
        print(f"{r['kind'][:57]:<58}{sec['bare fp32']:>10.3f}{sec['bare fp32+CL']:>9.3f}{sec['trainer']:>9.3f}"
              f"{sec['bare fp32'] / sec['trainer']:>6.2f}x{sec['bare fp32'] / sec['trainer L1']:>8.2f}x{goal:>5}x")  # fmt: skip


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
                    help="add a 'compiled' row: the bare loop in the trainer's precision, torch.compile(network)")  # fmt: skip
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="leave glibc's allocator at its defaults (paragonsr train tunes it)")  # fmt: skip
    ap.add_argument("--kinds", choices=("both", "this"), default="both",
                    help="both: on a CPU with native bf16 also run as an AVX2 CPU without it (child process)")  # fmt: skip
    ap.add_argument("--emulated-bf16", action="store_true",
                    help="time the bare bf16 row even where bf16 is emulated (slow)")  # fmt: skip
    ap.add_argument("--peak-batch", type=int, default=16, help="batch of the conv-peak measurement (16)")
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # the child's figures for the summary
    raw = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(raw)
    net = parse_net(ap, args)
    rows = [measure(args, net)]
    if args.json is not None:
        args.json.write_text(json.dumps(rows[0]))
        return
    if args.kinds == "both" and native_bf16():
        print(
            "\n--- the same CPU as an AVX2 CPU without native bf16 ("
            + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
            + ")"
        )
        child = other_kind([a for a in raw if a not in ("--kinds", "both", "this")])
        if child is not None:
            rows.append(child)
    if len(rows) > 1:
        summary(rows)


if __name__ == "__main__":
    main()
