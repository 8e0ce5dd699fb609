"""Inference backends: one protocol for torch models, classic resamplers and (in ``onnx_backend``) ONNX Runtime.

A backend takes ``Tensor[B, in_ch, h, w]`` float32 on the CPU in [0, 1] and returns
``Tensor[B, out_ch, h·s, w·s]`` float32 on the CPU; tiling, alpha, grayscale and bit depth are the caller's job
(``paragonsr.infer.upscale``), so every backend gets them the same way.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from paragonsr.precision import DTYPES as _DTYPES
from paragonsr.precision import PRECISIONS, hardware, resolve


@runtime_checkable
class Backend(Protocol):
    """What ``upscale_image`` needs. ``in_ch``/``out_ch`` None = any channel count (passed through)."""

    # Read-only members, so implementations may narrow them (an int scale, a fixed channel count).
    @property
    def scale(self) -> float: ...
    @property
    def in_ch(self) -> int | None: ...
    @property
    def out_ch(self) -> int | None: ...

    def __call__(self, x: Tensor) -> Tensor: ...


def cpu_has_native_bf16() -> bool:
    """True on CPUs with native bf16 (AVX512-BF16 or AMX, not capped by ``ATEN_CPU_CAPABILITY`` /
    ``ONEDNN_MAX_CPU_ISA``; ``PARAGONSR_CPU_BF16`` overrides): :func:`paragonsr.precision.hardware`."""
    return hardware("cpu").bf16


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available (use --device cpu)")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast dtype that runs for ``precision`` on ``device`` (fp32 / bf16 / fp16):
    :func:`paragonsr.precision.resolve`. ``auto``: bf16 where native, else fp16 on CUDA, else fp32; a
    reduced precision the device only emulates (fp16 on a CPU, bf16 without AVX512-BF16/AMX) is downgraded with a
    warning, never refused. Raises ValueError for an unknown name."""
    decision = resolve(precision, device)
    if decision.downgraded:
        warnings.warn(decision.summary(), stacklevel=2)
    return decision.dtype


