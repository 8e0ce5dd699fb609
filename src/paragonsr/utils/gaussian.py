"""The Gaussian window, defined once: degradation blurs, USM sharpening, the SSIM metric and the SSIM/MS-SSIM losses
all take their taps from :func:`gaussian_1d`."""

from __future__ import annotations

from typing import Any

import numpy as np


def gaussian_1d(size: int, sigma: float, dtype: Any = np.float32) -> np.ndarray:
    """``size`` normalised 1-D Gaussian taps (sum 1) centred on the middle tap, computed in float64 and returned
    as ``dtype``. ``sigma <= 0`` picks OpenCV's automatic σ = 0.3·((size-1)/2 - 1) + 0.8, as
    ``cv2.getGaussianKernel`` does; the 2-D window is the outer product of the taps with themselves.
    Raises ValueError unless ``size`` is a positive odd integer."""
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size!r}")
    size = int(size)
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(dtype)
