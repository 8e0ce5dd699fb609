"""NIQE (Mittal, Soundararajan & Bovik 2013), weight-free: the pristine model is fitted on *your* images.

Natural-scene statistics: MSCN coefficients of luma, a generalised Gaussian fit on them and asymmetric
generalised Gaussian fits on their four neighbour products (18 features), at two scales (36 features) per
``patch``×``patch`` block. A multivariate Gaussian fitted on sharp blocks of pristine images is the model; an
image's score is the Mahalanobis-like distance between its own block MVG and the model (lower = more natural).

Differences from the MATLAB release, on purpose: the model is fitted on the user's pristine set (no shipped
weights); blocks default to 64 px so a 256 px tile gives 16 blocks; the sharpness selection (blocks whose mean
local σ exceeds 75 % of the image's sharpest block) is applied when fitting only, as in the paper.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from paragonsr.data.filter.heuristics import to_gray
from paragonsr.utils.atomic import atomic_output

_GAMMAS = np.arange(0.2, 10.0, 0.001)
_R_GAM = np.array(
    [math.exp(math.lgamma(2 / g) * 2 - math.lgamma(1 / g) - math.lgamma(3 / g)) for g in _GAMMAS]
)
# BRISQUE/NIQE AGGD uses r(γ) = Γ(2/γ)² / (Γ(1/γ) Γ(3/γ)); GGD uses its inverse.
_R_GGD = 1.0 / _R_GAM


def mscn(gray255: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local σ map (7×7 Gaussian, σ = 7/6)."""
    mu = cv2.GaussianBlur(gray255, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    var = cv2.GaussianBlur(gray255 * gray255, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (gray255 - mu) / (sigma + 1.0), sigma


def _ggd(x: np.ndarray) -> tuple[float, float]:
    sigma_sq = float(np.mean(x * x))
    e_abs = float(np.mean(np.abs(x)))
    rho = sigma_sq / max(e_abs * e_abs, 1e-12)
    return float(_GAMMAS[np.argmin(np.abs(_R_GGD - rho))]), sigma_sq


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    left, right = x[x < 0], x[x > 0]
    ls = math.sqrt(float(np.mean(left * left))) if left.size else 1e-6
    rs = math.sqrt(float(np.mean(right * right))) if right.size else 1e-6
    g = ls / max(rs, 1e-12)
    r_hat = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x * x)), 1e-12)
    rr = r_hat * (g**3 + 1) * (g + 1) / (g * g + 1) ** 2
    alpha = float(_GAMMAS[np.argmin(np.abs(_R_GAM - rr))])
    const = math.sqrt(math.exp(math.lgamma(1 / alpha) - math.lgamma(3 / alpha)))
    mean = (rs - ls) * const * math.exp(math.lgamma(2 / alpha) - math.lgamma(1 / alpha))
    return alpha, mean, ls * ls, rs * rs


def _block_features(m: np.ndarray) -> list[float]:
    a, s = _ggd(m)
    feats = [a, s]
    for shifted in (
        np.roll(m, 1, 1),
        np.roll(m, 1, 0),
        np.roll(np.roll(m, 1, 0), 1, 1),
        np.roll(np.roll(m, 1, 0), -1, 1),
    ):
        feats.extend(_aggd((m * shifted)[1:-1, 1:-1]))
    return feats


