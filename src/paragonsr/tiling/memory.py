"""Memory side of tiling: how large a tile may be on the CPU, and whether an error was an out-of-memory."""

from __future__ import annotations

import math
import os

import torch

from paragonsr.tiling.geometry import MIN_TILE

DEFAULT_CPU_BUDGET_MB = 128
# Activation bytes per LR pixel ≈ 4·4·feat·scale² (see auto_tile_size); feat 16 matches what the default
# ParagonSR2 nano really peaks at in bf16 (≈ 1 kB per LR pixel at x2, measured by RSS).
DEFAULT_FEAT_ESTIMATE = 16


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory or a failed CPU allocation (both surface as RuntimeError subclasses)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "not enough memory" in msg
    )


def available_memory() -> int:
    """Bytes the OS could give us now (``MemAvailable``), else the physical RAM, else 8 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def cpu_memory_budget() -> int:
    """Bytes a tile's activations may use on the CPU: ``PARAGONSR_CPU_BUDGET_MB``, else a quarter of the available
    memory capped at ``DEFAULT_CPU_BUDGET_MB`` (128 MiB: ~360 px tiles for a photo at x2; larger tiles save < 20 %
    of the compute, while every extra MiB adds to the process peak)."""
    env = os.environ.get("PARAGONSR_CPU_BUDGET_MB")
    if env:
        return int(float(env) * 2**20)
    return int(min(available_memory() // 4, DEFAULT_CPU_BUDGET_MB * 2**20))


def auto_tile_size(h: int, w: int, scale: int, budget_bytes: int, feat: int = 64) -> int | None:
    """Largest tile side (multiple of 8, at least 64 px) whose activations fit ``budget_bytes``; None = the whole
    ``h``×``w`` image fits.

    Estimate per LR pixel: ~4 live fp32 feature maps of ``feat`` channels at output resolution (the HR head).
    """
    per_px = 4 * 4 * feat * scale * scale
    max_px = budget_bytes // per_px
    if h * w <= max_px:
        return None
    side = int(math.sqrt(max_px)) // 8 * 8
    return max(MIN_TILE * 2, side)


__all__ = [
    "DEFAULT_CPU_BUDGET_MB",
    "DEFAULT_FEAT_ESTIMATE",
    "auto_tile_size",
    "available_memory",
    "cpu_memory_budget",
    "is_oom",
]
