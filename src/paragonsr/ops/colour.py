"""Colour maths: the ITU-R BT.601 luma weights, defined once, and the RGB -> Y conversions built on them.

Two Y definitions are in use:

- full-range luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (:data:`BT601_LUMA`, :func:`luma`), for gray conversion in
  degradations, channel conversion, upscaling and data filters (as ``cv2.cvtColor(RGB2GRAY)`` and torchvision's
  ``rgb_to_grayscale``);
- MATLAB ``rgb2ycbcr``'s video-range Y ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in [0, 1]; Y in
  [16, 235] on the 0-255 scale, not rounded) (:data:`MATLAB_Y_WEIGHTS`, :func:`to_y_channel`, :func:`rgb_to_y_pt`),
  the PSNR-Y / SSIM-Y convention of BasicSR and the SR literature.

Source: ITU-R Recommendation BT.601-7 (2011), section 2.5.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BT601_LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B (full range: Y = 0.299 R + 0.587 G + 0.114 B), the one definition used for
every RGB -> gray/Y conversion in the package (metrics, degradations, channel conversion, upscale, data filters)."""

LUMA_F32 = np.array(BT601_LUMA, np.float32)
""":data:`BT601_LUMA` as a float32 array (RGB -> Y by ``img @ LUMA_F32``)."""

# MATLAB rgb2ycbcr's Y row (video range: the BT.601 weights times 219/255 on the 0-255 scale): 65.481, 128.553,
# 24.966 exactly (each product is the float nearest those decimals).
MATLAB_Y_WEIGHTS = tuple(219.0 * w for w in BT601_LUMA)
"""MATLAB ``rgb2ycbcr``'s Y row for R, G, B in [0, 1]: (65.481, 128.553, 24.966); add 16 for Y on 0-255."""


def luma(img: np.ndarray) -> np.ndarray:
    """(H, W, 1) float32 full-range BT.601 luma of an (H, W, 3) RGB image in [0, 1]; an (H, W, 1) image is
    returned as is."""
    if img.shape[2] == 1:
        return img
    return (img @ LUMA_F32)[:, :, None].astype(np.float32)


def to_y_channel(img: np.ndarray, color_order: str = "rgb") -> np.ndarray:
    """HWC image in [0, 255] -> HW1 float64 MATLAB luma in [16, 235] (grayscale passes through).

    ``color_order`` is ``"rgb"`` or ``"bgr"`` (OpenCV arrays); anything else raises ValueError."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3 and img.shape[2] == 3:
        order = color_order.lower()
        if order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        w = np.array(MATLAB_Y_WEIGHTS if order == "rgb" else MATLAB_Y_WEIGHTS[::-1])
        img = (img / 255.0) @ w + 16.0
        img = img[..., None]
    return img


def rgb_to_y_pt(img: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) MATLAB luma in [16/255, 235/255]; 1-channel passes through."""
    if img.shape[1] == 1:
        return img
    w = torch.tensor(MATLAB_Y_WEIGHTS, dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return ((img * w).sum(1, keepdim=True) + 16.0) / 255.0


def to_gray(img: np.ndarray) -> np.ndarray:
    """Luma (BT.601) as float64 in [0, 1]. Integer input is scaled by its dtype range, never by its max."""
    x = np.asarray(img)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif x.dtype == np.uint16:
        x = x.astype(np.float64) / 65535.0
    else:
        x = x.astype(np.float64)
    if x.ndim == 3:
        if x.shape[2] == 1:
            x = x[..., 0]
        elif x.shape[2] >= 3:  # RGB(A): alpha is ignored
            wr, wg, wb = BT601_LUMA
            x = wr * x[..., 0] + wg * x[..., 1] + wb * x[..., 2]
        else:
            raise ValueError(f"expected 1, 3 or 4 channels, got shape {img.shape}")
    elif x.ndim != 2:
        raise ValueError(f"expected an HW or HWC image, got shape {img.shape}")
    return x
