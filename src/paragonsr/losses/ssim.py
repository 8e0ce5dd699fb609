"""SSIM and MS-SSIM losses (differentiable, batched, per channel on [0, 1] images).

MS-SSIM (Wang et al. 2003): 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); scales 1..4
contribute contrast-structure ``cs``, the coarsest scale ``luminance * cs``; 2×2 average pooling between scales;
11×11 Gaussian window σ 1.5 with 'valid' filtering; C1 = (0.01·R)², C2 = (0.03·R)² for data range R.

Small crops: a scale needs at least ``win_size`` pixels on its shorter side. When the input is too small for all
5 scales (the full pyramid needs ≥ 176 px with an 11 px window: the 5th scale is side // 16) we use **fewer
scales and renormalise the weights of the scales kept to sum 1** (e.g. a 64 px crop uses 3 scales: weights
0.0448, 0.2856, 0.3001 / 0.6305). Below one window (< 11 px) the window shrinks to the largest odd size that fits
(σ scaled with it). This never pads, so no border statistics are invented. Negative ``cs`` values are clamped to
a small positive number before the fractional powers (they would give NaN), as common implementations do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.losses.pixel import check_pair
from paragonsr.ops.filters import gaussian_1d as gaussian_taps
from paragonsr.registry import LOSS_REGISTRY

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_1d(
    size: int, sigma: float, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """:func:`paragonsr.ops.filters.gaussian_1d` taps as a tensor (float32 unless ``dtype``)."""
    taps = torch.from_numpy(gaussian_taps(size, sigma, np.float64))
    return taps.to(device=device, dtype=dtype or torch.float32)


def _blur_valid(x: Tensor, g: Tensor) -> Tensor:
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def ssim_components(
    x: Tensor, y: Tensor, win_size: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Per-image-and-channel mean luminance·cs term and cs term, each (N, C)."""
    side = min(x.shape[-2:])
    if side < win_size:  # shrink the window to fit (documented above)
        new = side if side % 2 else side - 1
        sigma, win_size = sigma * new / win_size, max(new, 1)
    g = gaussian_1d(win_size, sigma, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if x.device.type == "cpu":  # oneDNN's depthwise convs are ~2x faster on channels_last (same values)
        x, y = (
            x.contiguous(memory_format=torch.channels_last),
            y.contiguous(memory_format=torch.channels_last),
        )
    mu_x, mu_y = _blur_valid(x, g), _blur_valid(y, g)
    sxx = _blur_valid(x * x, g) - mu_x**2
    syy = _blur_valid(y * y, g) - mu_y**2
    sxy = _blur_valid(x * y, g) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    lum_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum_map * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ssim(x: Tensor, y: Tensor, win_size: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean SSIM of a batch (scalar)."""
    return ssim_components(x, y, win_size, sigma, data_range)[0].mean()


def msssim_levels(size: int, win_size: int = 11, max_levels: int = 5) -> int:
    """How many scales fit: level k (0-based) has size // 2**k and needs at least win_size pixels."""
    levels = 1
    while levels < max_levels and size // (2**levels) >= win_size:
        levels += 1
    return levels


def ms_ssim(
    x: Tensor,
    y: Tensor,
    win_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    weights: tuple[float, ...] = MSSSIM_WEIGHTS,
) -> Tensor:
    """Mean MS-SSIM of a batch (scalar); fewer scales with renormalised weights on small inputs."""
    levels = msssim_levels(min(x.shape[-2:]), win_size, len(weights))
    w = torch.tensor(weights[:levels], dtype=x.dtype, device=x.device)
    if levels < len(weights):  # the full pyramid keeps the published weights exactly (they sum to 1.0001)
        w = w / w.sum()
    vals = []
    for k in range(levels):
        ssim_k, cs_k = ssim_components(x, y, win_size, sigma, data_range)
        vals.append(ssim_k if k == levels - 1 else cs_k)
        if k < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stack = torch.stack(vals, dim=0).clamp_min(1e-6)  # (levels, N, C)
    return torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean()


class _WindowedSSIMLoss(nn.Module):
    """Options shared by the SSIM-family losses (Gaussian window ``win_size``/``sigma``, ``data_range``).

    Args:
        loss_weight: factor of this loss in the total.
        win_size: width of the Gaussian window in pixels (odd).
        sigma: standard deviation of the Gaussian window, in pixels.
        data_range: value range of the images (1.0 for [0, 1]); sets the stabilising constants C1, C2.
    """

    def __init__(
        self, loss_weight: float = 1.0, win_size: int = 11, sigma: float = 1.5, data_range: float = 1.0
    ) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.win_size, self.sigma, self.data_range = win_size, sigma, data_range


@LOSS_REGISTRY.register("SSIMLoss", aliases=("ssim",))
class SSIMLoss(_WindowedSSIMLoss):
    """``loss_weight * (1 - SSIM(pred, target))``."""

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "SSIMLoss")
        return self.loss_weight * (1.0 - ssim(pred, target, self.win_size, self.sigma, self.data_range))


@LOSS_REGISTRY.register("MSSSIMLoss", aliases=("msssim", "ms_ssim", "mssimloss"))
class MSSSIMLoss(_WindowedSSIMLoss):
    """``loss_weight * (1 - MS-SSIM(pred, target))``; see the module docstring for small inputs.

    Computed in float32 even under autocast (the variance terms cancel badly in bf16).
    """

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "MSSSIMLoss")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            val = ms_ssim(pred.float(), target.float(), self.win_size, self.sigma, self.data_range)
        return self.loss_weight * (1.0 - val)


