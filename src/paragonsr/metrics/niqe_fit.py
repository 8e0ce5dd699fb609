"""NIQE (Mittal, Soundararajan & Bovik 2013) in numpy, with a packaged pristine model or one fitted on your images.

Natural-scene statistics: MSCN coefficients of luma, a generalised Gaussian fit on them and asymmetric
generalised Gaussian fits on their four neighbour products (18 features), at two scales (36 features) per
``patch``×``patch`` block. A multivariate Gaussian fitted on sharp blocks of pristine images is the model; an
image's score is the Mahalanobis-like distance between its own block MVG and the model (lower = more natural).

Differences from the MATLAB release, on purpose: the pristine model is fitted by this code (the package ships
one fitted on CC0/CC-BY photographs, ``assets/niqe``; ``paragonsr data niqe-fit`` fits one on your set), with
smaller blocks so that a filter tile holds enough of them (packaged: 32 px; niqe-fit default 64 px); the
sharpness selection (blocks whose mean local σ exceeds 75 % of the sharpest block's, or of a percentile of the
blocks' σ for large photos) is applied when fitting only, as in the paper. The features are computed for all
blocks at once (:func:`_batch_features`), with the same values as the per-block reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from paragonsr.ops.colour import to_gray
from paragonsr.utils.atomic import atomic_output

# the pristine fit shipped with the package (assets/niqe, fitted on CC photographs)
PACKAGED_NIQE = Path(__file__).resolve().parents[1] / "assets" / "niqe" / "pristine.npz"

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
    """18 features of one MSCN block, one block at a time (reference for :func:`_batch_features`)."""
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


_LGAMMA = np.vectorize(math.lgamma)


def _nearest_gamma(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``_GAMMAS[argmin |table - v|]`` for each v (table monotonic): what the scalar fits do, in one pass."""
    asc = table[0] < table[-1]
    t = table if asc else table[::-1]
    i = np.clip(np.searchsorted(t, values), 1, len(t) - 1)
    i = np.where(np.abs(t[i - 1] - values) <= np.abs(t[i] - values), i - 1, i)
    return _GAMMAS[i if asc else len(t) - 1 - i]


def _batch_features(blocks: np.ndarray) -> np.ndarray:
    """(N, 18) features of N MSCN blocks (N, p, p): same values as :func:`_block_features` per block."""
    n = len(blocks)
    x = blocks.reshape(n, -1)
    sigma_sq = (x * x).mean(1)
    e_abs = np.abs(x).mean(1)
    out = [_nearest_gamma(_R_GGD, sigma_sq / np.maximum(e_abs * e_abs, 1e-12)), sigma_sq]
    for shifted in (
        np.roll(blocks, 1, 2),
        np.roll(blocks, 1, 1),
        np.roll(np.roll(blocks, 1, 1), 1, 2),
        np.roll(np.roll(blocks, 1, 1), -1, 2),
    ):
        v = (blocks * shifted)[:, 1:-1, 1:-1].reshape(n, -1)
        sq = v * v
        nl, nr = (v < 0).sum(1), (v > 0).sum(1)
        ls = np.where(nl > 0, np.sqrt(np.where(v < 0, sq, 0).sum(1) / np.maximum(nl, 1)), 1e-6)
        rs = np.where(nr > 0, np.sqrt(np.where(v > 0, sq, 0).sum(1) / np.maximum(nr, 1)), 1e-6)
        g = ls / np.maximum(rs, 1e-12)
        r_hat = np.abs(v).mean(1) ** 2 / np.maximum(sq.mean(1), 1e-12)
        alpha = _nearest_gamma(_R_GAM, r_hat * (g**3 + 1) * (g + 1) / (g * g + 1) ** 2)
        lg1, lg2, lg3 = _LGAMMA(1 / alpha), _LGAMMA(2 / alpha), _LGAMMA(3 / alpha)
        mean = (rs - ls) * np.sqrt(np.exp(lg1 - lg3)) * np.exp(lg2 - lg1)
        out += [alpha, mean, ls * ls, rs * rs]
    return np.stack(out, 1)


