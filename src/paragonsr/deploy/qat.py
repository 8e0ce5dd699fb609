"""Quantization-aware training (QAT): fake-quant that is exactly what the QDQ INT8 exporter writes.

Every ``nn.Conv2d`` of a (fused) generator becomes a :class:`QConv2d` with

- weights: int8, per output channel, symmetric (zero point 0, codes -127..127), scale learned;
- input and output activations: uint8, per tensor, asymmetric (codes 0..255), range [lo, lo + width] learned.

Learned scales follow LSQ (Esser et al., "Learned Step Size Quantization", ICLR 2020): rounding is a
straight-through estimator, so the gradient reaches the step size; scales are learned in the log domain
(``log_scale``, ``log_width``) so one learning rate fits step sizes of very different magnitude. A conv whose input
is the quantised output of another conv has no input quantiser of its own (the tensor is already on that grid), as
in the exported graph. Submodules an arch names in ``int8_keep_float`` (ParagonSR2's image-space MKS upsampler)
stay float, and so does everything after them (the image-residual add and the output).

The design choice: torchao's PT2E flow and NNCF do not install next to this project's CPU torch without pulling
other torch builds, and ONNX Runtime's quantizer only calibrates, it does not train. These are plain torch ops;
the QDQ writer (:mod:`paragonsr.deploy.qat_onnx`) reads the learned values back, so nothing is recalibrated.

State-dict keys added per conv: ``<conv>.wq.log_scale`` (C_out,), ``<conv>.aq_in.lo`` / ``.log_width`` (scalars,
absent where shared), ``<conv>.aq_out.lo`` / ``.log_width``. :func:`fp32_state` strips them (the FP32 twin).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

W_QMIN, W_QMAX = -127, 127  # int8 symmetric weights (ONNX Runtime's symmetric range)
A_QMIN, A_QMAX = 0, 255  # uint8 activations
QAT_KEY_PARTS = (".wq.", ".aq_in.", ".aq_out.")
MIN_WIDTH = 1e-6


def _round_ste(v: Tensor) -> Tensor:
    """round-half-to-even (as ONNX QuantizeLinear) forward, identity gradient (LSQ's straight-through)."""
    return v + (torch.round(v) - v).detach()


class ActQuant(nn.Module):
    """Per-tensor asymmetric uint8 fake quantiser with a learned range ``[lo, lo + exp(log_width)]``.

    Modes: ``quant`` (default, fake-quantise), ``off`` (identity: the FP32 twin), ``observe`` (identity, records
    the min/max seen), ``export`` (``torch.fake_quantize_per_tensor_affine`` with constant scale / zero point,
    which the ONNX exporter writes as QuantizeLinear + DequantizeLinear)."""

    def __init__(self) -> None:
        super().__init__()
        self.lo = nn.Parameter(torch.zeros(()))
        self.log_width = nn.Parameter(torch.zeros(()))
        self.mode = "quant"
        self.seen: tuple[float, float] | None = None
        self.frozen: tuple[Tensor, Tensor] = (torch.ones(()), torch.zeros((), dtype=torch.int32))

    @torch.no_grad()
    def freeze(self) -> None:
        """Plain (constant) scale / int32 zero point for the ONNX exporter."""
        scale, zp = self.qparams()
        self.frozen = (
            scale.detach().float().cpu().clone(),
            zp.detach().round().to(torch.int32).cpu().clone(),
        )

    def qparams(self) -> tuple[Tensor, Tensor]:
        """(scale, zero_point) as float tensors; the zero point is an integer in [0, 255] (STE-rounded)."""
        scale = torch.exp(self.log_width).clamp_min(MIN_WIDTH) / (A_QMAX - A_QMIN)
        zp = torch.clamp(_round_ste(A_QMIN - self.lo / scale), A_QMIN, A_QMAX)
        return scale, zp

    @torch.no_grad()
    def set_range(self, lo: float, hi: float) -> None:
        """Initialise from an observed range; it always includes 0 (zero padding must be exact)."""
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        self.lo.fill_(lo)
        self.log_width.fill_(math.log(max(hi - lo, MIN_WIDTH)))

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "off":
            return x
        if self.mode == "observe":
            lo, hi = float(x.detach().amin()), float(x.detach().amax())
            self.seen = (lo, hi) if self.seen is None else (min(self.seen[0], lo), max(self.seen[1], hi))
            return x
        scale, zp = self.qparams()
        if self.mode == "export":
            s, z = self.frozen
            return torch.fake_quantize_per_tensor_affine(x, s, z, A_QMIN, A_QMAX)
        xf = x.float()
        q = torch.clamp(_round_ste(xf / scale) + zp, A_QMIN, A_QMAX)
        return ((q - zp) * scale).to(x.dtype)


class WeightQuant(nn.Module):
    """Per-output-channel symmetric int8 fake quantiser of a conv weight (C_out, C_in/g, kh, kw); learned scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.mode = "quant"
        self.frozen: tuple[Tensor, Tensor] = (torch.zeros(()), torch.ones(()))

    @torch.no_grad()
    def freeze(self, w: Tensor) -> None:
        """Constant weight (clamped to +-127 steps, so no code reaches -128) and scale for the ONNX exporter."""
        s = self.scale().float().cpu().clone()
        lim = (s * W_QMAX).view(-1, 1, 1, 1)
        self.frozen = (torch.minimum(torch.maximum(w.detach().float().cpu(), -lim), lim).clone(), s)

    def scale(self) -> Tensor:
        return torch.exp(self.log_scale).clamp_min(1e-12)

    @torch.no_grad()
    def init_from(self, w: Tensor) -> None:
        amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
        self.log_scale.copy_(torch.log(amax / W_QMAX))

    def forward(self, w: Tensor) -> Tensor:
        if self.mode == "off":
            return w
        s = self.scale().view(-1, 1, 1, 1)
        if self.mode == "export":  # QuantizeLinear/DequantizeLinear of constants; qat_onnx folds them to int8
            ws, scale = self.frozen
            zero = torch.zeros(scale.shape, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(ws, scale, zero, 0, -128, 127)
        return torch.clamp(_round_ste(w.float() / s), W_QMIN, W_QMAX).mul(s).to(w.dtype)


class QConv2d(nn.Conv2d):
    """``nn.Conv2d`` with fake-quantised input, weight and output (see the module docstring)."""

    wq: WeightQuant
    aq_in: ActQuant | None
    aq_out: ActQuant | None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, quant_out: bool = True) -> QConv2d:
        q = cls(
            conv.in_channels,
            conv.out_channels,
            cast("tuple[int, int]", conv.kernel_size),
            stride=cast("tuple[int, int]", conv.stride),
            padding=cast("str | tuple[int, int]", conv.padding),
            dilation=cast("tuple[int, int]", conv.dilation),
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        q.load_state_dict(conv.state_dict())
        q.wq = WeightQuant(conv.out_channels).to(conv.weight.device)
        q.wq.init_from(q.weight)
        q.aq_in = ActQuant().to(conv.weight.device)
        q.aq_out = ActQuant().to(conv.weight.device) if quant_out else None
        return q

    def forward(self, x: Tensor) -> Tensor:
        if self.aq_in is not None:
            x = self.aq_in(x)
        y = self._conv_forward(x, self.wq(self.weight), self.bias)
        return self.aq_out(y) if self.aq_out is not None else y


def _kept_float(model: nn.Module) -> list[nn.Module]:
    kept = []
    for name in getattr(model, "int8_keep_float", ()):
        try:
            kept.append(model.get_submodule(name))
        except AttributeError:
            continue
    return [k for k in kept if k is not None]


def quant_modules(model: nn.Module) -> list[ActQuant | WeightQuant]:
    return [m for m in model.modules() if isinstance(m, ActQuant | WeightQuant)]


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Put every quantiser of ``model`` in ``mode`` (quant / off / observe / export); returns ``model``."""
    if mode not in ("quant", "off", "observe", "export"):
        raise ValueError(f"quantiser mode must be quant, off, observe or export, got {mode!r}")
    for m in quant_modules(model):
        m.mode = "off" if isinstance(m, WeightQuant) and mode == "observe" else mode
        if mode == "export" and isinstance(m, ActQuant):
            m.freeze()
    if mode == "export":
        for c in model.modules():
            if isinstance(c, QConv2d):
                c.wq.freeze(c.weight)
    return model


def is_qat(model: nn.Module) -> bool:
    return any(isinstance(m, QConv2d) for m in model.modules())


def is_qat_state(state: Iterable[str]) -> bool:
    """True when a state dict's keys hold QAT quantiser parameters."""
    return any(any(p in k for p in QAT_KEY_PARTS) for k in state)


def fp32_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The FP32 twin's state: ``state`` without the quantiser parameters (loads into the fused arch)."""
    return {k: v for k, v in state.items() if not any(p in k for p in QAT_KEY_PARTS)}


def prepare_qat(model: nn.Module, example: Tensor, quant_out: bool = True) -> nn.Module:
    """Swap every ``nn.Conv2d`` outside the arch's ``int8_keep_float`` submodules for a :class:`QConv2d`, in place.

    ``model`` must be the release (fused) form: fake-quant must see the weights the exporter writes. ``example``
    (1xCxHxW LR) is run once to find convs fed directly by another conv's quantised output, whose input quantiser
    is dropped. Ranges start at 0..1 and weight scales at max|w|/127; :func:`calibrate_ranges` sets real ranges.
    Raises ValueError for a model without convs."""
    if getattr(model, "fused", True) is False and hasattr(model, "fuse_for_release"):
        raise ValueError(
            "QAT needs the release form: call fuse_for_release() first (fake-quant = exported graph)"
        )
    skip = {id(m) for k in _kept_float(model) for m in k.modules()}
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Conv2d and id(m) not in skip]
    if not targets:
        raise ValueError(f"{type(model).__name__} has no Conv2d layers to quantise")
    for name, conv in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, QConv2d.from_conv(conv, quant_out))
    _share_quantised_inputs(model, example)
    return model


