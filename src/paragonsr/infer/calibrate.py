"""``--backend auto``: measure once per model and machine which backend and layout run fastest, and at what tile size.

A short calibration (a few seconds, once) times each candidate on the same random ``256×256`` LR input, interleaved
and best-of-N so a busy machine disturbs every candidate alike:

- ``torch:<p>:nchw`` and ``torch:<p>:cl`` (channels_last), ``p`` the precision
  :func:`~paragonsr.infer.backends.resolve_precision` decides;
- ``onnx:fp32``: the same weights exported once to ONNX (:mod:`paragonsr.infer.onnx_cache`) and run by ONNX
  Runtime, when ``onnxruntime``/``onnx`` are installed and no precision was pinned (an ONNX file runs in fp32).

The winner (:func:`~paragonsr.infer.choice.choose_backend`) is then timed at a few tile sides up to the memory cap,
which lets the tiler pick tiles for throughput as well as memory (:func:`~paragonsr.infer.choice.choose_tile`).
Results are cached in ``<cache>/calibration.json`` keyed by the model file's sha256 and a machine key (CPU model
and ISA flags, ``ATEN_CPU_CAPABILITY``/``ONEDNN_MAX_CPU_ISA``, thread count, torch and onnxruntime versions);
``<cache>`` is ``PARAGONSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/paragonsr``, else ``~/.cache/paragonsr``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from paragonsr.infer.choice import choose_backend
from paragonsr.infer.onnx_backend import SESSION_SETTINGS

Forward = Callable[[Tensor], Tensor]
# measure(candidates, side, in_ch, repeats) -> output MP/s per candidate name
Measure = Callable[[Mapping[str, Forward], int, int, int], dict[str, float]]

CALIBRATION_SIDE = 256  # LR px: the size the backends are compared at (the reference forward)
TILE_SIDES = (128, 256, 384, 512)
CACHE_FILE = "calibration.json"
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "avx_vnni", "asimd")


def cache_dir() -> Path:
    """``PARAGONSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/paragonsr``, else ``~/.cache/paragonsr`` (not created)."""
    env = os.environ.get("PARAGONSR_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paragonsr"


def machine_key(threads: int | None = None) -> str:
    """What a calibration depends on besides the model: CPU model and ISA flags, the ISA caps in the environment,
    thread count, torch and onnxruntime versions, the ONNX Runtime session settings. A short hash of those."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not model and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif not flags and line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    flags = ",".join(f for f in _FLAGS if f in have) or "-"
                if model and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "-"
    parts = [
        model,
        flags,
        os.environ.get("ATEN_CPU_CAPABILITY", ""),
        os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        str(threads or torch.get_num_threads()),
        torch.__version__,
        ort,
        SESSION_SETTINGS,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass
class Calibration:
    """One model's measurements on one machine.

    Attributes:
        choice: the winning candidate (``torch:fp32:cl``, ``onnx:fp32``, ...).
        rates: output MP/s of every candidate at :data:`CALIBRATION_SIDE` (0 = could not run).
        tile_rates: output MP/s of the winner per tile side (LR px).
        notes: why a candidate was left out (e.g. onnxruntime not installed).
        load: the 1-minute load average per CPU while it was measured (-1 = unknown). Torch's thread pool
            suffers more from a busy machine than ONNX Runtime's, so a busy measurement is redone once the
            load has halved (:func:`should_remeasure`).
    """

    choice: str
    rates: dict[str, float]
    tile_rates: dict[int, float]
    notes: list[str] = field(default_factory=list)
    load: float = -1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tile_rates"] = {str(k): v for k, v in self.tile_rates.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """Raises KeyError/TypeError/ValueError on a malformed entry."""
        return cls(
            choice=str(data["choice"]),
            rates={str(k): float(v) for k, v in data["rates"].items()},
            tile_rates={int(k): float(v) for k, v in data["tile_rates"].items()},
            notes=[str(n) for n in data.get("notes", [])],
            load=float(data.get("load", -1.0)),
        )

    def summary(self) -> str:
        """One line: the choice and what it was measured against."""
        others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.rates.items()) if k != self.choice)
        tiles = ", ".join(f"{k}px {v:.2f}" for k, v in sorted(self.tile_rates.items()))
        if tiles and self.load > BUSY_LOAD:
            tiles += " (MP per CPU-second per thread)"
        text = f"backend {self.choice} {self.rates.get(self.choice, 0):.2f} MP/s"
        text += (f" (vs {others})" if others else "") + (f"; tiles: {tiles}" if tiles else "")
        if self.load > BUSY_LOAD:
            text += f"; measured on a busy machine (load {self.load:.1f} per CPU): measured again when the load halves"
        return text


BUSY_LOAD = 1.0  # load average per CPU above which a calibration counts as measured on a busy machine


def load_per_cpu() -> float:
    """The 1-minute load average divided by the CPU count; -1 where the OS does not report one."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except (OSError, AttributeError):
        return -1.0


def should_remeasure(calib: Calibration, load_now: float) -> bool:
    """True when ``calib`` was measured on a busy machine (load per CPU > :data:`BUSY_LOAD`) and the load is now
    less than half of what it was then (each re-measurement records the new load, so a machine whose load keeps
    changing is re-measured at most about log2(load) times)."""
    return calib.load > BUSY_LOAD and 0.0 <= load_now < calib.load / 2


def cpu_seconds_per_thread() -> float:
    """This process's CPU time (user + system, every thread) divided by torch's thread count: on a machine busy
    with other jobs, the work a forward pass costs, which its wall time no longer shows."""
    return time.process_time() / max(1, torch.get_num_threads())


def measure_rates(
    candidates: Mapping[str, Forward],
    side: int,
    in_ch: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Output MP/s of each candidate on one random ``1×in_ch×side×side`` input: one warm-up call each, then
    ``repeats`` interleaved rounds, best time kept (by ``clock``: wall time, or e.g.
    :func:`cpu_seconds_per_thread`). A candidate that raises gets rate 0."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, in_ch, side, side, generator=gen)
    best: dict[str, float] = {}
    pixels: dict[str, int] = {}
    alive = dict(candidates)
    for name, fn in list(alive.items()):
        try:
            pixels[name] = int(fn(x).shape[-2:].numel())
            best[name] = float("inf")
        except Exception:  # a candidate that cannot run simply loses
            del alive[name]
    for _ in range(repeats):
        for name, fn in alive.items():
            t = clock()
            fn(x)
            best[name] = min(best[name], max(clock() - t, 1e-9))
    return {name: (pixels[name] / 1e6 / best[name] if name in alive else 0.0) for name in candidates}


def run_calibration(
    candidates: Mapping[str, Forward],
    in_ch: int,
    max_side: int,
    *,
    measure: Measure = measure_rates,
    repeats: int = 3,
    sides: Sequence[int] = TILE_SIDES,
    notes: Sequence[str] = (),
) -> Calibration:
    """Compare ``candidates`` at :data:`CALIBRATION_SIDE`, pick one (:func:`choose_backend`), then time it at every
    side of ``sides`` below ``max_side`` and at ``max_side`` itself (the memory cap). ``measure`` is injectable
    for tests.

    On a busy machine (load per CPU above :data:`BUSY_LOAD`) the tile sides of the chosen backend are compared by
    CPU time per thread (:func:`cpu_seconds_per_thread`), not wall time: one backend's threads behave alike at
    every side, and under load the wall time of a short run mostly measures the other jobs (on the project's
    2-core machine at load 10 it made 128 px tiles look 2.5x faster than 360 px ones, which cost 30 % more CPU
    time per image for the overlaps they recompute)."""
    rates = measure(candidates, min(CALIBRATION_SIDE, max_side), in_ch, repeats)
    choice = choose_backend(rates)
    tile_measure = measure
    if measure is measure_rates and load_per_cpu() > BUSY_LOAD:
        tile_measure = functools.partial(measure_rates, clock=cpu_seconds_per_thread)
    tile_rates: dict[int, float] = {}
    for side in sorted({s for s in sides if s < max_side} | {max_side}):
        rate = tile_measure({choice: candidates[choice]}, side, in_ch, max(1, repeats - 1))[choice]
        if rate > 0:
            tile_rates[side] = rate
    return Calibration(choice, rates, tile_rates, list(notes), load=load_per_cpu())


def _cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def cache_key(model_sha256: str, precision: str, threads: int | None = None) -> str:
    return f"{model_sha256}:{precision}:{machine_key(threads)}"


def load_cached(key: str) -> Calibration | None:
    """The cached calibration for ``key``, or None (no cache, no entry, or an unreadable one)."""
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
        return Calibration.from_json(data[key])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store(key: str, calib: Calibration) -> Path | None:
    """Add ``calib`` under ``key`` to the cache file (atomic rewrite); the path, or None if it cannot be written
    (a read-only home is not an error: the next run measures again)."""
    from paragonsr.utils.atomic import atomic_write_text

    path = _cache_path()
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = calib.to_json()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
        return path
    except OSError:
        return None


__all__ = [
    "BUSY_LOAD",
    "CALIBRATION_SIDE",
    "TILE_SIDES",
    "Calibration",
    "cache_dir",
    "cache_key",
    "cpu_seconds_per_thread",
    "load_cached",
    "load_per_cpu",
    "machine_key",
    "measure_rates",
    "run_calibration",
    "should_remeasure",
    "store",
]
