"""Image-quality metrics registered in ``METRIC_REGISTRY`` under BasicSR's YAML names.

``val.metrics.<name>: {type: calculate_psnr, crop_border: 4, test_y_channel: true}`` resolves with
:func:`calculate_metric`. Numpy versions take HWC images in [0, 255] (RGB by default, ``color_order="bgr"`` for
BasicSR/cv2 arrays); ``*_pt`` versions take RGB (N, C, H, W) tensors in [0, 1] and return one value per image.
Perceptual metrics (``calculate_lpips`` = LPIPS-alex, ``calculate_lpips_vgg``, ``calculate_dists``; lower is
better) need their weight files (``paragonsr weights fetch``) and carry a ``metric_info`` that ``paragonsr eval``
reads (see :mod:`paragonsr.metrics.perceptual`); register new ones there and import their module here.
"""

from __future__ import annotations

from typing import Any

from paragonsr.metrics.brisque import calculate_brisque
from paragonsr.metrics.niqe import calculate_niqe, calculate_niqe_matlab
from paragonsr.metrics.perceptual import calculate_dists, calculate_lpips, calculate_lpips_vgg
from paragonsr.metrics.psnr_ssim import (
    calculate_psnr,
    calculate_psnr_pt,
    calculate_ssim,
    calculate_ssim_pt,
)
from paragonsr.metrics.stlpips import calculate_stlpips, calculate_stlpips_vgg
from paragonsr.registry import METRIC_REGISTRY


def calculate_metric(data: dict[str, Any], opt: dict[str, Any]) -> Any:
    """BasicSR-style dispatch: ``data = {"img": sr, "img2": gt}``, ``opt = {"type": "calculate_psnr", ...}``."""
    opt = dict(opt)
    if "type" not in opt:
        raise KeyError(f"metric options need a 'type' key; got keys {sorted(opt)}")
    fn = METRIC_REGISTRY.get(opt.pop("type"))
    return fn(**data, **opt)


__all__ = [
    "METRIC_REGISTRY",
    "calculate_brisque",
    "calculate_dists",
    "calculate_lpips",
    "calculate_lpips_vgg",
    "calculate_metric",
    "calculate_niqe",
    "calculate_niqe_matlab",
    "calculate_psnr",
    "calculate_psnr_pt",
    "calculate_ssim",
    "calculate_ssim_pt",
    "calculate_stlpips",
    "calculate_stlpips_vgg",
]
