"""Optimizers and LR schedulers from typed options, with linear warm-up (``train.warmup_iter``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from paragonsr.train.options import (
    AdamOpt,
    AdamWOpt,
    CosineAnnealingLROpt,
    MultiStepLROpt,
    SchedOpt,
    SGDOpt,
)


def build_optimizer(
    params: Iterable[nn.Parameter], opt: AdamOpt | AdamWOpt | SGDOpt
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the network has no trainable parameters")
    if isinstance(opt, AdamWOpt):
        return torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                 weight_decay=opt.weight_decay, amsgrad=opt.amsgrad)  # fmt: skip
    if isinstance(opt, AdamOpt):
        return torch.optim.Adam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                weight_decay=opt.weight_decay, amsgrad=opt.amsgrad)  # fmt: skip
    return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay,
                           nesterov=opt.nesterov)  # fmt: skip


def lr_at(it: int, base: float, sched: SchedOpt | None, total_iter: int, warmup: int) -> float:
    """LR at iteration ``it`` (0-based count of finished optimizer steps) for a group whose base LR is ``base``.

    A pure function of the iteration, so a resumed run can never lose its schedule (a classic resume bug)."""
    if isinstance(sched, MultiStepLROpt):
        lr = base * sched.gamma ** sum(1 for m in sched.milestones if it >= m)
    elif isinstance(sched, CosineAnnealingLROpt):
        t_max = sched.T_max or total_iter
        cos = 0.5 * (1 + math.cos(math.pi * min(it, t_max) / t_max))
        lr = sched.eta_min + (base - sched.eta_min) * cos
    else:
        lr = base
    if warmup > 0 and it < warmup:
        lr *= (it + 1) / warmup
    return lr


class IterScheduler:
    """Sets every param group's LR from :func:`lr_at`; ``step()`` once per optimizer step."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, sched: SchedOpt | None, total_iter: int, warmup_iter: int = -1
    ) -> None:
        self.optimizer, self.sched, self.total_iter = optimizer, sched, total_iter
        self.warmup = max(0, warmup_iter)
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_iter = 0
        self._apply()

    def _apply(self) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr_at(self.last_iter, base, self.sched, self.total_iter, self.warmup)

    def step(self) -> None:
        self.last_iter += 1
        self._apply()

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_iter": self.last_iter, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_iter = int(state["last_iter"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self._apply()
