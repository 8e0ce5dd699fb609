"""``load_backend(..., backend="auto")``: the measured fastest backend for a torch checkpoint on this CPU.

See :mod:`paragonsr.infer.calibrate` for what is measured and cached. Off the CPU (CUDA, MPS) nothing is
measured: the torch backend runs as ``backend="torch"`` would.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from paragonsr.infer.backends import Backend, TorchBackend, resolve_device, resolve_precision
from paragonsr.infer.calibrate import (
    Measure,
    cache_key,
    load_cached,
    load_per_cpu,
    run_calibration,
    should_remeasure,
    store,
)
from paragonsr.infer.choice import ONNX
from paragonsr.infer.onnx_cache import cached_onnx, can_export, file_sha256, onnx_available
from paragonsr.tiling.memory import DEFAULT_FEAT_ESTIMATE, auto_tile_size, cpu_memory_budget

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def memory_cap(scale: int, budget_bytes: int | None = None) -> int:
    """The largest tile side (LR px) the CPU activation budget allows for a large image."""
    budget = budget_bytes or cpu_memory_budget()
    side = auto_tile_size(1 << 16, 1 << 16, scale, budget, feat=DEFAULT_FEAT_ESTIMATE)
    assert side is not None  # a 65536² image never fits a budget
    return side


def candidate_factories(
    model: nn.Module, precision: str, pinned: bool, model_sha256: str, threads: int
) -> tuple[dict[str, Callable[[], Backend]], list[str]]:
    """name -> backend factory for every candidate, and why any was left out. ``pinned``: the user asked for a
    precision, so ONNX Runtime (fp32 only) does not compete."""

    def torch_backend(channels_last: bool) -> Callable[[], Backend]:
        # each candidate gets its own copy: TorchBackend converts its model's memory format in place
        return lambda: TorchBackend(copy.deepcopy(model), "cpu", precision, channels_last=channels_last)

    factories: dict[str, Callable[[], Backend]] = {
        f"torch:{precision}:nchw": torch_backend(False),
        f"torch:{precision}:cl": torch_backend(True),
    }
    notes: list[str] = []
    why_not = onnx_available()
    if pinned:
        notes.append(f"ONNX Runtime not compared: --precision {precision} was asked for (ONNX runs fp32)")
    elif why_not:
        notes.append(why_not)
    elif not can_export(model_sha256):
        notes.append(
            "ONNX Runtime not compared: no ONNX exporter registered (paragonsr upscale registers one)"
        )
    else:

        def onnx_backend() -> Backend:
            from paragonsr.infer.onnx_backend import OnnxBackend, make_session

            backend = OnnxBackend(cached_onnx(model, model_sha256), provider="cpu")
            # the same thread count as torch, so the comparison (and the run) is like for like
            backend.session = make_session(backend.path, "cpu", threads=threads)
            return backend

        factories[f"{ONNX}:fp32"] = onnx_backend
    return factories, notes


def _drop_unfaithful(built: dict[str, Any], model: nn.Module, in_ch: int, notes: list[str]) -> None:
    """Leave out ONNX Runtime candidates whose output on a small random input differs from the torch fp32 model
    by more than 1/255 (an export that does not reproduce the model must never win on speed)."""
    onnx_names = [n for n in built if n.startswith(ONNX)]
    if not onnx_names:
        return
    x = torch.rand(1, in_ch, 40, 44, generator=torch.Generator().manual_seed(0))
    ref = TorchBackend(copy.deepcopy(model), "cpu", "fp32", channels_last=False)(x)
    for name in onnx_names:
        try:
            diff = float((built[name](x) - ref).abs().max())
        except Exception as exc:
            diff, why = float("nan"), str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            why = f"its output differs from torch fp32 by {diff * 255:.2f}/255"
        if not diff <= 1.0 / 255:
            del built[name]
            notes.append(f"{name} not compared: {why}")


def auto_backend(
    path: str,
    device: str | torch.device = "auto",
    precision: str = "auto",
    *,
    arch: str | None = None,
    scale_hint: int | None = None,
    measure: Measure | None = None,
    log: Log = _stderr,
    budget_bytes: int | None = None,
) -> Backend:
    """The fastest backend for the torch checkpoint at ``path`` on this machine (see the module doc).

    The returned backend has ``tile_rates`` (output MP/s per tile side, for the tiler) and ``calibration``
    (:class:`~paragonsr.infer.calibrate.Calibration`). ``measure`` replaces the timing (tests); ``log`` gets one
    line when a calibration is measured.
    """
    from paragonsr.checkpoint import load_model

    model = load_model(path, arch=arch, device="cpu", scale_hint=scale_hint)
    dev = resolve_device(device)
    if dev.type != "cpu":
        return TorchBackend(model, device=dev, precision=precision)
    resolved = resolve_precision(precision, dev)
    threads = torch.get_num_threads()
    sha = file_sha256(path)
    factories, notes = candidate_factories(model, resolved, precision != "auto", sha, threads)
    key = cache_key(sha, resolved + ("" if precision == "auto" else "!"), threads)
    calib = load_cached(key)
    if calib is None or calib.choice not in factories or should_remeasure(calib, load_per_cpu()):
        log("calibrating backend and tile size for this model and CPU (once; cached)...")
        built: dict[str, Any] = {}
        for name, make in factories.items():
            try:
                built[name] = make()
            except Exception as exc:  # e.g. the ONNX export fails for an exotic model: torch still runs
                notes.append(
                    f"{name} not compared: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                )
        in_ch = int(getattr(model, "in_ch", 3))
        scale = int(getattr(model, "scale", 1))
        _drop_unfaithful(built, model, in_ch, notes)
        kwargs: dict[str, Any] = {"notes": notes} | ({"measure": measure} if measure is not None else {})
        calib = run_calibration(built, in_ch, memory_cap(scale, budget_bytes), **kwargs)
        store(key, calib)
        log(calib.summary())
        backend = built[calib.choice]
    else:
        backend = factories[calib.choice]()
    backend_any: Any = backend
    backend_any.tile_rates = dict(calib.tile_rates)
    backend_any.calibration = calib
    return backend


__all__ = ["auto_backend", "candidate_factories", "memory_cap"]
