"""Stage-1 quality heuristics: fast, weight-free numpy/OpenCV scores computed per tile.

Every function takes an image tile as ``np.ndarray`` (HW gray or HWC RGB; uint8, uint16 or float in [0, 1]) and
returns one float. Directions (which way is "better") live in :data:`METRIC_INFO`; the gate thresholds that use
them live in :mod:`paragonsr.data.filter.gates`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from paragonsr.ops.colour import to_gray

__all__ = [
    "HEURISTICS",
    "METRIC_INFO",
    "aliasing",
    "blockiness",
    "entropy",
    "laplacian_variance",
    "rms_contrast",
    "to_gray",
]


def entropy(img: np.ndarray) -> float:
    """Shannon entropy (bits) of the 256-bin luma histogram: 0 for a flat tile, ~7-7.8 for rich photos."""
    g = np.clip(np.round(to_gray(img) * 255.0), 0, 255).astype(np.int64)
    hist = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def rms_contrast(img: np.ndarray) -> float:
    """RMS contrast: standard deviation of luma in [0, 1] (0 for a flat tile, ~0.29 for uniform noise)."""
    return float(to_gray(img).std())


def laplacian_variance(img: np.ndarray) -> float:
    """Variance of the 3×3 Laplacian of luma in 0-255 units: the classic focus measure. Low = soft/blurred,
    very high = oversharpened (halos, noise). Used as a band (min and max)."""
    g = to_gray(img) * 255.0
    lap = cv2.Laplacian(g, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT)
    return float(lap[1:-1, 1:-1].var())


def blockiness(img: np.ndarray, block: int = 8) -> float:
    """JPEG blocking strength on the 8×8 grid, alignment-free.

    Mean absolute luma step between neighbouring columns (and rows) is collected per grid phase (x mod 8).
    A block codec quantises each 8×8 DCT block independently, so steps across block borders (one phase)
    grow while steps inside blocks shrink. Score = mean step at the strongest phase / mean step at the other
    phases, averaged over both directions; ≈ 1.0 for clean content, > 1.2 for visible blocking. Taking the
    strongest phase (not phase 7) keeps the score valid for tiles that are not aligned to the JPEG grid.
    """
    g = to_gray(img) * 255.0
    ratios = []
    for d in (np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0)).T):
        if d.shape[1] < 2 * block:
            continue
        phase = np.array([d[:, p::block].mean() for p in range(block)])
        k = int(phase.argmax())
        others = np.delete(phase, k).mean()
        # +1 grey level on both sides: smooth gradients quantised to 8 bit would otherwise give huge ratios
        # from steps far too small to see.
        ratios.append((phase[k] + 1.0) / (others + 1.0))
    if not ratios:
        raise ValueError(f"tile {g.shape} too small for blockiness (needs ≥ {2 * block + 1} px)")
    return float(np.mean(ratios))


def _radial_spectrum(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum of a Hann-windowed, mean-removed tile and the radial frequency (cycles/pixel) of each bin."""
    h, w = g.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.rfft2((g - g.mean()) * win)
    power = np.abs(f) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return power, np.sqrt(fx**2 + fy**2)


def aliasing(img: np.ndarray, lo: float = 0.02, hi: float = 0.35) -> float:
    """Aliasing / jaggies measure: percent of spectral energy above ``hi`` cycles/px among energy above ``lo``.

    Properly band-limited images (area/antialiased resizes, optics) roll off towards Nyquist (0.5 cyc/px),
    while point-sampled (nearest) or aliased content keeps full-strength energy up to Nyquist, folded from above
    it: stair-stepped edges and moiré. Higher = more aliased. Noise also raises it, which is what we want to
    drop too; the entropy/laplacian gates separate the two cases.
    """
    g = to_gray(img)
    power, r = _radial_spectrum(g)
    band = power[(r >= lo) & (r <= 0.5 * np.sqrt(2))].sum()
    top = power[r >= hi].sum()
    return float(100.0 * top / band) if band > 1e-12 else 0.0


# name -> (function, direction: "higher" means larger is better, description)
METRIC_INFO: dict[str, tuple[str, str]] = {
    "entropy": ("higher", "luma histogram entropy (bits)"),
    "contrast": ("higher", "RMS contrast of luma [0,1]"),
    "sharpness": ("band", "Laplacian variance (0-255 units): too soft below min, oversharpened above max"),
    "blockiness": ("lower", "8×8 JPEG block-border step ratio (1 = none)"),
    "aliasing": ("lower", "spectral energy fraction near Nyquist"),
    "niqe": ("lower", "NIQE distance to a pristine model fitted on your own images"),
    "brisque": ("lower", "BRISQUE, LIVE model (paragonsr weights fetch brisque_live)"),
    "arniqa": ("higher", "ARNIQA technical quality via pyiqa (optional)"),
    "nima": ("higher", "NIMA aesthetic score via pyiqa (optional)"),
}

HEURISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "entropy": entropy,
    "contrast": rms_contrast,
    "sharpness": laplacian_variance,
    "blockiness": blockiness,
    "aliasing": aliasing,
}
