"""One precision decision for every command: what the device does natively, and what runs for what was asked.

Training (``train.use_amp`` / ``amp_bf16`` / ``use_channels_last``), validation, ``paragonsr upscale`` /
``demo`` / ``eval`` (``--precision auto|fp32|bf16|fp16``) and the benches all go through :func:`resolve`, so a
config that asks for something this device only emulates runs at full speed instead, with ONE log line saying
what was asked, what runs and why (e.g. ``asked bf16 autocast, running fp32: this CPU has no native bf16
(AVX2)``). A slowdown trap is downgraded, never refused, so every shipped config runs on every CPU.

What counts as native:

* **CPU bf16**: AVX512-BF16 or AMX-BF16 in the CPU (the cpuinfo library bundled with torch, so it works off
  Linux too; ``/proc/cpuinfo`` when torch lacks the query), and neither ATen's kernels nor oneDNN capped below it:
  ``ATEN_CPU_CAPABILITY=avx2`` (ATen dispatch level, :func:`torch.backends.cpu.get_cpu_capability`) or
  ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's effective ISA, ``torch.ops.mkldnn._is_mkldnn_bf16_supported``) mean
  emulated bf16, i.e. about 2-20x slower than fp32 instead of ~2x faster. ``PARAGONSR_CPU_BF16=1`` / ``0``
  overrides the detection (for CPUs the checks misjudge, and for measurements).
* **CPU fp16**: never: autocast fp16 on a CPU runs ~100x slower than fp32 (no fused kernels), so fp16 on a CPU
  becomes bf16 where that is native, else fp32.
* **CUDA**: bf16 where ``torch.cuda.is_bf16_supported(including_emulation=False)``, fp16 always.
* **MPS**: fp16; bf16 is treated as not native (fp32 instead).

Memory layout: channels_last wherever it is the faster layout measured here: bf16 on CPU (oneDNN's bf16 convs
want NHWC), fp32 on CPU (``bench/train.py``, ParagonSR2 nano, batch 16, GT 128, one thread: the bare fp32
training step 1.47x faster with AVX-512 + AMX and 1.68x as AVX2; ``bench/infer.py``: the forward 1.5x on an AVX2
EPYC, issue 22), reduced precision on CUDA (tensor cores); NCHW for fp32 on CUDA and MPS.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BF16_ENV = "PARAGONSR_CPU_BF16"
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
# ATen dispatch levels (torch.backends.cpu.get_cpu_capability) at which bf16 kernels can be native on x86
_BF16_CAPABILITIES = ("AVX512",)

log = logging.getLogger("paragonsr")


@dataclass(frozen=True)
class CpuProbe:
    """What this CPU and this torch build report (see :func:`probe_cpu`); every field is mockable in tests."""

    capability: (
        str  # ATen dispatch level: "AVX512", "AVX2", "DEFAULT", "SVE256", ... (honours ATEN_CPU_CAPABILITY)
    )
    avx512_bf16: bool  # CPU instruction set flags
    amx_bf16: bool
    onednn_bf16: bool  # oneDNN's effective ISA has bf16 (honours ONEDNN_MAX_CPU_ISA)
    mkldnn: bool  # torch built with oneDNN
    x86: bool


def _proc_cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return set(next((line for line in fh if line.startswith("flags")), "").split())
    except OSError:
        return set()


@functools.lru_cache(maxsize=1)
def probe_cpu() -> CpuProbe:
    """Query this process's CPU once (never raises: a missing query reads as 'not native')."""
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # an old or unusual build: no dispatch level to report
        capability = "unknown"
    cpu: Any = getattr(torch, "cpu", None)
    try:
        avx512_bf16 = bool(cpu._is_avx512_bf16_supported())
        amx = bool(cpu._is_amx_tile_supported())
    except Exception:  # torch without the cpuinfo queries: read the Linux flags
        flags = _proc_cpuinfo_flags()
        avx512_bf16, amx = "avx512_bf16" in flags, "amx_bf16" in flags
    mkldnn = bool(torch.backends.mkldnn.is_available())
    try:
        onednn = mkldnn and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        onednn = False
    return CpuProbe(capability, avx512_bf16, amx, onednn, mkldnn, platform.machine().lower() in _X86)


