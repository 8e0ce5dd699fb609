"""Independent reference for MATLAB's bicubic ``imresize``, written pixel by pixel from its documented algorithm.

Plain Python loops, no project code: for every output pixel, the source position, the taps, the (widened) cubic
weights, the symmetric reflection of each out-of-range tap and the row normalisation are computed one at a time.
Used by the imresize and benchmark tests as the expected values.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np


def cubic(x: float) -> float:
    """MATLAB's cubic() (Keys, a = -0.5), written as in imresize.m."""
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def reflect(j: int, n: int) -> int:
    """1-based symmetric padding: 0 -> 1, -1 -> 2, n + 1 -> n, n + 2 -> n - 1 (repeated for tiny n)."""
    while j < 1 or j > n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j


def weight_matrix(n_in: int, n_out: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (n_out, n_in) matrix of MATLAB's contributions(), one output pixel at a time."""
    mat = np.zeros((n_out, n_in))
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        row: dict[int, float] = {}
        total = 0.0
        for j in range(left, left + math.ceil(width) + 2):
            w = scale * cubic(scale * (u - j)) if shrink else cubic(u - j)
            total += w
            k = reflect(j, n_in)
            row[k] = row.get(k, 0.0) + w
        for k, w in row.items():
            mat[i - 1, k - 1] += w / total
    return mat


def round_uint8(x: np.ndarray) -> np.ndarray:
    """Saturate to [0, 255] and round half away from zero, value by value with Decimal."""
    flat = [int(Decimal(repr(float(v))).quantize(Decimal(1), rounding=ROUND_HALF_UP)) for v in x.ravel()]
    return np.clip(np.array(flat, dtype=np.int64).reshape(x.shape), 0, 255).astype(np.uint8)


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """imresize(img, scale, 'bicubic') of an HW/HWC uint8 or float image: rows first, then columns."""
    h, w = img.shape[:2]
    oh, ow = math.ceil(scale * h), math.ceil(scale * w)
    rows = weight_matrix(h, oh, scale, antialias)
    cols = weight_matrix(w, ow, scale, antialias)
    x = img.astype(np.float64)
    out = np.einsum("oh,hw...->ow...", rows, x)
    if img.dtype == np.uint8:
        out = round_uint8(out).astype(np.float64)
    out = np.einsum("pw,hw...->hp...", cols, out)
    return round_uint8(out) if img.dtype == np.uint8 else out
