"""What the benches compare against: this CPU's measured conv peak, a network's FLOPs, and which CPU kind runs.

Shared by ``bench/train.py`` (training step GFLOP/s) and ``bench/infer.py`` (forward GFLOP/s); import it with the
``bench`` folder on ``sys.path`` (the scripts put it there).

* :func:`conv_peak`: GFLOP/s of one large 64→64 3×3 convolution (16×64×128×128), forward only or forward +
  backward (input and weight gradients), in a dtype and memory format: what oneDNN reaches on this CPU, i.e. the
  practical limit for a network made of 3×3 convs.
* :func:`network_flops`: FLOPs of one forward (``backward=False``) or forward + backward of a network
  (``torch.utils.flop_counter``; ParagonSR2's upsampler counted in its filter form, see the function).
* :func:`cpu_kind`: one line naming the CPU kind this process runs as (``paragonsr.precision``), with the
  environment variables that emulate the other kind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Run this process as a CPU without native bf16 (AVX2 + FMA), on a CPU that has it: ATen's kernels and oneDNN's
# ISA capped (both are read at start-up, so they must be set in the environment of a fresh process).
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def best_cpu_seconds(
    fn: Callable[[], None], reps: int, clock: Callable[[], float] = time.process_time
) -> float:
    """Fastest of ``reps`` timed calls of ``fn`` in process CPU seconds (or ``clock``), after one untimed
    warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        c0 = clock()
        fn()
        best = min(best, clock() - c0)
    return best


def conv_peak(
    dtype: torch.dtype,
    fmt: torch.memory_format,
    reps: int = 3,
    backward: bool = True,
    batch: int = 16,
    clock: Callable[[], float] = time.process_time,
) -> float:
    """GFLOP/s of a 64→64 3×3 conv on ``batch``×64×128×128, forward + backward (input and weight gradients) or
    forward only (``backward=False``), in process CPU time (sums threads: compare at one thread) or ``clock``."""
    x = torch.randn(batch, 64, 128, 128).to(dtype).contiguous(memory_format=fmt).requires_grad_(backward)
    w = torch.randn(64, 64, 3, 3).to(dtype).contiguous(memory_format=fmt).requires_grad_(backward)
    flops = (3 if backward else 1) * 2 * batch * 64 * 64 * 9 * 128 * 128

    def run() -> None:
        if not backward:
            with torch.inference_mode():
                F.conv2d(x, w, padding=1)
            return
        y = F.conv2d(x, w, padding=1)
        y.backward(torch.ones_like(y))

    return flops / best_cpu_seconds(run, reps, clock) / 1e9


def network_flops(net: nn.Module, x: torch.Tensor, backward: bool = True) -> int:
    """FLOPs of ``net(x)`` (``backward``: plus its backward, in training mode; else one eval-mode forward).

    ParagonSR2's feature upsampler is counted in its filter form: its matrix form on CPU spends more, mostly on
    zeros, and is not the network's work."""
    import paragonsr.archs.mks_upsample as mks_upsample

    side = getattr(mks_upsample, "MATRIX_PATH_MAX", 0)
    mks_upsample.MATRIX_PATH_MAX = 0
    try:
        with FlopCounterMode(display=False) as fc:
            if backward:
                net.train()(x).float().abs().mean().backward()
            else:
                with torch.no_grad():
                    net(x)
    finally:
        mks_upsample.MATRIX_PATH_MAX = side
    return fc.get_total_flops()


def cpu_kind() -> str:
    """E.g. ``CPU AVX512 + AMX: native bf16`` or ``CPU AVX2: fp32 (this CPU has no native bf16 ...)``, plus
    ``[emulated: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2]`` when the caps are set."""
    from paragonsr.precision import hardware

    hw = hardware("cpu")
    line = f"{hw.label}: " + ("native bf16" if hw.bf16 else f"fp32 ({hw.why_not_bf16})")
    caps = [f"{k}={os.environ[k]}" for k in AVX2_ENV if os.environ.get(k)]
    return line + (f" [emulated: {' '.join(caps)}]" if caps else "")


def native_bf16() -> bool:
    """Whether this process runs bf16 natively (``paragonsr.precision``: flags, caps and override)."""
    from paragonsr.precision import hardware

    return hardware("cpu").bf16