def _blocks(a: np.ndarray, p: int) -> np.ndarray:
    """(rows*cols, p, p) row-major blocks of an array whose sides are multiples of p."""
    h, w = a.shape
    return a.reshape(h // p, p, w // p, p).transpose(0, 2, 1, 3).reshape(-1, p, p)


def niqe_features(
    img: np.ndarray, patch: int = 64, select_sharp: bool = False, sharp_ref: float = 100.0
) -> np.ndarray:
    """(n_blocks, 36) feature matrix of one image (18 features at full and at half resolution per block).

    ``select_sharp`` keeps only sharp blocks (model fitting): mean local σ above 75 % of the ``sharp_ref``
    percentile of the blocks' σ (100 = the sharpest block, as in the paper; a lower reference keeps more
    blocks of large photos, where one outlier block would otherwise set the bar)."""
    g = to_gray(img) * 255.0
    h, w = (g.shape[0] // patch) * patch, (g.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[:2]} smaller than one NIQE block ({patch} px)")
    g = g[:h, :w]
    scales = [g, cv2.resize(g, (w // 2, h // 2), interpolation=cv2.INTER_AREA)]
    parts, sharp = [], np.zeros(0)
    for si, im in enumerate(scales):
        m, sigma = mscn(im)
        p = patch >> si
        parts.append(_batch_features(_blocks(m, p)))
        if si == 0:
            sharp = _blocks(sigma, p).mean((1, 2))
    feats = np.concatenate(parts, 1)
    if select_sharp:
        ref = float(np.percentile(sharp, sharp_ref))
        feats = feats[sharp > 0.75 * ref] if ref > 0 else feats[:0]
    return feats


class NIQEModel:
    """Pristine MVG (mean, covariance), the block size it was fitted with, and the gate threshold per filter tile
    size (``thresholds``: tile px -> score; what ``max: auto`` in a gate resolves to).

    Tile scores spread widely even on clean photos (a 256-px tile holds only 16 blocks of 64 px for a 36-D
    covariance) and shrink as tiles grow (more blocks, a better estimate of the tile's own statistics), so a
    threshold only holds for the tile size it was measured at. ``fit`` stores the 95th percentile of the
    pristine images' own ``tile``-px tile scores (``tile_p95``); the packaged model stores a calibrated table."""

    def __init__(
        self,
        mu: np.ndarray,
        cov: np.ndarray,
        patch: int,
        tile_p95: float | None = None,
        tile: int = 256,
        thresholds: dict[int, float] | None = None,
    ) -> None:
        self.mu, self.cov, self.patch, self.tile_p95, self.tile = mu, cov, patch, tile_p95, tile
        self.thresholds: dict[int, float] = {int(k): float(v) for k, v in (thresholds or {}).items()}
        if tile_p95 is not None:
            self.thresholds.setdefault(int(tile), float(tile_p95))
        self.source = "NIQE model"

    def threshold_for(self, tile: int) -> float:
        """The gate threshold for ``tile``-px tiles: a stored value, or log-log interpolation between the two
        stored tile sizes around it. ValueError outside the stored range (scores depend on the tile size)."""
        if tile in self.thresholds:
            return self.thresholds[tile]
        sizes = sorted(self.thresholds)
        if not sizes or not sizes[0] < tile < sizes[-1]:
            have = f"{sizes[0]}-px tiles" if len(sizes) == 1 else f"{sizes[0]}- to {sizes[-1]}-px tiles"
            raise ValueError(
                f"{self.source} has thresholds measured on {have if sizes else 'no tiles'}, not on {tile} px (NIQE "
                f"scores depend on the tile size); refit with 'paragonsr data niqe-fit --tile {tile}', or give the "
                "niqe gate a number"
            )
        hi = next(s for s in sizes if s > tile)
        lo = max(s for s in sizes if s < tile)
        t = (math.log(tile) - math.log(lo)) / (math.log(hi) - math.log(lo))
        a, b = math.log(self.thresholds[lo]), math.log(self.thresholds[hi])
        return math.exp(a + t * (b - a))

    @classmethod
    def fit(
        cls,
        images: list[np.ndarray],
        patch: int = 64,
        tile: int = 256,
        max_tiles: int = 100,
        sharp_ref: float = 100.0,
    ) -> NIQEModel:
        """MVG of the sharp blocks of ``images`` (HWC RGB or HW gray, any dtype :func:`to_gray` takes); with
        ``max_tiles > 0`` also the p95 of up to that many of their ``tile``-px tiles' scores (``tile_p95``).
        ``sharp_ref``: see :func:`niqe_features`."""
        feats = [f for img in images if len(f := niqe_features(img, patch, True, sharp_ref))]
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
        if tile >= patch and tiles and max_tiles > 0:
            step = max(1, len(tiles) // max_tiles)  # spread the sample over all images
            model.tile_p95 = float(np.percentile([model.score(t) for t in tiles[::step][:max_tiles]], 95))
            model.thresholds[tile] = model.tile_p95
        return model

    def score(self, img: np.ndarray) -> float:
        """NIQE of one image or tile (lower = closer to the pristine statistics); needs at least one block."""
        f = niqe_features(img, self.patch)
        mu = f.mean(0)
        cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(self.cov)
        d = self.mu - mu
        return float(math.sqrt(max(d @ np.linalg.pinv((self.cov + cov) / 2) @ d, 0.0)))

    def save(self, path: str | Path) -> None:
        p95 = np.float64(np.nan if self.tile_p95 is None else self.tile_p95)
        sizes = sorted(self.thresholds)
        with atomic_output(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to other names
            np.savez(
                tmp,
                mu=self.mu,
                cov=self.cov,
                patch=np.int64(self.patch),
                tile_p95=p95,
                tile=np.int64(self.tile),
                thr_tiles=np.asarray(sizes, np.int64),
                thr_values=np.asarray([self.thresholds[s] for s in sizes], np.float64),
            )

    @classmethod
    def load(cls, path: str | Path) -> NIQEModel:
        """Read a model written by :meth:`save`. FileNotFoundError / ValueError name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"NIQE model not found: {path} (fit one with 'paragonsr data niqe-fit')")
        try:
            z = np.load(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a NIQE model (not a readable .npz: {exc})") from None
        with z:
            if not {"mu", "cov", "patch"} <= set(z.files):
                raise ValueError(
                    f"{path} is not a NIQE model (expected arrays mu, cov, patch; got {z.files})"
                )
            p95 = float(z["tile_p95"]) if "tile_p95" in z.files else float("nan")
            tile = int(z["tile"]) if "tile" in z.files else 256  # files from before the tile was stored
            thr = {}
            if "thr_tiles" in z.files and "thr_values" in z.files:
                thr = {int(k): float(v) for k, v in zip(z["thr_tiles"], z["thr_values"])}
            model = cls(z["mu"], z["cov"], int(z["patch"]), None if math.isnan(p95) else p95, tile, thr)
        model.source = str(path)
        return model
