"""Parameter counting, the one definition every report (archs listing, fuse, transfer, eval, bench) uses."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``; ``trainable_only`` counts only those with ``requires_grad``. Buffers
    (tracked kernels, fixed resampler taps, spectral-norm vectors) are not parameters and are never counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
