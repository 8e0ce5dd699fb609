"""Colour losses: HSLuv (hue / saturation / lightness) and Oklab consistency (brightness, chroma, structure).

Conversions are differentiable torch ports of the published formulas: sRGB transfer curve, the sRGB→XYZ matrix
(D65), CIE L*u*v*, HSLuv's per-hue maximum chroma (hsluv.org reference algorithm) and Björn Ottosson's Oklab.
Inputs are RGB (N, 3, H, W) in [0, 1]; values outside are clamped before conversion (gradients stop there).
Hue never goes through ``atan2`` in the losses (undefined gradient at grey): we use the unit hue vector
``(u, v) / C`` with a small epsilon instead, and weight hue errors by the target's saturation (hue of a grey
pixel is meaningless).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.pixel import check_pair
from paragonsr.registry import LOSS_REGISTRY

_RGB2XYZ = (
    (0.41239079926595, 0.35758433938387, 0.18048078840183),
    (0.21263900587151, 0.71516867876775, 0.072192315360733),
    (0.019330818715591, 0.11919477979462, 0.95053215224966),
)
_XYZ2RGB = (
    (3.240969941904521, -1.537383177570093, -0.498610760293),
    (-0.96924363628087, 1.87596750150772, 0.041555057407175),
    (0.055630079696993, -0.20397695888897, 1.056971514242878),
)
_REF_U, _REF_V = 0.19783000664283, 0.46831999493879
_KAPPA, _EPSILON = 903.2962962, 0.0088564516
_EPS = 1e-8


def srgb_to_linear(x: Tensor) -> Tensor:
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(_EPS) ** 2.4)


def _mix(x: Tensor, m: tuple[tuple[float, ...], ...]) -> Tensor:
    w = torch.tensor(m, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,njhw->nihw", w, x)


def rgb_to_luv(rgb: Tensor) -> Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> CIE L*u*v* (L in [0, 100])."""
    xyz = _mix(srgb_to_linear(rgb), _RGB2XYZ)
    x, y, z = xyz.unbind(1)
    lum = torch.where(y <= _EPSILON, y * _KAPPA, 116.0 * y.clamp_min(_EPS) ** (1.0 / 3.0) - 16.0)
    denom = x + 15.0 * y + 3.0 * z + _EPS
    u = 13.0 * lum * (4.0 * x / denom - _REF_U)
    v = 13.0 * lum * (9.0 * y / denom - _REF_V)
    return torch.stack([lum, u, v], dim=1)


def _max_chroma(lum: Tensor, cos_h: Tensor, sin_h: Tensor) -> Tensor:
    """Largest in-gamut chroma for lightness L and hue (cos, sin): min positive ray length to the 6 gamut lines."""
    sub1 = (lum + 16.0) ** 3 / 1560896.0
    sub2 = torch.where(sub1 > _EPSILON, sub1, lum / _KAPPA)
    best = torch.full_like(lum, float("inf"))
    for m1, m2, m3 in _XYZ2RGB:
        for t in (0.0, 1.0):
            top1 = (284517.0 * m1 - 94839.0 * m3) * sub2
            top2 = (838422.0 * m3 + 769860.0 * m2 + 731718.0 * m1) * lum * sub2 - 769860.0 * t * lum
            bottom = (632260.0 * m3 - 126452.0 * m2) * sub2 + 126452.0 * t
            bottom = torch.where(bottom.abs() < _EPS, torch.full_like(bottom, _EPS), bottom)
            slope, intercept = top1 / bottom, top2 / bottom
            den = sin_h - slope * cos_h
            den = torch.where(den.abs() < _EPS, torch.full_like(den, _EPS), den)
            length = intercept / den
            best = torch.where(length >= 0, torch.minimum(best, length), best)
    return best


