"""Deliver the channel count a network needs from RGB(A) training images.

``network_g.num_in_ch`` decides the LQ channels and ``num_out_ch`` the GT channels:

- 3: RGB (alpha dropped, gray repeated);
- 1: luma Y = 0.299 R + 0.587 G + 0.114 B (BT.601, full range [0, 1]) - the same luma ``paragonsr upscale
  --gray-mode y`` feeds a 1-channel model, so a model trained here sees at inference what it saw in training;
  a gray file gives its gray value back unchanged;
- 4: RGBA; an image without alpha gets an opaque one (1.0).

Degradation pipelines work on RGB only: for 4-channel data the colour is degraded and the alpha of the LQ is the
area (box) downscale of the GT alpha (a matte has no camera noise, blur or JPEG of its own).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from paragonsr.ops.colour import LUMA_F32

SUPPORTED_CHANNELS = (1, 3, 4)
LUMA = LUMA_F32


def imread_channels(path: str | Path, alpha: bool) -> np.ndarray:
    """float32 HWC in [0, 1]: RGB (``alpha=False``) or RGBA (``alpha=True``; opaque alpha added when the file has
    none). Raises ``OSError`` naming the file when it cannot be read (as ``imread_rgb`` does)."""
    from paragonsr.data.transforms import imread_rgb

    if not alpha:
        return imread_rgb(path)
    from paragonsr.data.transforms import read_training_image
    from paragonsr.io.image_io import to_rgba

    img, _ = read_training_image(path)
    return np.ascontiguousarray(np.clip(to_rgba(img), 0.0, 1.0), dtype=np.float32)


def to_channels(img: np.ndarray, n: int) -> np.ndarray:
    """HWC RGB or RGBA float32 -> HWC with ``n`` channels (1 = luma, 3 = RGB, 4 = RGBA)."""
    if n == 3:
        return img if img.shape[2] == 3 else np.ascontiguousarray(img[..., :3])
    if n == 1:
        return np.ascontiguousarray(img[..., :3] @ LUMA, dtype=np.float32)[..., None]
    if n == 4:
        if img.shape[2] == 4:
            return img
        return np.concatenate([img[..., :3], np.ones_like(img[..., :1])], axis=2)
    raise ValueError(f"cannot deliver {n}-channel images (supported: {SUPPORTED_CHANNELS})")


def downscale_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HW1 alpha -> (h, w, 1) by area averaging (``size`` = (h, w))."""
    out = cv2.resize(alpha[..., 0], (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.float32)[..., None]
