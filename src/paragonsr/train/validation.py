"""Validation: tiled inference, BasicSR metrics (PSNR/SSIM on 8-bit images, ``crop_border``,
``test_y_channel``), ``save_img`` and best-metric tracking (kept in the training state, so it survives resume)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from paragonsr.data.transforms import imwrite_rgb, to_image_u8
from paragonsr.train.options import ValOpt

log = logging.getLogger("paragonsr.train")

LOWER_IS_BETTER = ("lpips", "dists", "niqe", "brisque")


@torch.no_grad()
def tiled_forward(model: nn.Module, lq: Tensor, scale: int, tile: int = 0, pad: int = 16) -> Tensor:
    """Run ``model`` on ``lq`` (N,C,H,W) in ``tile``-sized LQ tiles with ``pad`` px of context on each side;
    only the un-padded centre of each output tile is kept, so there are no seams. ``tile <= 0`` = whole."""
    n, _, h, w = lq.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(lq)
    out: Tensor | None = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            b, r = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - pad, 0), max(left - pad, 0)
            t1, l1 = min(b + pad, h), min(r + pad, w)
            res = model(lq[:, :, t0:t1, l0:l1])
            if out is None:
                out = res.new_zeros(n, res.shape[1], h * scale, w * scale)
            ys, xs = (top - t0) * scale, (left - l0) * scale
            out[:, :, top * scale : b * scale, left * scale : r * scale] = res[
                :, :, ys : ys + (b - top) * scale, xs : xs + (r - left) * scale
            ]
    assert out is not None
    return out


class BestTracker:
    """Best value (and iteration) per ``dataset/metric``."""

    def __init__(self) -> None:
        self.best: dict[str, dict[str, float]] = {}

    def update(self, dataset: str, metric: str, value: float, it: int, better: str) -> bool:
        key = f"{dataset}/{metric}"
        cur = self.best.get(key)
        improved = cur is None or (value > cur["val"] if better == "higher" else value < cur["val"])
        if improved:
            self.best[key] = {"val": float(value), "iter": int(it)}
        return improved

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {k: dict(v) for k, v in self.best.items()}

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        self.best = {k: {"val": float(v["val"]), "iter": int(v["iter"])} for k, v in state.items()}


def validate(
    model: nn.Module,
    loader: Any,
    dataset_name: str,
    val_opt: ValOpt,
    scale: int,
    it: int,
    device: torch.device,
    vis_dir: Path,
    tracker: BestTracker,
    msg_logger: Any | None = None,
) -> dict[str, float]:
    """Average each metric over the dataset; log, track best, save images. Returns {metric: mean}."""
    import paragonsr.metrics  # noqa: F401  registers the metrics
    from paragonsr.registry import METRIC_REGISTRY

    sums = {name: 0.0 for name in val_opt.metrics}
    count = nonfinite = 0
    if val_opt.pbar:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"val {dataset_name}", unit="img", leave=False)
    for idx, batch in enumerate(loader):
        lq = batch["lq"].to(device)
        sr = tiled_forward(model, lq, scale, val_opt.tile_size, val_opt.tile_pad).float()
        stem = Path(batch["gt_path"][0]).stem
        if not bool(torch.isfinite(sr).all()):  # as 8-bit it would be a black/white image scored as a result
            log.warning(
                f"validation {dataset_name} @ iter {it}: output for {stem} holds NaN/inf; no image written"
            )
            nonfinite += 1
            continue
        sr_img, gt_img = to_image_u8(sr), to_image_u8(batch["gt"])
        for name, m in val_opt.metrics.items():
            fn = METRIC_REGISTRY.get(m.type)
            val = fn(sr_img.astype(np.float64), gt_img.astype(np.float64), crop_border=m.crop_border,
                     test_y_channel=m.test_y_channel, **m.kwargs())  # fmt: skip
            sums[name] += float(val) if not isinstance(val, Tensor) else float(val.mean())
        if val_opt.save_img:
            suffix = f"_{val_opt.suffix}" if val_opt.suffix else ""
            imwrite_rgb(vis_dir / stem / f"{stem}_{it}{suffix}.png", sr_img)
        if msg_logger is not None and idx < val_opt.max_save_img:
            msg_logger.image(f"val_{dataset_name}/{stem}", sr_img, it)
        count += 1
    if count + nonfinite == 0:
        raise RuntimeError(f"validation set {dataset_name} is empty")
    # Any non-finite output: the model is broken, and a mean over the other images would flatter it.
    results = {k: (v / count if not nonfinite else math.nan) for k, v in sums.items()}
    lines = [f"Validation {dataset_name} @ iter {it}"]
    for name, value in results.items():
        if math.isnan(value):
            lines.append(f"\t # {name}: nan ({nonfinite} non-finite output(s); not tracked)")
            continue
        m = val_opt.metrics[name]
        better = m.better or ("lower" if any(s in m.type.lower() for s in LOWER_IS_BETTER) else "higher")
        tracker.update(dataset_name, name, value, it, better)
        best = tracker.best[f"{dataset_name}/{name}"]
        lines.append(f"\t # {name}: {value:.4f}\tBest: {best['val']:.4f} @ {best['iter']} iter")
        if msg_logger is not None and math.isfinite(value):
            msg_logger.scalars({f"metrics/{dataset_name}/{name}": value}, it)
    log.info("\n".join(lines))
    return results