def rgb_to_hsluv_parts(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (cos H, sin H, S in [0, 100], L in [0, 100]), each (N, H, W); gradient-safe at grey."""
    lum, u, v = rgb_to_luv(rgb).unbind(1)
    chroma = torch.sqrt(u * u + v * v + _EPS)
    cos_h, sin_h = u / chroma, v / chroma
    max_c = _max_chroma(lum, cos_h, sin_h)
    sat = torch.where(
        (lum > 1e-6) & (lum < 99.9999), chroma / max_c.clamp_min(_EPS) * 100.0, torch.zeros_like(lum)
    )
    return cos_h, sin_h, sat.clamp(0.0, 100.0), lum


def rgb_to_hsluv(rgb: Tensor) -> Tensor:
    """sRGB (N, 3, H, W) -> HSLuv (N, 3, H, W): H in degrees [0, 360), S and L in [0, 100]."""
    cos_h, sin_h, sat, lum = rgb_to_hsluv_parts(rgb)
    hue = torch.rad2deg(torch.atan2(sin_h, cos_h)) % 360.0
    return torch.stack([hue, sat, lum], dim=1)


@LOSS_REGISTRY.register("HSLuvLoss", aliases=("hsluv",))
class HSLuvLoss(nn.Module):
    """HSLuv colour loss: ``hue_weight · mean(S_t/100 · (1 − cos Δh)/2) + saturation_weight · mean|ΔS|/100 +
    lightness_weight · mean|ΔL|/100``, all terms in [0, 1].

    Args:
        loss_weight: factor of this loss in the total.
        hue_weight: factor of the hue term (weighted by the target's saturation).
        saturation_weight: factor of the saturation term.
        lightness_weight: factor of the lightness term.
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        hue_weight: float = 1.0,
        saturation_weight: float = 1.0,
        lightness_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.hue_weight, self.saturation_weight, self.lightness_weight = (
            hue_weight,
            saturation_weight,
            lightness_weight,
        )

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "HSLuvLoss")
        if pred.shape[1] != 3:
            raise ValueError(f"HSLuvLoss needs RGB (3-channel) images, got {pred.shape[1]} channels")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            cp, sp, sat_p, l_p = rgb_to_hsluv_parts(pred.float())
            with torch.no_grad():
                ct, st, sat_t, l_t = rgb_to_hsluv_parts(target.float())
            hue = (sat_t / 100.0 * (1.0 - (cp * ct + sp * st)) / 2.0).mean()
            sat = (sat_p - sat_t).abs().mean() / 100.0
            light = (l_p - l_t).abs().mean() / 100.0
            total = self.hue_weight * hue + self.saturation_weight * sat + self.lightness_weight * light
        return self.loss_weight * total


_LMS = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
_OKLAB = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)


def rgb_to_oklab(rgb: Tensor) -> Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> Oklab (L in [0, 1], a/b roughly in [-0.4, 0.4])."""
    lms = _mix(srgb_to_linear(rgb), _LMS)
    return _mix((lms.clamp_min(0.0) + 1e-6) ** (1.0 / 3.0), _OKLAB)  # +1e-6: finite cbrt gradient at black


def _sobel(x: Tensor) -> Tensor:
    k = (
        torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
        / 8
    )
    k = torch.stack([k, k.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


@LOSS_REGISTRY.register("ConsistencyLoss", aliases=("consistency",))
class ConsistencyLoss(nn.Module):
    """Oklab consistency: brightness (L1 of ``pool``×``pool`` mean-pooled Oklab L), chroma (same on a, b) and
    local structure (L1 between Sobel gradients of Oklab L). Pooling makes the colour terms about regional tint
    and brightness drift, leaving fine detail to the other losses.

    Args:
        loss_weight: factor of this loss in the total.
        brightness_weight: factor of the pooled Oklab L term.
        chroma_weight: factor of the pooled Oklab a, b term.
        structure_weight: factor of the Sobel-gradient term on Oklab L.
        pool: side of the mean-pooling window in pixels.
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        brightness_weight: float = 1.0,
        chroma_weight: float = 1.0,
        structure_weight: float = 0.5,
        pool: int = 4,
    ) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"ConsistencyLoss: pool must be >= 1, got {pool}")
        self.loss_weight, self.pool = float(loss_weight), int(pool)
        self.brightness_weight, self.chroma_weight, self.structure_weight = (
            brightness_weight,
            chroma_weight,
            structure_weight,
        )

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "ConsistencyLoss")
        if pred.shape[1] != 3:
            raise ValueError(f"ConsistencyLoss needs RGB (3-channel) images, got {pred.shape[1]} channels")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            lp, lt = rgb_to_oklab(pred.float()), rgb_to_oklab(target.float())
            pp = F.avg_pool2d(lp, self.pool, ceil_mode=True)
            pt = F.avg_pool2d(lt, self.pool, ceil_mode=True)
            bright = (pp[:, :1] - pt[:, :1]).abs().mean()
            chroma = (pp[:, 1:] - pt[:, 1:]).abs().mean()
            struct = (_sobel(lp[:, :1]) - _sobel(lt[:, :1])).abs().mean()
            total = (
                self.brightness_weight * bright + self.chroma_weight * chroma + self.structure_weight * struct
            )
        return self.loss_weight * total
