"""Degradation throughput: samples/s of the ``realesrgan`` pipeline at the x2 Compact fine-tune's settings (x2, gt_size 256,
batch 16, 400x400 source crops as Real-ESRGAN's dataset makes them) with 1 and 2 DataLoader workers, the
per-stage time of one sample, the batched torch path, and a BasicSR-style dense-convolution version of that
path (51x51 USM and 21x21 per-sample kernels as dense convs) measured side by side; plus ``workflows``/``lrgen``.

    .venv/bin/python bench/degrade.py [--batches 6] [--workers 1,2] [--size 400] [--no-dense]

BasicSR's own code was measured at 2.2 samples/s on the 2-core CI CPU (x2, gt 256, batch 16); the target is >= 20x.
CPU time per sample is printed too: on a shared machine it is steadier than wall time.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from paragonsr.degrade import build_degradation, ops
from paragonsr.degrade import realesrgan_torch as rt
from paragonsr.io.files import read_image_native

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
REALESRGAN_X2 = {"gt_size": 256, "queue_size": 180}
BASICSR_SAMPLES_PER_S = 2.2


def load_crops(n: int, size: int) -> list[np.ndarray]:
    paths = sorted(PHOTOS.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {PHOTOS}")
    rng = np.random.default_rng(0)
    crops = []
    for i in range(n):
        img = read_image_native(paths[i % len(paths)])[..., :3]  # uint8 RGB, as a viewer shows it
        h, w = img.shape[:2]
        t, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crops.append(np.ascontiguousarray(img[t : t + size, left : left + size]))
    return crops


class DegradeSet(Dataset):
    def __init__(self, crops: list[np.ndarray], name: str, opt: dict | None, scale: int) -> None:
        self.crops, self.deg = crops, build_degradation(name, opt, scale)

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = self.deg(self.crops[i % len(self.crops)], np.random.default_rng(i))
        return {k: torch.from_numpy(v).permute(2, 0, 1) for k, v in out.items()}


def _worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def loader_rate(crops: list[np.ndarray], name: str, opt: dict | None, workers: int, batches: int) -> float:
    dl = DataLoader(
        DegradeSet(crops, name, opt, 2), batch_size=16, num_workers=workers, worker_init_fn=_worker_init
    )
    it = iter(dl)
    next(it)  # warm-up: worker start, first batch
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = 16 * batches / (time.perf_counter() - t)
    del it
    return rate


def single_rate(crops: list[np.ndarray], name: str, opt: dict | None, n: int) -> tuple[float, float]:
    """(samples/s wall, ms CPU per sample) in this process."""
    deg = build_degradation(name, opt, 2)
    deg(crops[0], np.random.default_rng(0))
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        deg(crops[i % len(crops)], np.random.default_rng(i))
    return n / (time.perf_counter() - t), (time.process_time() - c) / n * 1000


def stage_profile(crops: list[np.ndarray], n: int) -> dict[str, float]:
    """ms of CPU per sample spent in each op of the numpy realesrgan path (ops patched with timers)."""
    totals: dict[str, float] = defaultdict(float)
    names = ("usm_sharpen", "filter2d", "interpolate", "gaussian_noise", "poisson_noise", "jpeg", "round8")
    saved = {k: getattr(ops, k) for k in names}

    def timed(key: str, fn):
        def wrapper(*a, **kw):
            c = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                totals[key] += time.process_time() - c

        return wrapper

    for k in names:
        setattr(ops, k, timed(k, saved[k]))
    try:
        deg = build_degradation("realesrgan", REALESRGAN_X2, 2)
        c = time.process_time()
        for i in range(n):
            deg(crops[i % len(crops)], np.random.default_rng(i))
        totals["total"] = time.process_time() - c
    finally:
        for k in names:
            setattr(ops, k, saved[k])
    return {k: v / n * 1000 for k, v in totals.items()}


def _dense_filter2d(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """BasicSR's filter2D: reflect pad + one dense grouped conv with every sample's K×K kernel."""
    b, c, h, w = x.shape
    p = kernels.shape[-1] // 2
    xp = rt.reflect_pad(x, p).reshape(1, b * c, h + 2 * p, w + 2 * p)
    k = kernels.to(x).repeat_interleave(c, 0)[:, None]
    return F.conv2d(xp, k, groups=b * c).view(b, c, h, w)


def batch_rate(crops: list[np.ndarray], dense: bool) -> tuple[float, float]:
    deg = build_degradation("realesrgan", REALESRGAN_X2, 2)
    gt = torch.from_numpy(np.stack(crops[:16]).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    saved = (rt.filter2d_batch, rt.gaussian_blur_sep)
    if dense:
        rt.filter2d_batch = _dense_filter2d
        rt.gaussian_blur_sep = lambda x, taps: _dense_filter2d(
            x, torch.outer(taps, taps).expand(x.shape[0], -1, -1)
        )
    try:
        t, c = time.perf_counter(), time.process_time()
        cast(Any, deg).degrade_batch(gt, 0)  # the realesrgan pipeline's batched torch path
        return 16 / (time.perf_counter() - t), (time.process_time() - c) / 16 * 1000
    finally:
        rt.filter2d_batch, rt.gaussian_blur_sep = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument(
        "--size", type=int, default=400, help="source crop size fed to realesrgan (Real-ESRGAN: 400)"
    )
    ap.add_argument("--no-dense", action="store_true", help="skip the slow BasicSR-style dense baseline")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    crops = load_crops(32, args.size)
    small = [c[:256, :256] for c in crops]
    print(f"realesrgan x2, gt_size 256, batch 16, {args.size}x{args.size} sources; torch {torch.__version__}")
    rates = {}
    for w in (int(x) for x in args.workers.split(",")):
        rates[w] = loader_rate(crops, "realesrgan", REALESRGAN_X2, w, args.batches)
        print(
            f"  numpy path, {w} worker(s): {rates[w]:7.1f} samples/s  ({rates[w] / BASICSR_SAMPLES_PER_S:5.1f}x BasicSR's 2.2)"
        )
    prof = stage_profile(crops, 24)
    print("  per-stage CPU ms/sample: " + ", ".join(f"{k} {v:.1f}" for k, v in prof.items()))
    per_core = 1000 / prof["total"]
    print(
        f"  CPU-bound rate (1000 / CPU ms): {per_core:.1f} samples/s per core, {2 * per_core:.1f} with 2 workers on "
        f"2 idle cores ({2 * per_core / BASICSR_SAMPLES_PER_S:.0f}x BasicSR); wall rates above shrink on a busy machine"
    )
    r, ms = batch_rate(crops, dense=False)
    print(f"  batched torch path (CPU, 1 thread): {r:6.1f} samples/s, {ms:.1f} CPU ms/sample")
    if not args.no_dense:
        rd, msd = batch_rate(crops, dense=True)
        print(
            f"  same path with BasicSR-style dense convs: {rd:6.1f} samples/s, {msd:.1f} CPU ms/sample -> ours {r / rd:.1f}x"
        )
    for name in ("workflows", "lrgen"):
        r, ms = single_rate(small, name, None, 48)
        print(f"{name} x2, 256x256 sources, 1 process: {r:7.1f} samples/s, {ms:.1f} CPU ms/sample")


if __name__ == "__main__":
    main()