@torch.no_grad()
def _share_quantised_inputs(model: nn.Module, example: Tensor) -> None:
    """Drop the input quantiser of every conv whose input is exactly another conv's quantised output."""
    keep: list[Tensor] = []  # alive during the pass, so id() values stay unique
    produced: set[int] = set()
    consumers: dict[int, list[QConv2d]] = {}
    convs = [m for m in model.modules() if isinstance(m, QConv2d)]

    def post(mod: nn.Module, args: Any, out: Tensor) -> None:
        if cast(QConv2d, mod).aq_out is not None:
            keep.append(out)
            produced.add(id(out))

    def pre(mod: nn.Module, args: Any) -> None:
        keep.append(args[0])
        consumers.setdefault(id(args[0]), []).append(cast(QConv2d, mod))

    handles = [h for m in convs for h in (m.register_forward_hook(post), m.register_forward_pre_hook(pre))]
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for tid, mods in consumers.items():
        if tid in produced:
            for m in mods:
                m.aq_in = None


@torch.no_grad()
def calibrate_ranges(model: nn.Module, batches: Sequence[Tensor], percentile: float = 100.0) -> nn.Module:
    """Initialise every activation range from the FP32 min/max over ``batches`` (NCHW LR tensors); weight scales
    from max|w|/127. ``percentile`` < 100 is not used here: QAT learns the clipping. Returns ``model``."""
    if not batches:
        raise ValueError("QAT range calibration needs at least one batch")
    was_training = model.training
    set_mode(model, "observe").eval()
    acts = [m for m in model.modules() if isinstance(m, ActQuant)]
    for a in acts:
        a.seen = None
    try:
        dev = next(model.parameters()).device
        for b in batches:
            model(b.to(dev, torch.float32))
    finally:
        set_mode(model, "quant").train(was_training)
    for a in acts:
        if a.seen is not None:
            a.set_range(*a.seen)
            a.seen = None
    for m in model.modules():
        if isinstance(m, QConv2d):
            m.wq.init_from(m.weight)
    return model


