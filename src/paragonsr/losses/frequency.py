"""Frequency-domain losses: FFT (L1 on spectra) and Focal Frequency Loss (Jiang et al., ICCV 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from paragonsr.losses.pixel import check_pair
from paragonsr.registry import LOSS_REGISTRY


def _spectrum(x: Tensor) -> Tensor:
    """Orthonormal 2-D FFT as real (…, H, W, 2); float32 because FFTs do not support bf16/half on CPU."""
    f = torch.fft.fft2(x.float(), norm="ortho")
    return torch.stack([f.real, f.imag], dim=-1)


@LOSS_REGISTRY.register("FFTLoss", aliases=("fft",))
class FFTLoss(nn.Module):
    """Mean |FFT(pred) − FFT(target)| over real and imaginary parts (orthonormal FFT, so the value is
    comparable across crop sizes).

    Args:
        loss_weight: factor of this loss in the total.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "FFTLoss")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return self.loss_weight * (_spectrum(pred) - _spectrum(target)).abs().mean()


@LOSS_REGISTRY.register("FocalFrequencyLoss", aliases=("ffl", "ffloss", "focalfrequency"))
class FocalFrequencyLoss(nn.Module):
    """Focal Frequency Loss: squared spectral distance weighted by a detached, per-image normalised
    ``distance ** (alpha / 2)`` map so that hard frequencies dominate.

    Options as the reference implementation: ``alpha`` (focusing exponent), ``patch_factor`` (split the image into
    p×p patches first), ``ave_spectrum`` (compare minibatch-average spectra), ``log_matrix`` (log(1+w) weights),
    ``batch_matrix`` (normalise the weights over the batch instead of per image).

    Args:
        loss_weight: factor of this loss in the total.
        alpha: focusing exponent of the spectral weight map.
        patch_factor: split each image into patch_factor × patch_factor patches before the FFT.
        ave_spectrum: compare the minibatch-average spectra.
        log_matrix: weights log(1 + w) instead of w.
        batch_matrix: normalise the weights over the batch instead of per image.
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        alpha: float = 1.0,
        patch_factor: int = 1,
        ave_spectrum: bool = False,
        log_matrix: bool = False,
        batch_matrix: bool = False,
    ) -> None:
        super().__init__()
        if patch_factor < 1:
            raise ValueError(f"FocalFrequencyLoss: patch_factor must be >= 1, got {patch_factor}")
        self.loss_weight, self.alpha, self.patch_factor = float(loss_weight), float(alpha), int(patch_factor)
        self.ave_spectrum, self.log_matrix, self.batch_matrix = ave_spectrum, log_matrix, batch_matrix

    def _patches(self, x: Tensor) -> Tensor:
        p = self.patch_factor
        n, c, h, w = x.shape
        if h % p or w % p:
            raise ValueError(f"FocalFrequencyLoss: patch_factor {p} must divide the image size {h}x{w}")
        ph, pw = h // p, w // p
        x = x.reshape(n, c, p, ph, p, pw).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, p * p, c, ph, pw)

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        check_pair(pred, target, "FocalFrequencyLoss")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            fp, ft = _spectrum(self._patches(pred)), _spectrum(self._patches(target))
            if self.ave_spectrum:
                fp, ft = fp.mean(0, keepdim=True), ft.mean(0, keepdim=True)
            dist = ((fp - ft) ** 2).sum(-1)  # (N, P, C, H, W)
            with torch.no_grad():
                w = dist.sqrt() ** self.alpha
                if self.log_matrix:
                    w = torch.log1p(w)
                if self.batch_matrix:
                    w = w / w.max().clamp_min(1e-12)
                else:
                    w = w / w.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
                w = torch.nan_to_num(w).clamp(0.0, 1.0)
            return self.loss_weight * (w * dist).mean()
