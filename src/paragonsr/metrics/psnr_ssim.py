"""PSNR / SSIM with BasicSR's MATLAB-compatible definitions, in numpy (reference) and torch (batched, on device).

Definitions (identical to BasicSR ``calculate_psnr`` / ``calculate_ssim``):
- images in the [0, 255] range (uint8 or float), compared in float64;
- ``crop_border`` pixels removed on every side before measuring;
- ``test_y_channel``: compare only MATLAB's BT.601 luma (:mod:`paragonsr.ops.colour`) ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in
  [0, 1]; Y in [16, 235] on the 0-255 scale, not rounded);
- PSNR = 10 log10(255² / MSE), ``inf`` for identical images;
- SSIM: 11×11 Gaussian window σ = 1.5, 'valid' filtering (no padding), C1 = (0.01·255)², C2 = (0.03·255)²,
  mean of the SSIM map per channel, then the mean over channels.

Colour order: BasicSR reads images with OpenCV and its numpy functions assume **BGR**; paragonsr works in RGB.
The numpy functions therefore take ``color_order="rgb"`` (default) or ``"bgr"`` (BasicSR-compatible for cv2
arrays). The torch versions take RGB ``(N, C, H, W)`` tensors in [0, 1], like BasicSR's ``*_pt`` functions, and
return one value per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from paragonsr.ops.colour import rgb_to_y_pt, to_y_channel
from paragonsr.registry import METRIC_REGISTRY


def _reorder(img: np.ndarray, input_order: str) -> np.ndarray:
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    if img.ndim == 2:
        return img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an HW, HWC or CHW image, got shape {img.shape}")
    return img.transpose(1, 2, 0) if input_order == "CHW" else img


def prepare_pair(
    img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str, test_y: bool, color_order: str
) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-shape images as float64 HWC after the order change, border crop and optional Y conversion."""
    img, img2 = np.asarray(img), np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    img, img2 = _reorder(img, input_order), _reorder(img2, input_order)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, :]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, :]
    if img.size == 0:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {img2.shape} image")
    if test_y:
        img, img2 = to_y_channel(img, color_order), to_y_channel(img2, color_order)
    return img.astype(np.float64), img2.astype(np.float64)


@METRIC_REGISTRY.register("calculate_psnr", aliases=("psnr",))
def calculate_psnr(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    test_y_channel: bool = False,
    color_order: str = "rgb",
    **_: Any,
) -> float:
    """PSNR (dB) of two images in [0, 255]; BasicSR/MATLAB definition (see module docstring).

    Args:
        img, img2: the two images, (H, W, C) or (C, H, W) per ``input_order``.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        test_y_channel: measure on the Y channel (BT.601, MATLAB's rgb2ycbcr) instead of RGB.
        color_order: channel order of the arrays, ``rgb`` or ``bgr`` (BasicSR/cv2).
    """
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y_channel, color_order)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def _ssim_255(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM (N,) of float64 (N, C, H, W) tensors in [0, 255]: the module docstring's definition, computed
    by the one SSIM implementation (:func:`paragonsr.losses.ssim.ssim_components`, separable 'valid' Gaussian
    filtering), mean over channels. Raises ValueError for images under 11x11 (no window shrinking here)."""
    from paragonsr.losses.ssim import ssim_components

    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {tuple(a.shape[-2:])}")
    return ssim_components(a, b, win_size=11, sigma=1.5, data_range=255.0)[0].mean(dim=1)


@METRIC_REGISTRY.register("calculate_ssim", aliases=("ssim",))
def calculate_ssim(
    img: np.ndarray,
    img2: np.ndarray,
    crop_border: int = 0,
    input_order: str = "HWC",
    test_y_channel: bool = False,
    color_order: str = "rgb",
    **_: Any,
) -> float:
    """SSIM of two images in [0, 255]; BasicSR/MATLAB definition (see module docstring).

    Args:
        img, img2: the two images, (H, W, C) or (C, H, W) per ``input_order``.
        crop_border: pixels cut from each border before measuring.
        input_order: ``HWC`` or ``CHW``.
        test_y_channel: measure on the Y channel (BT.601, MATLAB's rgb2ycbcr) instead of RGB.
        color_order: channel order of the arrays, ``rgb`` or ``bgr`` (BasicSR/cv2).
    """
    a, b = prepare_pair(img, img2, crop_border, input_order, test_y_channel, color_order)

    def nchw(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    with torch.no_grad():
        return float(_ssim_255(nchw(a), nchw(b))[0])


# ---------------------------------------------------------------------------------------------- torch versions
def _prepare_pt(img: Tensor, img2: Tensor, crop_border: int, test_y: bool) -> tuple[Tensor, Tensor]:
    if img.shape != img2.shape or img.ndim != 4:
        raise ValueError(
            f"expected two (N, C, H, W) tensors of equal shape, got {img.shape} and {img2.shape}"
        )
    if crop_border:
        img = img[:, :, crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[:, :, crop_border:-crop_border, crop_border:-crop_border]
    img, img2 = img.to(torch.float64), img2.to(torch.float64)
    if test_y:
        img, img2 = rgb_to_y_pt(img), rgb_to_y_pt(img2)
    return img * 255.0, img2 * 255.0


@METRIC_REGISTRY.register("calculate_psnr_pt", aliases=("psnr_pt",))
def calculate_psnr_pt(
    img: Tensor, img2: Tensor, crop_border: int = 0, test_y_channel: bool = False, **_: Any
) -> Tensor:
    """Per-image PSNR (N,) of RGB tensors in [0, 1]; same definition as :func:`calculate_psnr`.

    Args:
        img, img2: (N, C, H, W) RGB tensors in [0, 1].
        crop_border: pixels cut from each border before measuring.
        test_y_channel: measure on the Y channel (BT.601, MATLAB's rgb2ycbcr) instead of RGB.
    """
    a, b = _prepare_pt(img, img2, crop_border, test_y_channel)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)  # mse == 0 gives inf, as the numpy version


@METRIC_REGISTRY.register("calculate_ssim_pt", aliases=("ssim_pt",))
def calculate_ssim_pt(
    img: Tensor, img2: Tensor, crop_border: int = 0, test_y_channel: bool = False, **_: Any
) -> Tensor:
    """Per-image SSIM (N,) of RGB tensors in [0, 1]; same definition as :func:`calculate_ssim`.

    Args:
        img, img2: (N, C, H, W) RGB tensors in [0, 1].
        crop_border: pixels cut from each border before measuring.
        test_y_channel: measure on the Y channel (BT.601, MATLAB's rgb2ycbcr) instead of RGB.
    """
    a, b = _prepare_pt(img, img2, crop_border, test_y_channel)
    return _ssim_255(a, b)
