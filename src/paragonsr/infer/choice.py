"""The rule that turns measured throughputs into the backend and layout ``paragonsr upscale --backend auto`` runs
with: a pure function of measurements (no timing in here), tested with made-up numbers. The tile-size rule is
:func:`paragonsr.tiling.throughput.choose_tile`.
"""

from __future__ import annotations

from collections.abc import Mapping

ORT_MARGIN = 0.05  # ONNX Runtime must be > 5 % faster than the best torch candidate to be chosen
TORCH = "torch"
ONNX = "onnx"


def candidate_kind(name: str) -> str:
    """``"onnx"`` for ONNX Runtime candidates (names starting ``onnx``), else ``"torch"``."""
    return ONNX if name.startswith(ONNX) else TORCH


def choose_backend(rates: Mapping[str, float], ort_margin: float = ORT_MARGIN) -> str:
    """Name of the candidate to run with, from its measured output MP/s (higher is faster).

    Candidates are named ``torch:<precision>:<layout>`` and ``onnx:<precision>``; a candidate whose measurement
    failed is absent or non-positive. The fastest torch candidate wins unless an ONNX Runtime one is more than
    ``ort_margin`` faster than it.

    Raises:
        ValueError: no candidate has a positive rate.
    """
    good = {k: float(v) for k, v in rates.items() if v > 0}
    if not good:
        raise ValueError(f"no backend candidate could be measured: {dict(rates)}")
    torch_best = max((k for k in good if candidate_kind(k) == TORCH), key=good.__getitem__, default=None)
    ort_best = max((k for k in good if candidate_kind(k) == ONNX), key=good.__getitem__, default=None)
    if torch_best is None:
        assert ort_best is not None
        return ort_best
    if ort_best is not None and good[ort_best] > good[torch_best] * (1.0 + ort_margin):
        return ort_best
    return torch_best


__all__ = ["ONNX", "ORT_MARGIN", "TORCH", "candidate_kind", "choose_backend"]