@LOSS_REGISTRY.register("MSSSIML1Loss", aliases=("msssiml1", "ms_ssim_l1"))
class MSSSIML1Loss(nn.Module):
    """The MS-SSIM + L1 mix of Zhao et al. 2017 ("Loss Functions for Image Restoration with Neural Networks"), in
    traiNNer-redux's form (``msssiml1loss``), per pixel at full resolution:

    ``loss_weight * mean(alpha * (1 - l * cs) + (1 - alpha) * G_σM * |pred - target| / data_range)``

    The scales are Gaussian windows of the ``gaussian_sigmas`` (default 0.5, 1, 2, 4, 8) instead of a downsampled
    pyramid; every window is ``2·⌊2·σM⌋ + 1`` wide and the images are replicate-padded by ``⌊2·σM⌋``. ``cs`` is the product
    over scales and channels of ``relu(cs_σ,c) ** w_σ`` with the MS-SSIM weights (0.0448, 0.2856, 0.3001, 0.2363,
    0.1333); ``l`` is the product over channels of the luminance term at the largest σ; ``G_σM * |e|`` is the L1
    error smoothed by the largest window and averaged over channels. C1 = (k1·R)², C2 = (k2·R)² for
    ``data_range`` R. Computed in float32 even under autocast. Needs 5 sigmas (one per MS-SSIM weight).

    Args:
        loss_weight: factor of this loss in the total.
        alpha: share of the MS-SSIM term (1 - alpha: the smoothed L1 term).
        gaussian_sigmas: the five window sigmas in pixels (default 0.5, 1, 2, 4, 8).
        data_range: value range of the images (1.0 for [0, 1]).
        k: (k1, k2) of the stabilising constants C1 = (k1·R)², C2 = (k2·R)².
    """

    taps: Tensor
    weights: Tensor

    def __init__(
        self,
        loss_weight: float = 1.0,
        alpha: float = 0.1,
        gaussian_sigmas: list[float] | None = None,
        data_range: float = 1.0,
        k: tuple[float, float] = (0.01, 0.03),
    ) -> None:
        super().__init__()
        sigmas = [float(s) for s in (gaussian_sigmas or (0.5, 1.0, 2.0, 4.0, 8.0))]
        if len(sigmas) != len(MSSSIM_WEIGHTS) or min(sigmas) <= 0:
            raise ValueError(
                f"MSSSIML1Loss: gaussian_sigmas needs 5 positive values, got {gaussian_sigmas!r}"
            )
        if not 0 <= alpha <= 1 or data_range <= 0:
            raise ValueError(
                f"MSSSIML1Loss: alpha must be in [0, 1] and data_range > 0, got {alpha}, {data_range}"
            )
        self.loss_weight, self.alpha, self.data_range = float(loss_weight), float(alpha), float(data_range)
        self.c1, self.c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
        self.pad = int(2 * sigmas[-1])
        size = 2 * self.pad + 1  # the output keeps the input size
        taps = torch.stack([gaussian_1d(size, s) for s in sigmas])  # (S, size), each sums to 1
        self.register_buffer("taps", taps, persistent=False)
        self.register_buffer("weights", torch.tensor(MSSSIM_WEIGHTS).view(1, -1, 1, 1, 1), persistent=False)

    def _blur(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, S, C, H, W): each channel smoothed by each scale's separable Gaussian."""
        n, c, h, w = x.shape
        s, k = self.taps.shape
        x = F.pad(x, (self.pad,) * 4, mode="replicate").reshape(n * c, 1, h + 2 * self.pad, w + 2 * self.pad)
        x = F.conv2d(x, self.taps.view(s, 1, k, 1))
        x = F.conv2d(x, self.taps.view(s, 1, 1, k), groups=s)
        return x.reshape(n, c, s, h, w).transpose(1, 2)

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "MSSSIML1Loss")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            x, y = pred.float(), target.float()
            mx, my = self._blur(x), self._blur(y)
            sxx, syy, sxy = self._blur(x * x) - mx**2, self._blur(y * y) - my**2, self._blur(x * y) - mx * my
            cs = F.relu((2 * sxy + self.c2) / (sxx + syy + self.c2))  # (N, S, C, H, W)
            cs = (cs ** self.weights.to(cs.dtype)).flatten(1, 2).prod(dim=1)
            lum = (2 * mx[:, -1] * my[:, -1] + self.c1) / (mx[:, -1] ** 2 + my[:, -1] ** 2 + self.c1)
            ms_ssim = lum.prod(dim=1) * cs  # (N, H, W)
            l1 = self._blur((x - y).abs())[:, -1].mean(dim=1)  # largest window, mean over channels
            mix = self.alpha * (1 - ms_ssim) + (1 - self.alpha) * l1 / self.data_range
        return self.loss_weight * mix.mean()
