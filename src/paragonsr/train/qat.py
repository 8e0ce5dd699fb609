"""``model_type: QATModel``: quantization-aware fine-tuning of a trained generator for INT8 export.

The generator named by ``path.pretrain_network_g`` (an FP32 checkpoint, fused or not, or a QAT checkpoint to go
on from) is fused to its release form and every conv gets fake-quant (:mod:`paragonsr.deploy.qat`). Its weights
train with ``train.optim_g``; the learned step sizes and ranges with their own LR (``train.qat.quant_lr``). The
activation ranges start from the FP32 min/max over the first iteration's training batches.
Validation measures the fake-quant (= INT8) model. Checkpoints hold the weights and the learned quantisation;
``paragonsr export --int8`` writes their QDQ ONNX with those values and gates it against the FP32 twin (the same
weights without fake-quant).

Fake-quant needs fp32 maths (bf16 keeps 8 significant bits: the rounding would be noise), so ``use_amp`` is
refused.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from paragonsr.deploy.qat import calibrate_ranges, is_qat_state, prepare_qat, quant_parameters
from paragonsr.registry import MODEL_REGISTRY
from paragonsr.train.ema import ModelEMA
from paragonsr.train.optim import IterScheduler, build_optimizer
from paragonsr.train.options import Options
from paragonsr.train.qat_options import QATOpt
from paragonsr.train.sr_model import SRModel, unwrap

log = logging.getLogger("paragonsr.train")


def load_for_qat(net: nn.Module, path: str, quant_out: bool) -> tuple[nn.Module, bool]:
    """``net`` (built from network_g) in release form with QAT quantisers and the weights of ``path``.
    Returns (model, ranges_known): True when ``path`` already held learned quantisation. Raises ValueError /
    CheckpointError naming the file when it does not fit."""
    from paragonsr.checkpoint import load_state_dict, load_weights

    state, meta = load_state_dict(path)
    fuse = getattr(net, "fuse_for_release", None)
    in_ch = int(getattr(net, "in_ch", 3))
    example = torch.rand(1, in_ch, 16, 16)
    if is_qat_state(state):
        if fuse is not None:
            fuse()
        prepare_qat(net, example, quant_out=any(".aq_out." in k for k in state))
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: QAT checkpoint does not fit network_g (missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})"
            )
        return net, True
    if meta.get("fused") and fuse is not None:
        fuse()
    load_weights(net, path, strict=True)
    if fuse is not None:
        fuse()  # an unfused file: its tracked kernels are folded as they were saved
    prepare_qat(net, example, quant_out=quant_out)
    return net, False


@MODEL_REGISTRY.register("QATModel", aliases=("qat",))
class QATModel(SRModel):
    """SRModel whose generator is the fake-quant release form of a pretrained model (see the module docstring)."""

    def __init__(self, opt: Options, device: torch.device) -> None:
        t = opt.train
        if t.use_amp:
            raise ValueError(
                "train.use_amp: QATModel needs fp32 (fake-quant under bf16/fp16 rounds to noise); set it false"
            )
        pre = opt.path.pretrain_network_g
        if not pre:
            raise ValueError(
                "path.pretrain_network_g: QATModel fine-tunes a trained model; name its checkpoint"
            )
        self.qat_opt = t.qat or QATOpt()
        # The base class builds the (unfused) network and its optimizer; the QAT network replaces both below.
        base = opt.model_copy(update={"path": opt.path.model_copy(update={"pretrain_network_g": None})})
        super().__init__(base, device)
        self.opt = opt
        net, self.ranges_known = load_for_qat(unwrap(self.net_g).cpu(), pre, self.qat_opt.quant_out)
        log.info(f"QAT: {sum(1 for _ in quant_parameters(net))} quantiser tensors on {pre}")
        self.net_g = net.to(device).to(memory_format=self.memory_format).train()  # type: ignore[call-overload]
        self._broadcast(self.net_g)
        self.ema = ModelEMA(self.net_g, t.ema_decay) if t.ema_decay > 0 else None
        self._build_optimizer()

    def _build_optimizer(self) -> None:
        t = self.opt.train
        qparams = quant_parameters(self.net_g)
        qids = {id(p) for p in qparams}
        self.optimizer_g = build_optimizer(
            (p for p in self.net_g.parameters() if id(p) not in qids), t.optim_g
        )
        self.optimizer_g.add_param_group(
            {"params": qparams, "lr": self.qat_opt.quant_lr, "weight_decay": 0.0}
        )
        self.sched_g = IterScheduler(self.optimizer_g, t.scheduler, t.total_iter, t.warmup_iter)

    @torch.no_grad()
    def _init_ranges(self, batches: list[dict[str, Any]]) -> None:
        """Activation ranges from the FP32 min/max over the first iteration's LQ batches (and the EMA copy)."""
        net = unwrap(self.net_g)
        calibrate_ranges(net, [b["lq"].detach().float() for b in batches])
        if self.ema is not None:
            self.ema.module.load_state_dict(net.state_dict())
        log.info(f"QAT: activation ranges set from {sum(len(b['lq']) for b in batches)} LQ crops")
        self.ranges_known = True

    def optimize_parameters(self, batches: list[dict[str, Any]], it: int) -> dict[str, float]:
        if not self.ranges_known:
            self._init_ranges(batches)
        return super().optimize_parameters(batches, it)

    def eval_model(self, calibrate: bool = True) -> nn.Module:
        # The release form has no tracked kernels to settle: never calibrate.
        return super().eval_model(calibrate=False)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "qat_ranges_known": self.ranges_known}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ranges_known = bool(state.get("qat_ranges_known", self.ranges_known))


__all__ = ["QATModel", "load_for_qat"]
