"""Blur kernels (all normalised to sum 1, float32, odd square sizes).

The Gaussian family follows Real-ESRGAN's definitions (covariance U·diag(σx², σy²)·Uᵀ on an integer grid centred
on the middle tap; generalized = exp(-½·q^β), plateau = 1/(1 + q^β) with q the Mahalanobis square); β is drawn
half from [lo, 1], half from [1, hi]. The circular sinc is the ideal 2-D low-pass (J1 Bessel), computed here without
scipy. Motion (hand shake) and lens (defocus disc) blur are our own additions.
"""

from __future__ import annotations

import math

import numpy as np

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _check_size(size: int) -> int:
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size!r}")
    return int(size)


def mesh_grid(size: int) -> np.ndarray:
    """(size, size, 2) grid of (x, y) offsets from the centre tap."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def _quad_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Mahalanobis square gridᵀ Σ⁻¹ grid for Σ = U diag(σx², σy²) Uᵀ."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigma must be > 0, got ({sigma_x}, {sigma_y})")
    c, s = math.cos(theta), math.sin(theta)
    u = np.array([[c, -s], [s, c]])
    cov = u @ np.diag([sigma_x**2, sigma_y**2]) @ u.T
    grid = mesh_grid(size)
    return np.einsum("hwi,ij,hwj->hw", grid, np.linalg.inv(cov), grid)


def _normalise(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0
) -> np.ndarray:
    """Isotropic (``sigma_y=None``) or anisotropic rotated 2-D Gaussian."""
    size = _check_size(size)
    q = _quad_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalise(np.exp(-0.5 * q))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> np.ndarray:
    size = _check_size(size)
    return _normalise(np.exp(-0.5 * np.power(_quad_form(size, sigma_x, sigma_y, theta), beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    size = _check_size(size)
    return _normalise(1.0 / (np.power(_quad_form(size, sigma_x, sigma_y, theta), beta) + 1.0))


def sample_beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    """Real-ESRGAN's β draw: half the time from [lo, 1] (heavier tails), half from [1, hi] (flatter top)."""
    lo, hi = beta_range
    return float(rng.uniform(lo, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, hi))


def random_mixed_kernel(
    rng: np.random.Generator,
    kernel_list: list[str] | tuple[str, ...],
    kernel_prob: list[float] | tuple[float, ...],
    size: int,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float] = (0.5, 4.0),
    betap_range: tuple[float, float] = (1.0, 2.0),
    rotation_range: tuple[float, float] = (-math.pi, math.pi),
) -> tuple[np.ndarray, dict]:
    """One of ``KERNEL_TYPES`` drawn with ``kernel_prob``; returns (kernel, parameters for the manifest)."""
    p = np.asarray(kernel_prob, dtype=np.float64)
    kind = str(kernel_list[int(rng.choice(len(kernel_list), p=p / p.sum()))])
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sx = float(rng.uniform(*sigma_range))
    sy, theta = (sx, 0.0) if iso else (float(rng.uniform(*sigma_range)), float(rng.uniform(*rotation_range)))
    info = {"kernel": kind, "size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sx, sy, theta), info
    if kind.startswith("generalized"):
        info["beta"] = beta = sample_beta(rng, betag_range)
        return generalized_gaussian_kernel(size, sx, sy, theta, beta), info
    if kind.startswith("plateau"):
        info["beta"] = beta = sample_beta(rng, betap_range)
        return plateau_kernel(size, sx, sy, theta, beta), info
    raise ValueError(f"unknown blur kernel type '{kind}'; valid: {', '.join(KERNEL_TYPES)}")


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel J1 by the trapezoid rule on its periodic integral (exponentially accurate, no scipy)."""
    x = np.asarray(x, dtype=np.float64)
    n = 96 + int(np.ceil(np.abs(x).max(initial=0.0)))
    tau = np.arange(n) * (2 * math.pi / n)
    # J1(x) = 1/(2π) ∫ cos(τ - x sin τ) dτ over one period
    return np.cos(tau - x[..., None] * np.sin(tau)).mean(axis=-1)


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass: cutoff ω_c in radians/pixel (π = Nyquist), i.e. Real-ESRGAN's sinc kernel."""
    size = _check_size(size)
    if not 0 < cutoff <= math.pi:
        raise ValueError(f"sinc cutoff must be in (0, π], got {cutoff}")
    r = np.sqrt((mesh_grid(size) ** 2).sum(-1))
    k = np.empty_like(r)
    nz = r > 0
    k[nz] = cutoff * bessel_j1(cutoff * r[nz]) / (2 * math.pi * r[nz])
    k[~nz] = cutoff**2 / (4 * math.pi)
    return _normalise(k)


def lens_kernel(radius: float) -> np.ndarray:
    """Defocus blur: an anti-aliased disc of ``radius`` pixels (0 = identity)."""
    if radius < 0:
        raise ValueError(f"lens blur radius must be >= 0, got {radius}")
    half = math.ceil(radius + 0.5)
    r = np.sqrt((mesh_grid(2 * half + 1) ** 2).sum(-1))
    return _normalise(np.clip(radius + 0.5 - r, 0.0, 1.0))


def motion_kernel(rng: np.random.Generator, length: float, curvature: float = 0.6) -> np.ndarray:
    """Hand shake: a short random trajectory of ``length`` pixels (direction drifts by ``curvature`` rad/step),
    splatted bilinearly on an odd grid and centred; length 0 = identity."""
    if length < 0:
        raise ValueError(f"motion blur length must be >= 0, got {length}")
    steps = max(2, math.ceil(length * 2))
    angle = rng.uniform(-math.pi, math.pi) + np.cumsum(rng.normal(0.0, curvature / steps**0.5, steps))
    seg = length / steps
    pts = np.concatenate([[[0.0, 0.0]], np.cumsum(np.stack([np.cos(angle), np.sin(angle)], -1) * seg, 0)])
    pts -= pts.mean(0)  # centred on the path's centroid so the blur does not shift the image
    half = math.ceil(np.abs(pts).max()) + 1
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float64)
    for x, y in pts + half:
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        k[y0, x0] += (1 - fx) * (1 - fy)
        k[y0, x0 + 1] += fx * (1 - fy)
        k[y0 + 1, x0] += (1 - fx) * fy
        k[y0 + 1, x0 + 1] += fx * fy
    return _normalise(k)


def pad_kernel(k: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a centred odd kernel to ``size`` × ``size`` (for batching kernels of different sizes)."""
    p = (size - k.shape[0]) // 2
    if p < 0:
        raise ValueError(f"kernel of size {k.shape[0]} does not fit in {size}")
    return np.pad(k, p)
