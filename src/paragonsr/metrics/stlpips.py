"""ST-LPIPS (shift-tolerant LPIPS, alex / vgg) as validation / eval metrics (lower is better).

``val.metrics.stlpips: {type: calculate_stlpips, net: alex, crop_border: 4}``. Inputs as the other numpy metrics:
RGB images in [0, 255], HWC (or ``input_order="CHW"``). Needs the ``stlpips_alex`` / ``stlpips_vgg`` weight files
(see :mod:`paragonsr.weights`); a missing file is the usual one-line error and nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from paragonsr.metrics.psnr_ssim import prepare_pair
from paragonsr.registry import METRIC_REGISTRY


@lru_cache(maxsize=4)
def _net(net: str, weights_dir: str | None, device: str) -> torch.nn.Module:
    from paragonsr.losses.stlpips import STLPIPSNet
    from paragonsr.weights import WeightSource

    return STLPIPSNet(net, weights=WeightSource(weights_dir)).to(device)


@METRIC_REGISTRY.register("calculate_stlpips", aliases=("stlpips",))
def calculate_stlpips(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    net: str = "alex",
    weights_dir: str | None = None,
    device: str = "cpu",
    **_: Any,
) -> float:
    """ST-LPIPS of two RGB images in [0, 255] (lower is better; 0 for identical images).

    Args:
        img, img2: the two images, (H, W, 3) or (3, H, W) per ``input_order``; at least 32×32 after the crop.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        net: ``alex`` (default) or ``vgg``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on.

    Raises:
        ValueError: shapes differ or the images are not RGB.
        WeightsError: the weight file is missing or fails its hash.
    """
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y=False, color_order="rgb")
    if a.shape[2] != 3:
        raise ValueError(f"calculate_stlpips needs RGB images (3 channels), got shape {np.shape(img)}")
    model = _net(net, None if weights_dir is None else str(weights_dir), device)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1) / 255.0, dtype=np.float32))[None]

    with torch.no_grad():
        return float(model(t(a).to(device), t(b).to(device)).mean())
