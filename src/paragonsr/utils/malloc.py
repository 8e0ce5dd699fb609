"""Keep large tensor buffers in the heap instead of fresh ``mmap`` pages (glibc only).

Why: glibc serves every allocation above its mmap threshold with a fresh ``mmap`` and hands the memory back with
``munmap``/trim on free. A conv net on the CPU allocates and frees feature maps of a few to tens of MB per layer,
so each forward pass page-faults its whole working set again and the kernel zeroes every page. On the 2-core VMs
this project runs on that cost more time than the convolutions themselves (``bench/infer.py --no-malloc-tuning``
shows the difference side by side). PyTorch's own advice for CPU inference is jemalloc/tcmalloc via
``LD_PRELOAD``; this is the zero-install equivalent: raise glibc's mmap threshold to its maximum and stop trimming,
so freed buffers are reused. The price is that the process keeps its peak heap until it exits, which is what a
batch upscaler or a training run wants anyway.

Nothing is changed when the user already chose (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, or a preloaded
allocator), when ``PARAGONSR_MALLOC_TUNING=0``, or on a non-glibc platform.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit builds.
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
TRIM_THRESHOLD = 1 << 30  # only give memory back once more than 1 GiB at the top of the heap is free

_state: dict[str, str] = {}


def _user_choice() -> str | None:
    """Why the allocator must be left alone, or None."""
    if os.environ.get("PARAGONSR_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return "PARAGONSR_MALLOC_TUNING=0"
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        if os.environ.get(var):
            return f"{var} is set"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return "an allocator is preloaded (LD_PRELOAD)"
    return None


def tune_malloc() -> str:
    """Apply the heap settings once per process. Returns what happened: ``"tuned"`` or why not (idempotent)."""
    if "result" in _state:
        return _state["result"]
    reason = _user_choice()
    if reason is None and not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        reason = "not glibc"
    if reason is None:
        try:
            libc = ctypes.CDLL(None)
            ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            # Buffers above the 32 MiB cap (HR feature maps, oneDNN reorders) would still be mmapped: serve them
            # from the heap too. glibc still falls back to mmap when the heap cannot grow.
            ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and ok
            ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
            reason = "tuned" if ok else "mallopt refused"
        except (OSError, AttributeError) as exc:  # no mallopt symbol: some other libc after all
            reason = f"mallopt unavailable ({exc})"
    _state["result"] = reason
    return reason


def trim_heap() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim(0)``, which also releases free pages in
    the middle of the heap), whether or not :func:`tune_malloc` ran. For the end of a large piece of work whose
    buffers will not be reused soon, e.g. when an upscaled image's tiles are done and only its result is left to
    encode. True when it ran; False off glibc."""
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        return False
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


__all__ = ["trim_heap", "tune_malloc"]
