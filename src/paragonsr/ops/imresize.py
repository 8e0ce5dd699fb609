"""MATLAB-compatible bicubic ``imresize``: the LR generator and bicubic baseline of the standard SR benchmark.

Every SR paper table (Set5, Set14, B100, Urban100, Manga109) makes its LR with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` on uint8 images, and its "Bicubic" row with ``imresize(LR, s, 'bicubic')``.
This module reproduces that function's arithmetic:

- Keys cubic kernel with a = -0.5, support +-2;
- antialiasing when shrinking (scale < 1): the kernel becomes ``scale * cubic(scale * x)``, i.e. widened by 1/scale;
- coordinate mapping ``u = x / scale + (1 - 1 / scale) / 2`` (1-based pixel indices), taps
  ``floor(u - width / 2) + 0 .. ceil(width) + 1``, weights normalised to sum 1 per output pixel;
- **symmetric** edge handling: out-of-range taps are mirrored with the edge pixel repeated
  (index 0 -> 1, -1 -> 2, n + 1 -> n), not clamped;
- one axis after the other, the axis with the smaller scale first (rows first when equal);
- uint8 input: after **each** axis the result is rounded (half away from zero) and saturated to [0, 255], as
  MATLAB's resampling kernel returns the input class; float input is neither rounded nor clipped.

The generic :func:`paragonsr.ops.resample.resize` with ``kernel="bicubic"`` uses the same kernel and coordinate
mapping but replicate (clamped) edges and a single rounding at the end, so it differs from this function in the
pixels within about two kernel radii of the border and by 8-bit rounding.
"""

from __future__ import annotations

import math

import numpy as np

from paragonsr.ops.resample import cubic_kernel

_CUBIC_WIDTH = 4.0


def matlab_contributions(
    n_in: int, n_out: int, scale: float, antialias: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of MATLAB's ``contributions()`` for the bicubic kernel along one axis.

    Returns ``(indices, weights)``, both of shape ``(n_out, taps)``: 0-based input indices after symmetric
    mirroring, and float64 weights that sum to 1 per row. Columns whose weight is zero for every output pixel are
    dropped, as MATLAB does. ``scale`` is the resize factor (output/input; < 1 shrinks).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"imresize sizes must be >= 1, got {n_in} -> {n_out}")
    if not scale > 0:
        raise ValueError(f"imresize scale must be positive, got {scale}")
    if scale < 1 and antialias:
        width = _CUBIC_WIDTH / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * cubic_kernel(scale * x)
    else:
        width = _CUBIC_WIDTH
        kernel = cubic_kernel
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    indices = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    keep = np.any(weights != 0, axis=0)
    return indices[:, keep], weights[:, keep]


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8 conversion: saturate to [0, 255], round half away from zero."""
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    src = np.moveaxis(img, axis, 0).astype(np.float64, copy=False)
    out = np.zeros((indices.shape[0], *src.shape[1:]), dtype=np.float64)
    shape = (indices.shape[0],) + (1,) * (src.ndim - 1)
    for k in range(indices.shape[1]):  # tap by tap, in MATLAB's summation order
        out += weights[:, k].reshape(shape) * src[indices[:, k]]
    out = np.moveaxis(out, 0, axis)
    return _round_uint8(out) if img.dtype == np.uint8 else out


def imresize_matlab(
    img: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` or ``imresize(img, [h w], 'bicubic')`` of an HW/HWC image.

    ``img``: uint8 (0-255; the result is uint8, rounded and saturated after each axis, as MATLAB) or float
    (any range; the result is float64, not clipped). Give exactly one of ``scale`` (output size
    ``ceil(scale * input)``, the factor used in the coordinate mapping) or ``size=(h, w)`` (factors ``h/H, w/W``).
    ``antialias`` (MATLAB's 'Antialiasing', default true) widens the kernel when shrinking.
    Raises ``ValueError`` for other dtypes or shapes, or when both or neither of scale and size are given.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize_matlab expects an HW or HWC image, got shape {img.shape}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"imresize_matlab expects uint8 or float pixels, got {img.dtype}")
    if (scale is None) == (size is None):
        raise ValueError("imresize_matlab needs exactly one of scale or size")
    h, w = img.shape[:2]
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_size = (math.ceil(scale * h), math.ceil(scale * w))
    else:
        assert size is not None
        out_size = (int(size[0]), int(size[1]))
        if min(out_size) < 1:
            raise ValueError(f"imresize output size must be >= 1, got {size}")
        scales = (out_size[0] / h, out_size[1] / w)
    out = img
    for axis in sorted((0, 1), key=lambda a: scales[a]):  # stable: rows first when the factors are equal
        indices, weights = matlab_contributions(img.shape[axis], out_size[axis], scales[axis], antialias)
        out = _resize_axis(out, axis, indices, weights)
    return out
