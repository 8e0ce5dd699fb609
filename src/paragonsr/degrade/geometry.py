"""Scene warps: lens distortion, chromatic aberration, rolling shutter.

These move pixels, so pipelines apply them to the *scene* (the GT) before the LQ is derived from it; the GT a
pipeline returns carries the warp and the pair stays aligned (warping the LQ only, as some anchors do, teaches the
model to undo a shift it can never see in its target). Parameters are resolution-independent fractions so the
same YAML means the same look at any image size. All warps are an inverse mapping through ``cv2.remap``
(bilinear, reflect-101 borders); zero strength maps every pixel onto itself exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def _remap(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    out = cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out[:, :, None] if out.ndim == 2 else out


def _radial_maps(h: int, w: int, factor_fn) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _grid(h, w)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    dx, dy = xs - cx, ys - cy
    rmax2 = cx * cx + cy * cy or 1.0
    f = factor_fn((dx * dx + dy * dy) / rmax2).astype(np.float32)
    return (cx + dx * f).astype(np.float32), (cy + dy * f).astype(np.float32)


def lens_distortion(img: np.ndarray, k1: float, k2: float = 0.0) -> np.ndarray:
    """Brown radial model with r normalised to the half-diagonal: an output pixel at radius r samples the
    source at r·(1 + k1·r² + k2·r⁴). k1 > 0 gives barrel (wide-angle) distortion, k1 < 0 pincushion."""
    h, w = img.shape[:2]
    mx, my = _radial_maps(h, w, lambda r2: 1.0 + k1 * r2 + k2 * r2 * r2)
    return _remap(img, mx, my)


def chromatic_aberration(img: np.ndarray, shift: float) -> np.ndarray:
    """Lateral chromatic aberration: red sampled at radius·(1 + shift), blue at radius·(1 − shift), green kept
    (``shift`` ~ 0.001-0.004 for real lenses). No-op on 1-channel images."""
    if img.shape[2] != 3:
        return img.copy()
    h, w = img.shape[:2]
    out = img.copy()
    for c, s in ((0, 1.0 + shift), (2, 1.0 - shift)):
        mx, my = _radial_maps(h, w, lambda r2, s=s: np.full_like(r2, s))
        out[:, :, c] = _remap(np.ascontiguousarray(img[:, :, c]), mx, my)[:, :, 0]
    return out


def rolling_shutter(
    img: np.ndarray, shift: float, wobble: float = 0.0, frequency: float = 1.0, phase: float = 0.0
) -> np.ndarray:
    """Row-dependent horizontal shift of a rolling-shutter sensor under motion: row y samples the source at
    x + W·(shift·(y/(H−1) − ½) + wobble·sin(2π·frequency·y/H + phase)). ``shift``/``wobble`` are fractions of
    the width (total skew top→bottom, and hand-shake jitter amplitude)."""
    h, w = img.shape[:2]
    xs, ys = _grid(h, w)
    t = ys / max(h - 1, 1)
    dx = w * (shift * (t - 0.5) + wobble * np.sin(2 * math.pi * frequency * ys / h + phase))
    return _remap(img, (xs + dx).astype(np.float32), ys)
