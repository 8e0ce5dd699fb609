"""Validation: tiled inference (the shared tiler), BasicSR metrics (PSNR/SSIM on 8-bit images, ``crop_border``,
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
from paragonsr.tiling import NonFiniteOutputError, Tiler, needs_of
from paragonsr.train.options import ValOpt

log = logging.getLogger("paragonsr.train")

LOWER_IS_BETTER = ("lpips", "dists", "niqe", "brisque")


def metric_direction(metric_type: str) -> str:
    """``lower`` or ``higher``: a perceptual metric's registered ``metric_info`` decides; otherwise names holding
    one of :data:`LOWER_IS_BETTER` are lower-is-better (BasicSR's PSNR/SSIM are higher)."""
    from paragonsr.registry import METRIC_REGISTRY

    info = (
        getattr(METRIC_REGISTRY.get(metric_type), "metric_info", None)
        if metric_type in METRIC_REGISTRY
        else None
    )
    if info is not None:
        return "lower" if info.lower_is_better else "higher"
    return "lower" if any(s in metric_type.lower() for s in LOWER_IS_BETTER) else "higher"


def val_tiler(val_opt: ValOpt) -> Tiler:
    """The validation's tiling, through the shared tiler: ``tile_size`` 0 = whole image, ``auto`` = from the free
    memory (CUDA: whole image, halved on out-of-memory), N = LQ tiles of N px with ``tile_pad`` px of context on
    each side (fed to the model as N + 2·tile_pad px, cut in the middle of the shared context: no seams).
    Non-finite output stops at the first bad tile (``NonFiniteOutputError``)."""
    size, pad = val_opt.tile_size, val_opt.tile_pad
    tile = size + 2 * pad if isinstance(size, int) and size > 0 else size
    return Tiler(tile, overlap=2 * pad, blend=0.0, min_tile=1, max_overlap=1.0, check_finite=True)


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
    tiler, needs = val_tiler(val_opt), needs_of(model, scale)
    for idx, batch in enumerate(loader):
        lq = batch["lq"].to(device)
        stem = Path(batch["gt_path"][0]).stem
        try:
            sr = tiler(model, lq, needs).float()
        except NonFiniteOutputError:  # as 8-bit it would be a black/white image scored as a result
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
        better = m.better or metric_direction(m.type)
        tracker.update(dataset_name, name, value, it, better)
        best = tracker.best[f"{dataset_name}/{name}"]
        lines.append(f"\t # {name}: {value:.4f}\tBest: {best['val']:.4f} @ {best['iter']} iter")
        if msg_logger is not None and math.isfinite(value):
            msg_logger.scalars({f"metrics/{dataset_name}/{name}": value}, it)
    log.info("\n".join(lines))
    return results
