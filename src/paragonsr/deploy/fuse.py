"""Prepare a trained generator for release: optional calibration, ``fuse_for_release``, parity and cost figures."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from paragonsr.deploy.verify import DEFAULT_SIZES, GateResult, check_parity, torch_runner


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def macs_per_output_mp(model: nn.Module, hw: tuple[int, int] = (64, 64)) -> float:
    """Multiply-accumulates per output megapixel, counted by torch's FLOP counter (convs, matmuls) on one
    ``hw`` input: it sees functional convs too (e.g. the Magic Kernel upsampler), which module hooks miss."""
    from torch.utils.flop_counter import FlopCounterMode

    in_ch = int(getattr(model, "in_ch", 3))
    x = torch.rand(1, in_ch, *hw, device=_device(model))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model.eval()(x)
    return counter.get_total_flops() / 2 / (out.shape[-2] * out.shape[-1]) * 1e6


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def calibrate(model: nn.Module, inputs: Sequence[np.ndarray], steps: int) -> None:
    """Settle the tracked (static) kernels of dynamic layers by running ``steps`` batches in training mode
    without gradient steps, cycling through ``inputs`` (NCHW float32 LR batches)."""
    if steps <= 0:
        return
    if not inputs:
        raise ValueError("calibration needs images (--calib DIR)")
    tensors = [torch.from_numpy(x).to(_device(model)) for x in inputs]
    batches = [tensors[i % len(tensors)] for i in range(steps)]
    if hasattr(model, "calibrate"):
        model.calibrate(batches)
    else:
        was_training = model.training
        model.train()
        with torch.no_grad():
            for b in batches:
                model(b)
        model.train(was_training)
    model.eval()


@dataclass
class FuseReport:
    arch: str
    variant: str
    scale: int
    in_ch: int
    out_ch: int
    params_trainable: int
    params_fused: int
    macs_per_output_mp: float
    fusable: bool
    calibrated_steps: int
    parity: GateResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def prepare_for_release(
    model: nn.Module,
    *,
    calib_inputs: Sequence[np.ndarray] = (),
    calibrate_steps: int = 0,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
) -> tuple[nn.Module, FuseReport]:
    """Return ``(fused_model, report)``; the input model is not modified (calibration works on a copy).

    Fusion must be lossless: the fused model is compared with the unfused eval model on several sizes and a
    difference above 1e-4 raises, because everything downstream would then verify against a broken model.
    """
    model = copy.deepcopy(model).eval().to("cpu", torch.float32)
    trainable = count_params(model, trainable_only=True)
    calibrate(model, calib_inputs, calibrate_steps)
    arch = type(model).__name__
    variant = str(getattr(model, "arch_name", None) or arch.lower())
    scale, in_ch = int(getattr(model, "scale", 1)), int(getattr(model, "in_ch", 3))
    fusable = hasattr(model, "fuse_for_release")
    parity = None
    if fusable:
        fused = copy.deepcopy(model).fuse_for_release().eval()
        for attr in ("arch_name", "arch_kwargs"):
            if hasattr(model, attr) and not hasattr(fused, attr):
                setattr(fused, attr, getattr(model, attr))
        parity = check_parity(
            torch_runner(model), torch_runner(fused), in_ch, scale, sizes, name="fused_vs_unfused"
        )
        if not parity.passed:
            raise RuntimeError(f"fuse_for_release() changed the output of {variant}: {parity.detail}")
    else:
        fused = model
    report = FuseReport(
        arch=arch,
        variant=variant,
        scale=scale,
        in_ch=in_ch,
        out_ch=int(getattr(model, "out_ch", 3)),
        params_trainable=trainable,
        params_fused=count_params(fused),
        macs_per_output_mp=macs_per_output_mp(fused),
        fusable=fusable,
        calibrated_steps=max(0, calibrate_steps),
        parity=parity,
    )
    return fused, report
