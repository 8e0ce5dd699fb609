"""General image filters: the Gaussian window (defined once: degradation blurs, USM sharpening, the SSIM metric and
the SSIM/MS-SSIM losses all take their taps from :func:`gaussian_1d`), 2-D correlation, Gaussian blur and
Real-ESRGAN's unsharp mask.

Images are float32 HWC numpy arrays in [0, 1] (RGB or 1-channel). Borders are reflect-101 (= torch's 'reflect',
what BasicSR's ``filter2D`` pads with); filters run separably whenever the kernel is rank 1. Randomised
degradations built on these live in :mod:`paragonsr.degrade`.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

_BORDER = cv2.BORDER_REFLECT_101


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


def ensure_hwc(out: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, C) unchanged. OpenCV drops the channel axis of 1-channel images: this puts it
    back."""
    return out[:, :, None] if out.ndim == 2 else out


def _separable(k: np.ndarray, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """(ky, kx) with k = ky ⊗ kx when ``k`` is rank 1 (Gaussian, box, ...), else None."""
    u, s, vt = np.linalg.svd(k.astype(np.float64))
    if s.size > 1 and s[1] > tol * s[0]:
        return None
    sign = 1.0 if u[np.abs(u[:, 0]).argmax(), 0] >= 0 else -1.0
    return (sign * u[:, 0] * math.sqrt(s[0])).astype(np.float32), (sign * vt[0] * math.sqrt(s[0])).astype(
        np.float32
    )


def trim_kernel(k: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Drop outer rings of a (padded) kernel whose total |weight| is below ``tol``: a σ = 0.5 Gaussian drawn at
    21×21 becomes 5×5, and the output changes by at most ``tol`` (images are in [0, 1])."""
    dropped = 0.0
    while k.shape[0] > 1:
        ring = np.abs(k).sum() - np.abs(k[1:-1, 1:-1]).sum()
        if dropped + ring >= tol:
            break
        dropped += ring
        k = k[1:-1, 1:-1]
    return k


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate every channel with a 2-D kernel (as F.conv2d does), separably when the kernel allows it."""
    kernel = trim_kernel(kernel)
    if kernel.shape[0] == 1:
        return img * np.float32(kernel[0, 0])
    sep = _separable(kernel)
    if sep is not None:
        return ensure_hwc(cv2.sepFilter2D(img, -1, sep[1], sep[0], borderType=_BORDER))
    return ensure_hwc(cv2.filter2D(img, -1, kernel.astype(np.float32), borderType=_BORDER))


def gaussian_blur(img: np.ndarray, sigma: float, size: int | None = None) -> np.ndarray:
    """Separable Gaussian; default size covers ±3σ. σ = 0 is the identity."""
    if sigma <= 0:
        return img.copy()
    size = size or 2 * math.ceil(3 * sigma) + 1
    k = gaussian_1d(size, sigma)
    return ensure_hwc(cv2.sepFilter2D(img, -1, k, k, borderType=_BORDER))


def usm_sharpen(img: np.ndarray, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> np.ndarray:
    """Real-ESRGAN's unsharp mask (BasicSR ``USMSharp``): Gaussian of size radius(+1 if even) with OpenCV's
    automatic σ (8.0 for radius 50), mask = |residual|·255 > threshold, softened by the same Gaussian.
    Separable, so O(r) per pixel instead of BasicSR's dense 51×51 conv."""
    size = radius + 1 if radius % 2 == 0 else radius
    k = gaussian_1d(size, 0)
    blur = ensure_hwc(cv2.sepFilter2D(img, -1, k, k, borderType=_BORDER))
    residual = img - blur
    mask = (np.abs(residual) * 255 > threshold).astype(np.float32)
    soft = ensure_hwc(cv2.sepFilter2D(mask, -1, k, k, borderType=_BORDER))
    sharp = np.clip(img + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * img
