"""Degradation operations on float32 HWC arrays in [0, 1] (RGB or 1-channel): resizes, noise, codecs and colour
changes. Each is a plain function; random ones take an ``np.random.Generator`` so a seed fixes the result. The
general filters they build on (Gaussian blur, ``filter2d``, USM) are in :mod:`paragonsr.ops.filters`."""

from __future__ import annotations

import math

import cv2
import numpy as np

from paragonsr.ops.colour import luma
from paragonsr.ops.filters import ensure_hwc, gaussian_blur
from paragonsr.ops.resample import KERNEL_NAMES, canonical_kernel, resize_np


# ---------------------------------------------------------------- filters
def sharpen(img: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """Camera / platform "oversharpening": img + (amount − 1)·(img − blur_σ(img)); amount 1 = identity."""
    if amount == 1.0:
        return img.copy()
    return np.clip(img + (amount - 1.0) * (img - gaussian_blur(img, sigma)), 0, 1)


# ---------------------------------------------------------------- resize
_CV2_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
RESIZE_KERNELS = ("area", *KERNEL_NAMES)


def interpolate(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Real-ESRGAN's ``F.interpolate`` resizes (area / bilinear / bicubic, no antialiasing, half-pixel centres)
    via OpenCV: bilinear and bicubic (a = −0.75) match torch; 'area' is OpenCV's exact box average."""
    h, w = size
    if mode not in _CV2_MODES:
        raise ValueError(f"interpolate mode '{mode}' unknown; valid: {', '.join(_CV2_MODES)}")
    return ensure_hwc(cv2.resize(img, (max(1, w), max(1, h)), interpolation=_CV2_MODES[mode]))


def resize(
    img: np.ndarray, size: tuple[int, int], kernel: str = "bicubic", antialias: bool = True
) -> np.ndarray:
    """Resize to ``size = (h, w)`` with any resampler: 'area' (OpenCV box average) or one of the exact separable
    kernels of ``paragonsr.ops.resample`` (nearest, box, bilinear, bicubic, lanczos3, magic, magic_sharp_*)."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(img.shape[:2]) == size:
        return img.copy()
    if kernel == "area":
        return interpolate(img, size, "area")
    if kernel not in RESIZE_KERNELS:
        kernel = canonical_kernel(kernel)  # accepts the resampler's aliases, else names every valid kernel
    return ensure_hwc(resize_np(img, size=size, kernel=kernel, antialias=antialias)).astype(
        np.float32, copy=False
    )


# ---------------------------------------------------------------- noise
def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, gray: bool = False) -> np.ndarray:
    """Additive Gaussian noise, σ in 0-255 units; ``gray`` = the same noise on every channel."""
    shape = (*img.shape[:2], 1) if gray else img.shape
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma / 255.0)
    return np.clip(img + noise, 0, 1)


def poisson_noise(img: np.ndarray, rng: np.random.Generator, scale: float, gray: bool = False) -> np.ndarray:
    """Shot noise as Real-ESRGAN: on the 8-bit rounded image, λ = img·v with v = 2^⌈log2(#distinct values)⌉;
    noise = Poisson(λ)/v − img, scaled by ``scale`` (so its variance grows linearly with intensity).
    Counts are exact Poisson draws for λ < 64 and the rounded normal N(λ, λ) above (same mean and variance,
    skewness < 1/8): 5× faster on bright images."""
    base = luma(img) if gray else img
    q = np.clip(np.rint(base * 255), 0, 255).astype(np.uint8)
    distinct = int(np.count_nonzero(np.bincount(q.ravel(), minlength=256)))
    vals = np.float32(2.0 ** math.ceil(math.log2(max(distinct, 1))))
    q = q.astype(np.float32) * np.float32(1 / 255)
    lam = q * vals
    counts = np.rint(lam + rng.standard_normal(lam.shape, dtype=np.float32) * np.sqrt(lam))
    small = lam < 64
    counts[small] = rng.poisson(lam[small])
    noise = counts / vals - q
    return np.clip(img + noise * np.float32(scale), 0, 1)


def sensor_noise(
    img: np.ndarray, rng: np.random.Generator, sigma: float, shot_ratio: float = 0.5, gray: bool = False
) -> np.ndarray:
    """Signal-dependent sensor noise: variance(x) = (σ/255)²·((1 − ρ) + ρ·x/0.5), i.e. σ (0-255 units) at mid
    grey, read noise only for ρ = 0, pure shot noise (variance ∝ intensity) for ρ = 1."""
    if not 0 <= shot_ratio <= 1:
        raise ValueError(f"sensor_noise shot_ratio must be in [0, 1], got {shot_ratio}")
    base = luma(img) if gray else img
    std = (sigma / 255.0) * np.sqrt((1 - shot_ratio) + shot_ratio * base / 0.5)
    return np.clip(img + rng.standard_normal(base.shape, dtype=np.float32) * std.astype(np.float32), 0, 1)


# ---------------------------------------------------------------- codecs
CODECS = ("jpeg", "webp", "avif")
_SUBSAMPLING = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def round8(img: np.ndarray) -> np.ndarray:
    """Quantise to 8 bit (what saving the LQ as PNG would do)."""
    return to_uint8(img).astype(np.float32) / 255.0


def codec(img: np.ndarray, fmt: str = "jpeg", quality: float = 90, subsampling: str = "420") -> np.ndarray:
    """A real encode/decode round trip through OpenCV (libjpeg / libwebp / libavif). ``quality`` 1-100
    (rounded); ``subsampling`` ('420', '422', '444') applies to JPEG."""
    if fmt not in CODECS:
        raise ValueError(f"codec '{fmt}' unknown; valid: {', '.join(CODECS)}")
    q = int(np.clip(round(float(quality)), 1, 100))
    u8 = to_uint8(img)
    bgr = u8[:, :, ::-1] if u8.shape[2] == 3 else u8[:, :, 0]  # OpenCV codecs expect BGR (YCbCr maths!)
    if fmt == "jpeg":
        subsampling = str(subsampling)  # YAML reads 444 as a number
        if subsampling not in _SUBSAMPLING:
            raise ValueError(f"jpeg subsampling '{subsampling}' unknown; valid: {', '.join(_SUBSAMPLING)}")
        params = [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _SUBSAMPLING[subsampling]]
        ext = ".jpg"
    elif fmt == "webp":
        params, ext = [cv2.IMWRITE_WEBP_QUALITY, min(q, 100)], ".webp"
    else:
        if not hasattr(cv2, "IMWRITE_AVIF_QUALITY"):
            raise RuntimeError("this OpenCV build has no AVIF encoder; use jpeg or webp")
        params, ext = [cv2.IMWRITE_AVIF_QUALITY, q], ".avif"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {fmt} (quality {q})")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if dec is None:
        raise RuntimeError(f"OpenCV could not decode its own {fmt} output (quality {q})")
    dec = dec[:, :, ::-1] if dec.ndim == 3 and u8.shape[2] == 3 else ensure_hwc(dec)
    if dec.ndim == 3 and dec.shape[2] != u8.shape[2]:  # a codec that returned gray / colour unexpectedly
        dec = dec[:, :, :1] if u8.shape[2] == 1 else np.repeat(dec[:, :, :1], 3, 2)
    return dec.astype(np.float32) / 255.0


def jpeg(img: np.ndarray, quality: float, subsampling: str = "420") -> np.ndarray:
    return codec(img, "jpeg", quality, subsampling)


# ---------------------------------------------------------------- colour / user filters
def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale deviations from the mean luminance; 1 = identity."""
    m = float(luma(img).mean())
    return np.clip(m + (img - m) * np.float32(factor), 0, 1)


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale chroma around per-pixel luminance; 1 = identity, 0 = grey (no-op on 1-channel images)."""
    if img.shape[2] == 1:
        return img.copy()
    y = luma(img)
    return np.clip(y + (img - y) * np.float32(factor), 0, 1)


def temperature(img: np.ndarray, shift: float) -> np.ndarray:
    """Warm (> 0) / cool (< 0) white balance: R·(1 + shift), B·(1 − shift); 0 = identity."""
    if img.shape[2] != 3 or shift == 0:
        return img.copy()
    gains = np.array([1 + shift, 1.0, 1 - shift], np.float32)
    return np.clip(img * gains, 0, 1)


def gamma(img: np.ndarray, value: float) -> np.ndarray:
    """x ** value; 1 = identity."""
    if value <= 0:
        raise ValueError(f"gamma must be > 0, got {value}")
    return np.power(img, np.float32(value)).astype(np.float32)
