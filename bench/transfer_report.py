"""Compact weight transfer (64/16 -> 32/32 and other sizes), measured side by side: parameter counts, PSNR of each transferred
model against the source model's output, and PSNR of source / transferred / bicubic against the HR photo.

    .venv/bin/python bench/transfer_report.py [--ckpt SRC.safetensors] [--train-seconds 240]
    .venv/bin/python bench/transfer_report.py --ckpt SRC.pth --images Set5 --images Set14 --candidate FT.safetensors

Without --ckpt a 64 feat / 16 conv x2 model is trained for --train-seconds on photos 0-29 (bicubic LR, L1), so the
source has real structure; the last photos are the held-out samples (centre crops, OpenCV bicubic LR). With
--images the samples are those whole images, mod-cropped, with the benchmark's MATLAB-bicubic LR at the source's
scale. --candidate adds rows for other checkpoints (e.g. a fine-tuned transfer), scored the same way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from paragonsr.archs import build_arch  # noqa: E402
from paragonsr.archs.compact import compact_kwargs_from_state_dict  # noqa: E402
from paragonsr.benchmark import matlab_bicubic_lr  # noqa: E402
from paragonsr.checkpoint import load_model, load_state_dict  # noqa: E402
from paragonsr.data.transforms import imread_rgb  # noqa: E402
from paragonsr.io.files import list_images, read_image_native  # noqa: E402
from paragonsr.transfer import build_pair, compare_outputs, psnr, transfer_compact  # noqa: E402
from paragonsr.utils.params import count_params  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos"


def _photos() -> list[np.ndarray]:
    return [imread_rgb(p) for p in sorted(PHOTOS.glob("*.jpg"))]


def _train(seconds: float, photos: list[np.ndarray]) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    m = build_arch("srvggnetcompact", num_feat=64, num_conv=16, upscale=2)
    opt = torch.optim.Adam(m.parameters(), 2e-4)
    t0, it = time.time(), 0
    while time.time() - t0 < seconds:
        hs, ls = [], []
        for _ in range(8):
            im = photos[rng.integers(30)]
            y, x = rng.integers(im.shape[0] - 64), rng.integers(im.shape[1] - 64)
            hr = im[y : y + 64, x : x + 64]
            hs.append(hr)
            ls.append(cv2.resize(hr, (32, 32), interpolation=cv2.INTER_CUBIC))
        lr_t, hr_t = (torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous() for a in (ls, hs))
        loss = (m(lr_t) - hr_t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
    print(f"trained source 64/16 x2 for {it} iterations ({seconds:.0f} s), last L1 {loss.item():.4f}")
    return m.state_dict()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--train-seconds", type=float, default=240)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--images", action="append", default=[], help="folder of held-out HR images (repeatable)")
    ap.add_argument("--candidate", action="append", default=[], help="extra checkpoint to score (repeatable)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    photos = [] if a.ckpt and a.images else _photos()
    state = load_state_dict(a.ckpt)[0] if a.ckpt else _train(a.train_seconds, photos)
    scale = compact_kwargs_from_state_dict(state)["upscale"]
    hrs, lrs = [], []
    if a.images:  # whole benchmark images, mod-cropped; LR = MATLAB bicubic (the `eval --benchmark` protocol)
        for path in (p for folder in a.images for p in list_images(Path(folder), what="--images")):
            im = read_image_native(path)
            im = np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im[..., :3]
            im = im.astype(np.float32) / 255
            im = im[: im.shape[0] - im.shape[0] % scale, : im.shape[1] - im.shape[1] % scale]
            hrs.append(im)
            lrs.append(matlab_bicubic_lr(im, scale))
    else:  # held-out samples: centre crops of the last 7 photos; LR = bicubic /scale
        for im in photos[30:]:
            h, w = im.shape[:2]
            hr = im[h // 2 - a.crop // 2 : h // 2 + a.crop // 2, w // 2 - a.crop // 2 : w // 2 + a.crop // 2]
            hrs.append(hr)
            lrs.append(cv2.resize(hr, (a.crop // scale, a.crop // scale), interpolation=cv2.INTER_CUBIC))

    def vs_hr(model: torch.nn.Module) -> float:
        with torch.no_grad():
            out = [model(torch.from_numpy(lr).permute(2, 0, 1)[None]) for lr in lrs]
        return float(
            np.mean([psnr(o, torch.from_numpy(hr).permute(2, 0, 1)[None]) for o, hr in zip(out, hrs)])
        )

    bic = float(np.mean([psnr(torch.from_numpy(cv2.resize(lr, hr.shape[1::-1], interpolation=cv2.INTER_CUBIC)),
                              torch.from_numpy(hr)) for lr, hr in zip(lrs, hrs)]))  # fmt: skip
    what = f"{len(lrs)} whole images" if a.images else f"{len(lrs)} held-out {a.crop}px crops"
    print(f"\n{what}, x{scale} bicubic LR; bicubic upscale vs HR (RGB): {bic:.2f} dB\n")
    print(f"{'target':28s} {'params':>9s} {'vs source out':>14s} {'vs HR':>8s}")
    for feat, conv, mode, crit in ((64, 16, "identity", "filter"), (32, 16, "identity", "filter"),
                                   (32, 32, "identity", "filter"), (32, 32, "identity", "both"),
                                   (32, 32, "copy", "filter"), (48, 24, "identity", "filter")):  # fmt: skip
        res = transfer_compact(state, feat, conv, mode, criterion=crit)
        src, dst = build_pair(res)
        src.load_state_dict(state)
        per = compare_outputs(src, dst, lrs)
        d = np.mean([r["psnr_dst_vs_src"] for r in per])
        label = f"{feat}/{conv} ({mode}, {crit})" if (feat, conv) != (64, 16) else "64/16 source"
        print(f"{label:28s} {count_params(dst):9,d} {d:11.2f} dB {vs_hr(dst):5.2f} dB")
    src = build_arch("srvggnetcompact", **compact_kwargs_from_state_dict(state))
    src.load_state_dict(state)
    for path in a.candidate:
        cand = load_model(path)
        d = np.mean([r["psnr_dst_vs_src"] for r in compare_outputs(src, cand, lrs)])
        print(f"{Path(path).name[:28]:28s} {count_params(cand):9,d} {d:11.2f} dB {vs_hr(cand):5.2f} dB")
    print(f"{'nearest upscale':28s} {'-':>9s} {np.mean([r['psnr_nearest_vs_src'] for r in per]):11.2f} dB")


if __name__ == "__main__":
    main()
