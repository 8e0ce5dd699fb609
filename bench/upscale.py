"""End-to-end ``paragonsr upscale`` pipeline costs, measured side by side in one run.

    python bench/upscale.py                      # fused nano x2 on a 256x256 crop of a photo
    python bench/upscale.py --size 512 --arch paragonsr2_tiny --scale 4 --threads 2

Prints output megapixels/s for: the model through ``TorchBackend`` in fp32 and in ``auto`` precision (bf16 +
channels_last on CPUs with native bf16), untiled vs. tiled (tile 128, overlap 32: the stitching overhead),
the MKS2021 and bicubic resamplers through the same pipeline, and image decode/encode of the photo.
Reported, never asserted; targets: tiling overhead < 1.5x (tile 128 / overlap 32 recomputes ~1.6x the pixels),
auto >= fp32 throughput where bf16 is native.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paragonsr.archs import build_arch
from paragonsr.infer.backends import ResamplerBackend, TorchBackend
from paragonsr.infer.upscale import Upscaler
from paragonsr.io.image_io import read_image, write_image

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, oneDNN primitive cache)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="paragonsr2_nano")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="LR crop side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--photo", default=str(PHOTOS / "lomiri_seeding_by_Clements_Engelhardt.jpg"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    photo, info = read_image(args.photo)
    t_read = time.perf_counter() - t0
    h, w = photo.shape[:2]
    top, left = (h - args.size) // 2, (w - args.size) // 2
    img = np.ascontiguousarray(photo[top : top + args.size, left : left + args.size])
    out_mp = (args.size * args.scale) ** 2 / 1e6

    torch.manual_seed(0)
    model = build_arch(args.arch, scale=args.scale).eval()
    if hasattr(model, "fuse_for_release"):
        cast(Any, model).fuse_for_release()
    rows: list[tuple[str, float]] = []

    def bench(label: str, up: Upscaler) -> None:
        sec = timeit(lambda: up(img, info), args.repeats)
        rows.append((label, out_mp / sec))

    fp32 = TorchBackend(model, "cpu", "fp32")
    auto = TorchBackend(
        cast(Any, build_arch(args.arch, scale=args.scale).eval()).fuse_for_release(), "cpu", "auto"
    )
    auto.model.load_state_dict(model.state_dict())
    bench(f"{args.arch} fp32, whole image", Upscaler(fp32, tile=None))
    bench(f"{args.arch} fp32, tile 128/32", Upscaler(fp32, tile=128, overlap=32))
    bench(f"{args.arch} auto ({auto.precision}), whole", Upscaler(auto, tile=None))
    bench(f"{args.arch} auto ({auto.precision}), tile 128/32", Upscaler(auto, tile=128, overlap=32))
    bench("resampler MKS2021", Upscaler(ResamplerBackend("magic_sharp_2021", args.scale)))
    bench("resampler bicubic", Upscaler(ResamplerBackend("bicubic", args.scale)))

    with tempfile.TemporaryDirectory() as tmp:
        t_png = timeit(lambda: write_image(Path(tmp) / "o.png", photo, info), 1)
        t_jpg = timeit(lambda: write_image(Path(tmp) / "o.jpg", photo, info), 1)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; LR {args.size}px -> x{args.scale}")
    print(f"{'pipeline':44s} {'out MP/s':>9s}")
    for label, mps in rows:
        print(f"{label:44s} {mps:9.3f}")
    by = dict(rows)
    whole32, tiled32 = rows[0][1], rows[1][1]
    print(f"tiling overhead (fp32 whole / tiled):       {whole32 / tiled32:.2f}x")
    print(f"auto vs fp32 (whole image):                  {rows[2][1] / whole32:.2f}x")
    print(f"MKS2021 vs {args.arch} fp32:                {by['resampler MKS2021'] / whole32:.1f}x faster")
    mp = h * w / 1e6
    print(
        f"I/O on the {w}x{h} photo: read {mp / t_read:.1f} MP/s, PNG write {mp / t_png:.1f} MP/s, "
        f"JPEG write {mp / t_jpg:.1f} MP/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
