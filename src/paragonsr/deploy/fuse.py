"""Prepare a trained generator for release: optional calibration, ``fuse_for_release``, parity and cost figures."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from paragonsr.deploy.verify import DEFAULT_SIZES, GateResult, check_parity, torch_runner
from paragonsr.utils.params import count_params


class _MacCounter(TorchFunctionMode):
    """Counts multiply-accumulates of convolutions and linear layers at the functional level, so the fixed
    functional convs of the Magic Kernel upsampler count too (module hooks miss them). torch's FlopCounterMode
    would do the same but imports torch._dynamo (~6 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        weight = kwargs.get("weight", args[1] if len(args) > 1 else None)
        if func in (F.conv1d, F.conv2d, F.conv3d, F.linear):
            # every output element: (C_in / groups) * prod(kernel) products
            self.macs += out.numel() * weight[0].numel()
        elif func in (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d):
            # every input element is spread over (C_out / groups) * prod(kernel) outputs
            self.macs += args[0].numel() * weight[0].numel()
        return out


def macs_per_output_mp(model: nn.Module, hw: tuple[int, int] = (64, 64)) -> float:
    """Multiply-accumulates per output megapixel (convs, transposed convs, linear) measured on one ``hw`` input."""
    in_ch = int(getattr(model, "in_ch", 3))
    x = torch.rand(1, in_ch, *hw, device=_device(model))
    with torch.no_grad(), _MacCounter() as counter:
        out = model.eval()(x)
    return counter.macs / (out.shape[-2] * out.shape[-1]) * 1e6


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
    hook = getattr(model, "calibrate_for_eval", None)  # the optional arch hook (see paragonsr.archs)
    if hook is None:
        raise ValueError(
            f"calibrate: {type(model).__name__} has no DynamicTransformer-style tracked kernels to calibrate "
            "(no calibrate_for_eval hook); drop --calibrate"
        )
    tensors = [torch.from_numpy(x).to(_device(model)) for x in inputs]
    hook(tensors[i % len(tensors)] for i in range(steps))
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
        fused = cast(Any, copy.deepcopy(model)).fuse_for_release().eval()
        for attr in ("arch_name", "arch_kwargs"):
            if hasattr(model, attr) and not hasattr(fused, attr):
                setattr(fused, attr, getattr(model, attr))
        parity = check_parity(
            torch_runner(model),
            torch_runner(fused),
            in_ch,
            scale,
            sizes,
            name="fused_vs_unfused",
            inputs=getattr(model, "parity_inputs", "uniform"),
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


def has_dynamic_layers(model: nn.Module) -> bool:
    return any(hasattr(m, "tracked_kernel") for m in model.modules())


def dynamic_outputs(model: nn.Module, lr_inputs: Sequence[np.ndarray]) -> list[np.ndarray] | None:
    """Outputs of the unfused model with its per-sample dynamic kernels (training-mode forward, batch 1, on a
    copy so the tracked kernels stay untouched); None for archs without dynamic layers or already fused ones."""
    if not has_dynamic_layers(model) or getattr(model, "fused", False):
        return None
    dyn = copy.deepcopy(model).to("cpu", torch.float32).train()
    outs = []
    with torch.no_grad():
        for x in lr_inputs:
            outs.append(dyn(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None]))[0].numpy())
    return outs
