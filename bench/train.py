"""Training throughput on CPU: ParagonSR2 nano fidelity step (batch 8, LQ 64x64, x2), fp32 vs
bf16 + channels_last, and the trainer's overhead against a bare PyTorch loop doing the same
forward / L1 backward / Adam step. Runs are interleaved (bare, trainer, bare, trainer, ...) so machine load
affects both alike; the median of the rounds is reported. Besides wall-clock it/s the script reports it/s
per CPU-second of this process (``time.process_time``): on a shared, oversubscribed machine that figure is
what the overhead ratio is computed from (wall time there mostly measures the neighbours).

    python bench/train.py [--iters 8] [--rounds 3] [--batch 8] [--lq 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from paragonsr.archs import build_arch
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel


def options(bf16: bool, batch: int, lq: int) -> dict:
    return {
        "name": "bench", "scale": 2,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": "-", "dataroot_lq": "-",
                               "gt_size": lq * 2, "batch_size_per_gpu": batch}},
        "network_g": {"type": "paragonsr2_nano"},
        "train": {"total_iter": 10**6, "optim_g": {"type": "Adam", "lr": 1e-4}, "pixel_opt": {"type": "L1Loss"},
                  "use_amp": bf16, "amp_bf16": True, "use_channels_last": bf16},
        "logger": {"use_tb_logger": False},
    }  # fmt: skip


def bare_loop(batches: list[dict], bf16: bool, iters: int) -> tuple[float, float]:
    torch.manual_seed(0)
    net = build_arch("paragonsr2_nano", scale=2)
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    net = net.to(memory_format=fmt).train()  # type: ignore[call-overload]
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.99))
    t0 = c0 = 0.0
    for i in range(iters + 1):
        if i == 1:
            t0, c0 = time.perf_counter(), time.process_time()  # first iteration = warm-up
        b = batches[i % len(batches)]
        lq, gt = b["lq"].contiguous(memory_format=fmt), b["gt"].contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            sr = net(lq)
        F.l1_loss(sr.float(), gt).backward()
        opt.step()
    return iters / (time.perf_counter() - t0), iters / (time.process_time() - c0)


def trainer_loop(batches: list[dict], bf16: bool, iters: int, batch: int, lq: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = SRModel(parse_options(options(bf16, batch, lq)), torch.device("cpu"))
    t0 = c0 = 0.0
    for i in range(iters + 1):
        if i == 1:
            t0, c0 = time.perf_counter(), time.process_time()
        model.optimize_parameters([model.to_device(batches[i % len(batches)])], i + 1)
    return iters / (time.perf_counter() - t0), iters / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lq", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        gt = torch.rand(args.batch, 3, args.lq * 2, args.lq * 2, generator=g)
        batches.append({"gt": gt, "lq": F.avg_pool2d(gt, 2)})
    print(f"ParagonSR2 nano x2, batch {args.batch}, LQ {args.lq}x{args.lq}, {torch.get_num_threads()} threads, "
          f"{args.iters} iters x {args.rounds} rounds (median)")  # fmt: skip
    results = {}
    for bf16 in (False, True):
        runs: dict[str, list[tuple[float, float]]] = {"bare": [], "trainer": []}
        for _ in range(args.rounds):
            runs["bare"].append(bare_loop(batches, bf16, args.iters))
            runs["trainer"].append(trainer_loop(batches, bf16, args.iters, args.batch, args.lq))
        wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        label = "bf16+channels_last" if bf16 else "fp32"
        results[label] = cpu["trainer"]
        print(
            f"{label:>20}: wall it/s bare {wall['bare']:6.3f} trainer {wall['trainer']:6.3f} | "
            f"it per CPU-s bare {cpu['bare']:6.3f} trainer {cpu['trainer']:6.3f} "
            f"({cpu['trainer'] * args.batch:5.1f} img/CPU-s) | trainer overhead "
            f"{100 * (cpu['bare'] - cpu['trainer']) / cpu['bare']:+5.1f} % (target <= 5 %)"
        )
    ratio = results["bf16+channels_last"] / results["fp32"]
    print(f"bf16+channels_last vs fp32 (trainer, per CPU-s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
