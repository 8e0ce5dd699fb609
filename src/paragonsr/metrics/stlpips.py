"""ST-LPIPS (shift-tolerant LPIPS, alex / vgg) as validation / eval metrics (lower is better), registered with
:func:`~paragonsr.metrics.perceptual.register_perceptual_metric`::

    val.metrics.stlpips: {type: calculate_stlpips, crop_border: 4}          # ST-LPIPS-alex
    val.metrics.stlpips_vgg: {type: calculate_stlpips_vgg, crop_border: 4}

Inputs as the other numpy metrics: RGB images in [0, 255], HWC (or ``input_order="CHW"``). Needs the
``stlpips_alex`` / ``stlpips_vgg`` weight files (``paragonsr weights fetch``); a missing file is the usual one-line
error and nothing is downloaded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from paragonsr.metrics.perceptual import MetricInfo, paired_distance, register_perceptual_metric


@lru_cache(maxsize=4)
def _net(net: str, weights_dir: str | None, device: str) -> torch.nn.Module:
    from paragonsr.losses.stlpips import STLPIPSNet
    from paragonsr.weights import WeightSource

    return STLPIPSNet(net, weights=WeightSource(weights_dir)).to(device)


def _stlpips(net: str, img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str, weights_dir: Any,
             device: str) -> float:  # fmt: skip
    return paired_distance(
        f"ST-LPIPS-{net}",
        lambda wd: _net(net, wd, device),
        img,
        img2,
        crop_border,
        input_order,
        weights_dir,
        device,
    )


@register_perceptual_metric(
    "calculate_stlpips",
    MetricInfo("stlpips_alex", "ST-LPIPS-alex", ("stlpips_alex",), rank=3, min_size=32),
    aliases=("stlpips", "stlpips_alex", "calculate_stlpips_alex"),
)
def calculate_stlpips(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    weights_dir: str | None = None,
    device: str = "cpu",
    **_: Any,
) -> float:
    """ST-LPIPS-alex (shift-tolerant LPIPS, Ghildyal & Liu 2022) of two RGB images; 0 = identical.

    Args:
        img, img2: the two images (RGB, [0, 255]), (H, W, 3) or (3, H, W) per ``input_order``; ≥ 32 px a side.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on (``cpu``, ``cuda``).

    Raises:
        WeightsError: the weight file is missing (``paragonsr weights fetch``) or fails its sha256.
        ValueError: images of different shapes, or not RGB.
    """
    return _stlpips("alex", img, img2, crop_border, input_order, weights_dir, device)


@register_perceptual_metric(
    "calculate_stlpips_vgg",
    # not in `paragonsr eval` by default: stride-1 VGG16 costs ~4× LPIPS-vgg on a CPU; val.metrics reach it
    MetricInfo("stlpips_vgg", "ST-LPIPS-vgg", ("stlpips_vgg",), in_eval=False, rank=4, min_size=32),
    aliases=("stlpips_vgg",),
)
def calculate_stlpips_vgg(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    weights_dir: str | None = None,
    device: str = "cpu",
    **_: Any,
) -> float:
    """ST-LPIPS-vgg (shift-tolerant LPIPS on VGG16) of two RGB images; 0 = identical.

    Args:
        img, img2: the two images (RGB, [0, 255]), (H, W, 3) or (3, H, W) per ``input_order``; ≥ 32 px a side.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the weight files (default ``$PARAGONSR_WEIGHTS`` or the user cache).
        device: torch device the network runs on (``cpu``, ``cuda``).

    Raises:
        WeightsError: the weight file is missing (``paragonsr weights fetch``) or fails its sha256.
        ValueError: images of different shapes, or not RGB.
    """
    return _stlpips("vgg", img, img2, crop_border, input_order, weights_dir, device)
