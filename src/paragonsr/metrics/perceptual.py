"""Deep perceptual metrics for validation (lower is better): DISTS and LPIPS (VGG), with the same offline weights
as ``DISTSLoss`` / ``LPIPSLoss``.

``val.metrics.lpips: {type: calculate_lpips, crop_border: 4, weights_dir: ...}`` (``calculate_dists`` alike).
Inputs as the other numpy metrics: RGB images in [0, 255], HWC (or ``input_order="CHW"``). Needs the ``vgg16`` and
``dists`` / ``lpips_vgg`` weight files (see :mod:`paragonsr.weights`); a missing file is the usual clear error and
nothing is downloaded (unless ``paragonsr train --allow-download``). ``test_y_channel`` does not apply (both are
RGB metrics).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from paragonsr.metrics.psnr_ssim import prepare_pair
from paragonsr.registry import METRIC_REGISTRY


@lru_cache(maxsize=4)
def _net(kind: str, weights_dir: str | None, device: str) -> torch.nn.Module:
    from paragonsr.weights import WeightSource

    weights = WeightSource(weights_dir)
    if kind == "dists":
        from paragonsr.losses.perceptual import DISTSNet

        return DISTSNet(pretrained=True, weights=weights).to(device)
    from paragonsr.losses.lpips import LPIPSNet

    return LPIPSNet(pretrained=True, weights=weights).to(device)


def _distance(
    kind: str, img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str, weights_dir, device
) -> float:
    # Same shape checks, HWC/CHW handling and border crop as PSNR/SSIM; no Y channel (both are RGB metrics).
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y=False, color_order="rgb")
    if a.shape[2] != 3:
        raise ValueError(f"calculate_{kind} needs RGB images (3 channels), got shape {np.shape(img)}")
    net = _net(kind, None if weights_dir is None else str(weights_dir), device)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1) / 255.0, dtype=np.float32))[
            None
        ].to(device)

    with torch.no_grad():
        return float(net(t(a), t(b)).mean())


@METRIC_REGISTRY.register("calculate_dists", aliases=("dists",))
def calculate_dists(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    weights_dir: str | None = None,
    device: str = "cpu",
    **_: Any,
) -> float:
    """DISTS of two RGB images in [0, 255] (lower is better).

    Args:
        img, img2: the two images, (H, W, C) or (C, H, W) per ``input_order``.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on (``cpu``, ``cuda``).
    """
    return _distance("dists", img, img2, crop_border, input_order, weights_dir, device)


@METRIC_REGISTRY.register("calculate_lpips", aliases=("lpips",))
def calculate_lpips(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    weights_dir: str | None = None,
    device: str = "cpu",
    **_: Any,
) -> float:
    """LPIPS-VGG of two RGB images in [0, 255] (lower is better).

    Args:
        img, img2: the two images, (H, W, C) or (C, H, W) per ``input_order``.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on (``cpu``, ``cuda``).
    """
    return _distance("lpips", img, img2, crop_border, input_order, weights_dir, device)
