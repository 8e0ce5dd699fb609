"""Train the packaged default model: 2x ParagonSR2 nano, fidelity stage (L1 + MS-SSIM), on the shared photos.

A self-contained CPU/GPU loop (no option YAML) so it can start before anything else is ready; its exact settings
are printed, saved next to the weights (``train_config.json``) and in ``assets/models/manifest.json``. LR inputs
are a 50/50 mix of plain bicubic (antialiased, Pillow/MATLAB style: standard benchmark inputs) and the ``lrgen``
pipeline (slight blur + random kernel, occasional multi-step chains), rounded to 8 bit like real files.

    python scripts/train_default_model.py --out runs/default --cpu-minutes 90

The validation split is ``paragonsr.data.splits.validation_photos`` (every 8th photo by sorted name), never
trained on.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from paragonsr.archs import build_arch
from paragonsr.checkpoint import save_model
from paragonsr.evaluate import bicubic_lq
from paragonsr.metrics import calculate_psnr
from paragonsr.ops.resample import resize

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def split_photos(folder: Path) -> tuple[list[Path], list[Path]]:
    paths = sorted(folder.glob("*.jpg"))
    val = paths[::8]
    return [p for p in paths if p not in val], val


def load_rgb(path: Path) -> np.ndarray:
    """uint8 HWC RGB as a viewer shows the file (gray repeated, alpha dropped)."""
    from paragonsr.io.image_io import read_image, to_dtype, to_rgb

    return to_dtype(to_rgb(read_image(path)[0]), 8)


class Sampler:
    """Random GT crops (flips/rot90) and their LQ, one numpy Generator for full reproducibility."""

    def __init__(
        self, images: list[np.ndarray], gt_size: int, scale: int, p_bicubic: float, seed: int
    ) -> None:
        self.images, self.gt_size, self.scale, self.p_bicubic = images, gt_size, scale, p_bicubic
        self.rng = np.random.default_rng(seed)
        from paragonsr.degrade import build_degradation

        self.lrgen = build_degradation("lrgen", {}, scale)

    def one(self) -> tuple[np.ndarray, np.ndarray]:
        img = self.images[self.rng.integers(len(self.images))]
        h, w = img.shape[:2]
        s = self.gt_size
        top, left = self.rng.integers(0, h - s + 1), self.rng.integers(0, w - s + 1)
        gt = img[top : top + s, left : left + s].astype(np.float32) / 255.0
        if self.rng.random() < 0.5:
            gt = gt[:, ::-1]
        gt = np.ascontiguousarray(np.rot90(gt, int(self.rng.integers(4))))
        if self.rng.random() < self.p_bicubic:
            lq = bicubic_lq(gt, self.scale)
        else:
            out = self.lrgen(gt, self.rng)
            lq, gt = out["lq"], out.get("gt", gt)
        lq = np.round(np.clip(lq, 0, 1) * 255) / 255  # 8-bit like the files people upscale
        return gt, lq.astype(np.float32)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.one() for _ in range(n)]
        gt = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).contiguous()
        lq = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).contiguous()
        return lq, gt


class BatchStream(torch.utils.data.IterableDataset):
    """Endless batches made in a worker process, so data making overlaps the training step."""

    def __init__(self, sampler: Sampler, batch: int) -> None:
        self.sampler, self.batch = sampler, batch

    def __iter__(self):
        torch.set_num_threads(1)
        while True:
            yield self.sampler.batch(self.batch)


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """BasicSR/MATLAB PSNR on the Y channel of [0,1] RGB images (the project's metric)."""
    return calculate_psnr(a * 255.0, b * 255.0, crop_border=border, test_y_channel=True)


@torch.no_grad()
def validate(
    model: torch.nn.Module, val: list[tuple[np.ndarray, np.ndarray]], scale: int
) -> tuple[float, float]:
    model.eval()
    ours, bic = [], []
    for gt, lq in val:
        x = torch.from_numpy(lq).permute(2, 0, 1)[None]
        sr = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        sr = np.round(sr * 255) / 255
        up = (
            np.round(
                np.clip(resize(x, scale=scale, kernel="bicubic")[0].permute(1, 2, 0).numpy(), 0, 1) * 255
            )
            / 255
        )
        ours.append(psnr_y(sr, gt, scale))
        bic.append(psnr_y(up, gt, scale))
    return float(np.mean(ours)), float(np.mean(bic))


def progress_entry(it: int, start: float, cpu0: float, p_model: float, p_bic: float) -> dict:
    return {
        "iter": it,
        "wall_min": round((time.time() - start) / 60, 2),
        "cpu_min": round((time.process_time() - cpu0) / 60, 2),
        "psnr_y": p_model,
        "bicubic_psnr_y": p_bic,
    }


def ms_ssim_loss() -> torch.nn.Module | None:
    try:
        from paragonsr.losses import LOSS_REGISTRY
    except ImportError:
        return None
    return LOSS_REGISTRY.build("MSSSIMLoss", loss_weight=1.0) if "MSSSIMLoss" in LOSS_REGISTRY else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/default_nano_x2"))
    ap.add_argument("--arch", default="paragonsr2_nano")
    ap.add_argument("--arch-kwargs", default='{"image_residual": true}', help="JSON overrides for the arch")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument(
        "--cpu-minutes",
        type=float,
        default=60.0,
        help="compute budget in process CPU minutes (all threads); the LR schedule follows it, so a run that "
        "shares the machine or is paused gets the same training as one that runs alone",
    )
    ap.add_argument("--init", type=Path, help="start from these weights (e.g. a previous run's latest_ema)")
    ap.add_argument(
        "--init-strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-init-strict: load --init into a changed architecture (e.g. fewer hr_blocks); the missing and "
        "unexpected keys are printed",
    )
    ap.add_argument("--max-iters", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--gt-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--ssim-weight", type=float, default=0.2)
    ap.add_argument("--p-bicubic", type=float, default=0.5)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-crop", type=int, default=384, help="centre GT crop of each validation photo")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="data worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--photos", type=Path, default=PHOTOS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)

    train_paths, val_paths = split_photos(args.photos)
    images = [load_rgb(p) for p in train_paths]
    val = []
    for p in val_paths:
        img = load_rgb(p).astype(np.float32) / 255
        h, w = img.shape[:2]
        c = args.val_crop
        gt = img[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
        val.append((gt, bicubic_lq(gt, args.scale)))  # 8-bit rounded, as files are
    sampler = Sampler(images, args.gt_size, args.scale, args.p_bicubic, args.seed)

    arch_kwargs = json.loads(args.arch_kwargs)
    if "upscale" not in arch_kwargs:  # SRVGGNetCompact names its factor "upscale"
        arch_kwargs = {"scale": args.scale, **arch_kwargs}
    model = build_arch(args.arch, **arch_kwargs).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if args.init is not None:
        from paragonsr.checkpoint import load_weights

        report = load_weights(model, args.init, strict=args.init_strict)
        if not args.init_strict:
            print(f"--init {args.init} (non-strict): {report}", flush=True)
    ema = copy.deepcopy(model).eval()
    for param in ema.parameters():
        param.requires_grad_(False)
    ssim = ms_ssim_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    config = {**vars(args), "out": str(args.out), "photos": str(args.photos), "arch_kwargs": arch_kwargs}
    config["init"] = None if args.init is None else str(args.init)
    config.update(train_photos=[p.name for p in train_paths], val_photos=[p.name for p in val_paths])
    config["ms_ssim"] = ssim is not None
    print(json.dumps({k: v for k, v in config.items() if "photos" not in k}, indent=1), flush=True)

    log = []
    start, cpu0 = time.time(), time.process_time()
    budget = args.cpu_minutes * 60
    best = -1.0
    it = 0
    bar = tqdm(total=int(budget), unit="cpu-s", desc="train", file=sys.stdout, mininterval=30)
    stream = iter(
        torch.utils.data.DataLoader(
            BatchStream(sampler, args.batch),
            batch_size=None,
            num_workers=args.workers,
            prefetch_factor=4
            if args.workers > 0
            else None,  # torch refuses a prefetch factor without workers
        )
    )
    while it < args.max_iters and time.process_time() - cpu0 < budget:
        # cosine decay on the fraction of the compute budget spent: the schedule ends when the budget does
        frac = min(1.0, (time.process_time() - cpu0) / budget)
        for g in opt.param_groups:
            g["lr"] = 1e-5 + 0.5 * (args.lr - 1e-5) * (1 + math.cos(math.pi * frac))
        model.train()
        lq, gt = next(stream)
        lq, gt = lq.to(device), gt.to(device)
        if args.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            sr = model(lq)
        sr = sr.float()
        loss = F.l1_loss(sr, gt)
        if ssim is not None and args.ssim_weight > 0:
            loss = loss + args.ssim_weight * ssim(sr.clamp(0, 1), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - args.ema)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        it += 1
        bar.update(int(time.process_time() - cpu0) - bar.n)
        if it % args.val_every == 0:
            p_model, p_bic = validate(ema, val, args.scale)
            entry = progress_entry(it, start, cpu0, p_model, p_bic)
            entry.update(loss=float(loss), lr=opt.param_groups[0]["lr"])
            log.append(entry)
            bar.write(json.dumps(entry))
            meta = {"train_iters": str(it), "val_psnr_y": f"{p_model:.3f}"}
            save_model(args.out / "latest_ema.safetensors", ema, metadata=meta)
            if p_model > best:
                best = p_model
                save_model(args.out / "best_ema.safetensors", ema, metadata=meta)
            (args.out / "log.json").write_text(json.dumps({"config": config, "log": log}, indent=1))
    bar.close()
    p_model, p_bic = validate(ema, val, args.scale)
    log.append(progress_entry(it, start, cpu0, p_model, p_bic))
    save_model(args.out / "latest_ema.safetensors", ema, metadata={"train_iters": str(it)})
    (args.out / "log.json").write_text(json.dumps({"config": config, "log": log}, indent=1))
    print(json.dumps(log[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