def quant_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learned scales / ranges (for their own optimizer group)."""
    return [p for m in quant_modules(model) for p in m.parameters(recurse=False)]


def build_qat_model(state: dict[str, Tensor], meta: dict[str, Any]) -> nn.Module:
    """A QAT model from a checkpoint's state + metadata (as :func:`paragonsr.checkpoint.load_state_dict` returns
    them): the arch rebuilt, fused, converted, the learned values loaded strictly. Raises ValueError when the state
    does not fit."""
    from paragonsr.archs import build_arch

    name = meta.get("arch")
    if not name:
        raise ValueError("QAT checkpoint without arch metadata")
    model = build_arch(str(name), **dict(meta.get("arch_kwargs") or {}))
    if hasattr(model, "fuse_for_release"):
        cast(Any, model).fuse_for_release()
    in_ch = int(getattr(model, "in_ch", 3))
    prepare_qat(model, torch.rand(1, in_ch, 16, 16), quant_out=any(".aq_out." in k for k in state))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"QAT checkpoint does not fit {name}: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
        )
    return model.eval()


def load_qat_checkpoint(path: Any) -> tuple[nn.Module, nn.Module] | None:
    """(QAT model, its FP32 twin) from a QAT checkpoint, or None for any other checkpoint.

    The twin is the same arch in release (fused) form with the QAT-trained weights and no fake-quant: the model
    the INT8 file is gated against. Both in eval mode on the CPU. Raises ValueError / CheckpointError naming the
    file when it cannot be read or does not fit its arch."""
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import load_state_dict

    state, meta = load_state_dict(path)
    if not is_qat_state(state):
        return None
    try:
        qat = build_qat_model(state, meta)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    twin = build_arch(str(meta["arch"]), **dict(meta.get("arch_kwargs") or {}))
    if hasattr(twin, "fuse_for_release"):
        cast(Any, twin).fuse_for_release()
    twin.load_state_dict(fp32_state(state), strict=True)
    for m in (qat, twin):
        cast(Any, m).arch_name = meta["arch"]
        cast(Any, m).arch_kwargs = dict(meta.get("arch_kwargs") or {})
        cast(Any, m).checkpoint_meta = {**meta, "qat": True}
    return qat, twin.eval()