def env_value(env: Mapping[str, str] | None = None) -> str:
    """The ``PARAGONSR_CPU_BF16`` override as set ('' when unset)."""
    return (os.environ if env is None else env).get(BF16_ENV, "").strip()


def cpu_bf16(probe: CpuProbe | None = None, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """(native bf16 on this CPU, why). ``PARAGONSR_CPU_BF16=1|0`` overrides; otherwise the instruction set,
    ATen's dispatch level and oneDNN's ISA must all allow it. Raises ValueError for another override value."""
    p = probe_cpu() if probe is None else probe
    forced = env_value(env)
    if forced:
        if forced not in ("0", "1"):
            raise ValueError(
                f"environment variable {BF16_ENV}={forced!r}: expected 1 (native bf16) or 0 (none)"
            )
        return (
            forced == "1",
            f"{BF16_ENV}={forced} says this CPU has {'native' if forced == '1' else 'no native'} bf16",
        )
    if not p.mkldnn:
        return False, "this torch is built without oneDNN, no native bf16"
    if not (p.avx512_bf16 or p.amx_bf16):
        return False, f"this CPU has no native bf16 ({p.capability}, no AVX512-BF16/AMX)"
    if p.x86 and p.capability not in _BF16_CAPABILITIES:
        return False, f"this CPU has no native bf16 ({p.capability}: ATEN_CPU_CAPABILITY caps ATen's kernels)"
    if not p.onednn_bf16:
        return (
            False,
            f"this CPU has no native bf16 ({p.capability}: ONEDNN_MAX_CPU_ISA caps oneDNN below bf16)",
        )
    return True, f"this CPU has native bf16 ({p.capability} + {'AMX' if p.amx_bf16 else 'AVX512-BF16'})"


@dataclass(frozen=True)
class Hardware:
    """What a device runs natively: ``bf16``/``fp16`` autocast, and a short ``label`` for logs and metadata."""

    device: str  # "cpu", "cuda", "mps"
    bf16: bool
    fp16: bool
    label: str  # e.g. "CPU AVX512 + AMX", "CPU AVX2", "CUDA NVIDIA H100 (sm_90)"
    why_not_bf16: str = ""
    capability: str = ""  # CPU: ATen dispatch level (AVX2, AVX512, ...); CUDA: sm_XY


def hardware(device: torch.device | str, probe: CpuProbe | None = None,
             env: Mapping[str, str] | None = None) -> Hardware:  # fmt: skip
    """Native reduced precisions of ``device`` (see the module docstring for the rules)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        bf16 = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        major, minor = torch.cuda.get_device_capability(dev)
        label = f"CUDA {torch.cuda.get_device_name(dev)} (sm_{major}{minor})"
        why = "" if bf16 else f"{label} has no native bf16"
        return Hardware("cuda", bf16, True, label, why, f"sm_{major}{minor}")
    if dev.type == "mps":
        return Hardware("mps", False, True, "MPS", "bf16 is not treated as native on MPS")
    p = probe_cpu() if probe is None else probe
    bf16, why = cpu_bf16(p, env)
    label = f"CPU {p.capability}" + (f" + {'AMX' if p.amx_bf16 else 'AVX512-BF16'}" if bf16 else "")
    if why.startswith(BF16_ENV):
        label += f" ({BF16_ENV}={env_value(env)})"
    return Hardware(dev.type, bf16, False, label, "" if bf16 else why, p.capability)


@dataclass(frozen=True)
class Precision:
    """A resolved decision: ``dtype`` (autocast dtype name, 'fp32' = no autocast) and ``channels_last``."""

    asked: str  # auto / fp32 / bf16 / fp16
    dtype: str  # fp32 / bf16 / fp16: what runs
    channels_last: bool
    device: str
    hardware: str  # Hardware.label
    reason: str  # why dtype differs from what was asked ("" when it does not, or asked 'auto')
    asked_channels_last: bool | None = None
    capability: str = ""  # Hardware.capability (CPU: ATen dispatch level)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.dtype == "fp32" else DTYPES[self.dtype]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast context of this decision (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=self.autocast_dtype)

    @property
    def downgraded(self) -> bool:
        return self.asked not in ("auto", self.dtype)

    def summary(self) -> str:
        """One line: what runs, and what was asked when it differs (the log line of every command)."""
        layout = "channels_last" if self.channels_last else "NCHW"
        amp = "autocast" if self.dtype != "fp32" else ""
        what = " ".join(s for s in (self.dtype, amp, layout) if s)
        if self.downgraded:
            return f"precision: asked {self.asked} autocast, running {self.dtype}: {self.reason} [{what}]"
        extra = f" (auto on {self.hardware})" if self.asked == "auto" else ""
        if self.asked_channels_last is not None and self.asked_channels_last != self.channels_last:
            extra += (
                f"; asked {'channels_last' if self.asked_channels_last else 'NCHW'}, {layout} is faster here"
            )
        return f"precision: {what}{extra}"

    def meta(self) -> dict[str, str]:
        """String fields for checkpoint metadata / training state: asked, resolved, layout, reason, hardware."""
        d = {k: "" if v is None else str(v) for k, v in asdict(self).items()}
        return {f"precision_{k}": v for k, v in d.items()}


def faster_channels_last(dtype: str, hw: Hardware) -> bool:
    """The faster layout for ``dtype`` on ``hw`` (measured; see the module docstring)."""
    if hw.device == "cpu":
        return True
    return hw.device == "cuda" and dtype != "fp32"


def resolve(asked: str, device: torch.device | str = "cpu", channels_last: bool | None = None,
            hw: Hardware | None = None, follow_layout: bool = True) -> Precision:  # fmt: skip
    """Map ``asked`` (auto / fp32 / bf16 / fp16) to what runs on ``device``.

    ``auto``: bf16 where native (CPU with AVX512-BF16/AMX, CUDA with bf16), else fp16 on CUDA/MPS, else fp32.
    bf16 / fp16 where the device only emulates them become the native alternative (CPU: bf16 if native, else fp32;
    CUDA without bf16: fp16) with the reason in ``reason``; never an error. ``channels_last`` None = the faster
    layout; True/False = asked: kept unless ``follow_layout`` (the training option, a speed hint) lets the
    hardware decide. Raises ValueError for an unknown ``asked``.
    """
    if asked not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {asked!r}")
    dev = torch.device(device)
    hw = hardware(dev) if hw is None else hw
    dtype, reason = asked, ""
    if asked == "auto":
        dtype = "bf16" if hw.bf16 else ("fp16" if hw.fp16 else "fp32")
    elif asked == "bf16" and not hw.bf16:
        dtype = "fp16" if hw.fp16 and hw.device == "cuda" else "fp32"
        reason = hw.why_not_bf16
    elif asked == "fp16" and not hw.fp16:
        dtype = "bf16" if hw.bf16 else "fp32"
        reason = f"fp16 autocast on the {hw.device.upper()} has no fast kernels (~100x slower than fp32)"
        reason += "; bf16 is native here" if hw.bf16 else f" and {hw.why_not_bf16}"
    layout = faster_channels_last(dtype, hw)
    if channels_last is not None and not follow_layout:
        layout = channels_last
    return Precision(asked, dtype, layout, dev.type, hw.label, reason, channels_last, hw.capability)


def asked_by_train_options(use_amp: bool, amp_bf16: bool) -> str:
    """What ``train.use_amp`` / ``train.amp_bf16`` ask: fp32, bf16 or fp16 (traiNNer-redux: use_amp alone)."""
    if not use_amp:
        return "fp32"
    return "bf16" if amp_bf16 else "fp16"


def log_decision(p: Precision, what: str, logger: logging.Logger | None = None) -> None:
    """Log ``p.summary()`` once, prefixed by the command part it is for; WARNING when downgraded."""
    lg = logger or log
    (lg.warning if p.downgraded else lg.info)(f"{what} {p.summary()}")


__all__ = [
    "BF16_ENV",
    "DTYPES",
    "PRECISIONS",
    "CpuProbe",
    "Hardware",
    "Precision",
    "asked_by_train_options",
    "cpu_bf16",
    "faster_channels_last",
    "hardware",
    "log_decision",
    "probe_cpu",
    "resolve",
]