class TorchBackend:
    """Run a torch super-resolution model (anything with ``scale``/``in_ch``/``out_ch`` attributes).

    Reduced precision uses autocast (weights stay fp32, so precision-sensitive ops stay accurate) and
    channels_last memory format. If a reduced-precision result is not finite (fp16 overflow), the batch is
    recomputed in fp32 once and the backend stays in fp32 from then on.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        # one decision for every command (paragonsr.precision): dtype and layout from what the device runs natively
        self.decision = resolve(precision, self.device, channels_last, follow_layout=False)
        if self.decision.downgraded:
            warnings.warn(self.decision.summary(), stacklevel=2)
        self.precision = self.decision.dtype
        self.channels_last = self.decision.channels_last
        missing = [a for a in ("scale", "in_ch", "out_ch") if not hasattr(model, a)]
        if missing:
            raise ValueError(
                f"{type(model).__name__} lacks {missing}; models must expose scale, in_ch, out_ch"
            )
        attrs: Any = model  # the attributes checked above (nn.Module types them as Tensor | Module)
        self.scale: int = int(attrs.scale)
        self.in_ch: int | None = int(attrs.in_ch)
        self.out_ch: int | None = int(attrs.out_ch)
        from paragonsr.tiling import needs_of

        # what the tiler pads inputs to: the model's own ``size_needs`` (SizeNeeds) when it declares one
        self.size_needs = needs_of(model, self.scale)
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])

    def _run(self, x: Tensor) -> Tensor:
        x = x.to(self.device, torch.float32, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            y = self.model(x)
        return y.float()

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected input of shape [B, {self.in_ch}, H, W], got {tuple(x.shape)}")
        y = self._run(x)
        if self.precision != "fp32" and not bool(torch.isfinite(y).all()):
            warnings.warn(
                f"{self.precision} produced non-finite values; switching this model to fp32", stacklevel=2
            )
            self.precision, self.channels_last = "fp32", False
            self.model = self.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            y = self._run(x)
        y = y.to("cpu")
        # channels_last output stays so: the tiler accumulates into a channels_last (HWC) image and an untiled
        # result is viewed as HWC, so converting to NCHW here would be one more copy of every output pixel.
        if not (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last)):
            y = y.contiguous()
        return y

    def __repr__(self) -> str:
        name = getattr(self.model, "arch_name", type(self.model).__name__)
        cl = "+channels_last" if self.channels_last else ""
        return f"TorchBackend({name}, x{self.scale}, {self.device}, {self.precision}{cl})"


class ResamplerBackend:
    """Classic resizing (Magic Kernel Sharp 2021, bicubic, lanczos3, ...) through the same upscale pipeline.

    Channel-agnostic (``in_ch``/``out_ch`` None) and any positive scale, including non-integer ones.
    """

    def __init__(self, kernel: str = "magic_sharp_2021", scale: float = 2) -> None:
        from paragonsr.ops.resample import canonical_kernel

        self.kernel = canonical_kernel(kernel.replace("-", "_"))
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = int(scale) if float(scale).is_integer() else float(scale)
        self.in_ch: int | None = None
        self.out_ch: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        from paragonsr.ops.resample import resize

        h, w = x.shape[-2:]
        size = (round(h * self.scale), round(w * self.scale))
        return resize(x.to(torch.float32), size=size, kernel=self.kernel).contiguous()

    def __repr__(self) -> str:
        return f"ResamplerBackend({self.kernel}, x{self.scale})"


def load_backend(
    model_path: str | os.PathLike[str],
    backend: str = "torch",
    device: str = "auto",
    precision: str = "auto",
    provider: str | None = None,
    arch: str | None = None,
    scale_hint: int | None = None,
    size_multiple: int | None = None,
) -> Backend:
    """Backend for a model file: ``.onnx`` (or ``backend="onnx"``) -> OnnxBackend, ``.param`` (or
    ``backend="ncnn"``) -> NcnnBackend (CPU), else a torch checkpoint.

    ``scale_hint`` fills in the scale for checkpoints whose metadata and weights do not record it.
    ``size_multiple`` (``--size-multiple``): H and W the model needs divisible by; inputs are padded up to it
    and the output cropped back (ONNX files without it are probed; torch archs declare their own).
    """
    path = str(model_path)
    if backend == "ncnn" or path.lower().endswith(".param"):
        if (
            not path.lower().endswith(".param")
            or precision in ("bf16", "fp16")
            or str(device) not in ("auto", "cpu")
        ):
            raise ValueError(
                f"{path}: the NCNN backend takes a .param file (its .bin beside it) and runs on the CPU at the "
                "storage it was exported with (drop --device/--precision)"
            )
        from paragonsr.infer.ncnn_backend import NcnnBackend  # lazy: ncnn is optional

        return NcnnBackend(path)
    # backend="auto": an .onnx file runs in ONNX Runtime; a torch checkpoint on the CPU with whichever of torch
    # (NCHW or channels_last) and ONNX Runtime measured fastest for this model on this machine (measured once,
    # cached: paragonsr.infer.calibrate); the backend then carries the measured ``tile_rates`` for the tiler.
    if backend == "auto" and not path.lower().endswith(".onnx"):
        from paragonsr.infer.auto import auto_backend

        return auto_backend(path, device, precision, arch=arch, scale_hint=scale_hint)
    if backend == "onnx" or path.lower().endswith(".onnx"):
        if not path.lower().endswith(".onnx"):
            raise ValueError(
                f"{path}: --backend onnx needs an .onnx model file (export one with 'paragonsr export')"
            )
        from paragonsr.infer.onnx_backend import OnnxBackend  # lazy: onnxruntime is optional

        # The torch-only options must not be silently ignored: --device picks the execution provider, and the
        # precision of an ONNX model is fixed by the exported file (fp32/fp16/int8).
        if precision in ("bf16", "fp16"):
            raise ValueError(
                f"{path}: --precision {precision} applies to torch models only; an ONNX file runs at the "
                "precision it was exported with (export an _fp16.onnx for half precision)"
            )
        if provider is None and str(device) != "auto":
            dev = torch.device(device)
            if dev.type not in ("cpu", "cuda") or (dev.type == "cuda" and dev.index not in (None, 0)):
                raise ValueError(
                    f"{path}: --device {device} has no ONNX Runtime equivalent here; choose the execution "
                    "provider with --provider (cpu, cuda, tensorrt, directml, ...)"
                )
            provider = dev.type
        return OnnxBackend(path, provider=provider, size_multiple=size_multiple)
    if backend != "torch":
        raise ValueError(f"unknown backend '{backend}' (use torch, onnx or ncnn)")
    from paragonsr.checkpoint import load_model

    model = load_model(path, arch=arch, device="cpu", scale_hint=scale_hint)
    torch_backend = TorchBackend(model, device=device, precision=precision)
    if size_multiple is not None and size_multiple > 1:
        import dataclasses
        import math

        needs = torch_backend.size_needs
        torch_backend.size_needs = dataclasses.replace(
            needs, multiple=math.lcm(needs.multiple, size_multiple)
        )
    return torch_backend


__all__ = [
    "PRECISIONS",
    "Backend",
    "ResamplerBackend",
    "TorchBackend",
    "cpu_has_native_bf16",
    "load_backend",
    "resolve_device",
    "resolve_precision",
]
