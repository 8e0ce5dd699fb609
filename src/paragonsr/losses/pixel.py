"""Pixel losses: L1, MSE, Charbonnier, total variation. Calling convention: see :mod:`paragonsr.losses`."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from paragonsr.registry import LOSS_REGISTRY

_REDUCTIONS = ("mean", "sum", "none")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def weighted_reduce(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Apply an optional per-pixel weight, then reduce. With a weight, 'mean' divides by the weight's sum
    (broadcast over channels), as BasicSR's ``weight_reduce_loss`` does."""
    if weight is None:
        return reduce_loss(loss, reduction)
    if weight.ndim != loss.ndim:
        raise ValueError(f"pixel weight must be (N, 1|C, H, W), got shape {tuple(weight.shape)}")
    loss = loss * weight
    if reduction == "mean":
        denom = weight.expand_as(loss).sum().clamp_min(1e-12)
        return loss.sum() / denom
    return reduce_loss(loss, reduction)


def check_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )


class _PixelLoss(nn.Module):
    """Element-wise loss of (N, C, H, W) tensors, an optional per-pixel weight, then a reduction.

    Args:
        loss_weight: factor of this loss in the total.
        reduction: ``mean``, ``sum`` or ``none`` (per element).

    Raises:
        ValueError: an unknown reduction.
    """

    gt_usm_group: ClassVar[str] = "l1"  # compares against the USM-sharpened GT when l1_gt_usm is set

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.loss_weight = float(loss_weight)
        self.reduction = reduction

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, **ctx: Any) -> Tensor:
        check_pair(pred, target, type(self).__name__)
        return self.loss_weight * weighted_reduce(self.elementwise(pred, target), weight, self.reduction)


@LOSS_REGISTRY.register("L1Loss", aliases=("l1",))
class L1Loss(_PixelLoss):
    """Mean absolute error."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()


@LOSS_REGISTRY.register("MSELoss", aliases=("mse", "l2loss"))
class MSELoss(_PixelLoss):
    """Mean squared error."""

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target) ** 2


@LOSS_REGISTRY.register("CharbonnierLoss", aliases=("charbonnier",))
class CharbonnierLoss(_PixelLoss):
    """sqrt((pred - target)² + eps): a differentiable L1 (BasicSR default eps 1e-12).

    Args:
        eps: added under the square root (> 0); the loss of equal images is sqrt(eps).
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", eps: float = 1e-12) -> None:
        super().__init__(loss_weight, reduction)
        if eps <= 0:
            raise ValueError(f"CharbonnierLoss: eps must be > 0, got {eps}")
        self.eps = float(eps)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.sqrt((pred - target) ** 2 + self.eps)


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic TV: mean |vertical difference| + mean |horizontal difference| of an (N, C, H, W) batch."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs()
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs()
    zero = x.new_zeros(())
    return (dh.mean() if dh.numel() else zero) + (dw.mean() if dw.numel() else zero)


@LOSS_REGISTRY.register("TVLoss", aliases=("tv",))
class TVLoss(nn.Module):
    """Total-variation regulariser on ``pred`` only (``target`` is ignored and may be None).

    Value = mean|∂y| + mean|∂x| (so a horizontal ramp with step d has TV = d).

    Args:
        loss_weight: factor of this loss in the total.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor | None = None, **ctx: Any) -> Tensor:
        return self.loss_weight * total_variation(pred)
