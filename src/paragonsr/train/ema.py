"""Exponential moving average of a network (BasicSR ``net_g_ema``, saved as ``params_ema``)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * model`` for parameters; buffers (e.g. ParagonSR2's tracked
    kernels) are copied, since they are already running statistics."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(_unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = _unwrap(model)
        ema_p: list[Tensor] = list(self.module.parameters())
        src_p = [p.detach() for p in src.parameters()]
        if ema_p:
            torch._foreach_lerp_(ema_p, [s.to(e.dtype) for s, e in zip(src_p, ema_p)], 1.0 - self.decay)
        for e, s in zip(self.module.buffers(), src.buffers()):
            e.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