def niqe_features(img: np.ndarray, patch: int = 64, select_sharp: bool = False) -> np.ndarray:
    """(n_blocks, 36) feature matrix of one image. ``select_sharp`` keeps only sharp blocks (model fitting)."""
    g = to_gray(img) * 255.0
    h, w = (g.shape[0] // patch) * patch, (g.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[:2]} smaller than one NIQE block ({patch} px)")
    g = g[:h, :w]
    scales = [g, cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA)]
    rows: list[list[float]] = [[] for _ in range((h // patch) * (w // patch))]
    sharp: list[float] = []
    for si, im in enumerate(scales):
        m, sigma = mscn(im)
        p = patch >> si
        k = 0
        for by in range(h // patch):
            for bx in range(w // patch):
                blk = m[by * p : (by + 1) * p, bx * p : (bx + 1) * p]
                rows[k].extend(_block_features(blk))
                if si == 0:
                    sharp.append(float(sigma[by * p : (by + 1) * p, bx * p : (bx + 1) * p].mean()))
                k += 1
    feats = np.asarray(rows, dtype=np.float64)
    if select_sharp:
        s = np.asarray(sharp)
        feats = feats[s > 0.75 * s.max()] if s.max() > 0 else feats[:0]
    return feats


class NIQEModel:
    """Pristine MVG (mean, covariance), the block size it was fitted with, and the 95th percentile of the scores
    of the pristine images' own tiles (``tile_p95``: what ``max: auto`` in a gate resolves to).

    Tile scores spread widely even on clean photos (a 256-px tile holds only 16 blocks for a 36-D covariance),
    so an absolute threshold does not transfer between datasets; the pristine set's own spread does."""

    def __init__(
        self, mu: np.ndarray, cov: np.ndarray, patch: int, tile_p95: float | None = None, tile: int = 256
    ) -> None:
        self.mu, self.cov, self.patch, self.tile_p95 = mu, cov, patch, tile_p95
        # tile size tile_p95 was measured at: scores roughly double from 256- to 128-px tiles, so the p95 is
        # only a valid threshold for tiles of this size
        self.tile = tile

    @classmethod
    def fit(
        cls, images: list[np.ndarray], patch: int = 64, tile: int = 256, max_tiles: int = 100
    ) -> NIQEModel:
        feats = [f for img in images if len(f := niqe_features(img, patch, select_sharp=True))]
        if not feats:
            raise ValueError("no usable blocks in the pristine set (images too small or flat)")
        allf = np.concatenate(feats)
        if len(allf) < 2:
            raise ValueError(f"only {len(allf)} pristine block(s): give more or larger images")
        model = cls(allf.mean(0), np.cov(allf, rowvar=False), patch, tile=tile)
        tiles = [
            img[y : y + tile, x : x + tile]
            for img in images
            for y in range(0, img.shape[0] - tile + 1, tile)
            for x in range(0, img.shape[1] - tile + 1, tile)
        ]
        if tile >= patch and tiles:
            step = max(1, len(tiles) // max_tiles)  # spread the sample over all images
            model.tile_p95 = float(np.percentile([model.score(t) for t in tiles[::step][:max_tiles]], 95))
        return model

    def score(self, img: np.ndarray) -> float:
        f = niqe_features(img, self.patch)
        mu = f.mean(0)
        cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(self.cov)
        d = self.mu - mu
        return float(math.sqrt(max(d @ np.linalg.pinv((self.cov + cov) / 2) @ d, 0.0)))

    def save(self, path: str | Path) -> None:
        p95 = np.float64(np.nan if self.tile_p95 is None else self.tile_p95)
        with atomic_output(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to other names
            np.savez(
                tmp,
                mu=self.mu,
                cov=self.cov,
                patch=np.int64(self.patch),
                tile_p95=p95,
                tile=np.int64(self.tile),
            )

    @classmethod
    def load(cls, path: str | Path) -> NIQEModel:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"NIQE model not found: {path} (fit one with 'paragonsr data niqe-fit')")
        with np.load(path) as z:
            if not {"mu", "cov", "patch"} <= set(z.files):
                raise ValueError(
                    f"{path} is not a NIQE model (expected arrays mu, cov, patch; got {z.files})"
                )
            p95 = float(z["tile_p95"]) if "tile_p95" in z.files else float("nan")
            tile = int(z["tile"]) if "tile" in z.files else 256  # files from before the tile was stored
            return cls(z["mu"], z["cov"], int(z["patch"]), None if math.isnan(p95) else p95, tile)
