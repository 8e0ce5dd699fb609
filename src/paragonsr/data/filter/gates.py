"""Quality gates: which metric, which bounds, which stage, and what to do when a metric cannot run.

A gate passes a tile when ``min <= score <= max`` (either bound optional). The YAML form also accepts
``threshold`` + ``direction`` (``higher``: score >= threshold is good; ``lower``: score <= threshold is good).
Stages run in order and a stage only sees the survivors of the previous ones (cheap heuristics first, then the
packaged NIQE model; learned IQA models on the survivors when their weights are configured). A gate whose metric is unavailable (pyiqa or its weights missing, no NIQE
model) is *skipped*, never passed; its optional ``fallback`` gate is evaluated instead when that one can run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from paragonsr.data.filter.heuristics import METRIC_INFO
from paragonsr.metrics.niqe_fit import PACKAGED_NIQE

PASS, FAIL, SKIPPED, NOT_RUN = "pass", "fail", "skipped", "not_run"


@dataclass
class Gate:
    metric: str
    stage: int = 1
    min: float | None = None
    max: float | None = None
    fallback: Gate | None = None
    auto_max: bool = (
        False  # ``max: auto`` (niqe only): the NIQE model's pristine tile p95, set by load_config
    )

    def check(self, score: float) -> bool:
        return (self.min is None or score >= self.min) and (self.max is None or score <= self.max)

    def describe(self) -> str:
        lo = "" if self.min is None else f"{self.min:g} <= "
        hi = "" if self.max is None else (" <= auto" if self.max == float("inf") else f" <= {self.max:g}")
        return f"{lo}{self.metric}{hi}"


@dataclass
class FilterConfig:
    tile_size: int = 256
    tile_stride: int = 256
    gates: list[Gate] = field(default_factory=list)
    niqe_model: str | None = None  # .npz: the packaged model (load_config's default) or `data niqe-fit`
    iqa_weights: dict[str, str] = field(default_factory=dict)  # metric -> local weight file
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)  # what the defaults left out and why (printed by the CLI)

    @property
    def stages(self) -> list[int]:
        return sorted({g.stage for g in self.gates})

    def metrics(self) -> list[str]:
        names: list[str] = []
        for g in self.gates:
            for m in (g.metric, g.fallback.metric if g.fallback else None):
                if m and m not in names:
                    names.append(m)
        return names


# The NIQE pristine model that ships with the package (fitted on CC0/CC-BY photographs by scripts/fit_niqe.py,
# provenance in pristine.json beside it): the default no-reference gate runs with nothing downloaded.

# Defaults: stage-1 heuristics measured on the 1536 256-px tiles of the 37 project photos (docs/data_filter.md:
# they drop flat, blurred, blocky and heavily aliased tiles and keep 76 % of those tiles), then NIQE against the
# packaged pristine model with the threshold calibrated for the tile size. The pyiqa gates (ARNIQA, NIMA)
# need weight files, so they are opt-in (PYIQA_GATES, or a --config).
DEFAULT_GATES: list[dict[str, Any]] = [
    {"metric": "entropy", "min": 4.0, "stage": 1},
    {"metric": "contrast", "min": 0.02, "stage": 1},
    {"metric": "sharpness", "min": 5.0, "max": 5000.0, "stage": 1},
    {"metric": "blockiness", "max": 1.45, "stage": 1},
    {"metric": "aliasing", "max": 30.0, "stage": 1},
    {"metric": "niqe", "max": "auto", "stage": 2},
]
# Stage-1 BRISQUE (LIVE model), added to the defaults when that model is in the weights folder (or given as
# iqa_weights.brisque): 55 keeps 85 % of the 296 stage-1 256-px tiles of the 37 project photos and drops 97 % of
# them blurred (σ 2), 92 % as JPEG q10, 76 % with noise σ 25 (NIQE drops those); scripts/brisque_gate.py.
BRISQUE_GATE: dict[str, Any] = {"metric": "brisque", "max": 55.0, "stage": 1}
# the learned stages, for a config that has the weights: usual starting points for those models' score
# ranges (ARNIQA-KonIQ 0-1, NIMA-AVA 1-10), not measured here.
PYIQA_GATES: list[dict[str, Any]] = [
    {"metric": "arniqa", "min": 0.6, "stage": 3},
    {"metric": "nima", "min": 4.5, "stage": 4},
]

_GATE_KEYS = {"metric", "stage", "min", "max", "threshold", "direction", "fallback"}


def parse_gate(d: Any, where: str) -> Gate:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a gate must be a mapping like {{metric: entropy, min: 4.0}}, got {d!r}")
    unknown = set(d) - _GATE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_GATE_KEYS)}")
    metric = str(d.get("metric", "")).lower()
    if metric not in METRIC_INFO:
        raise ValueError(f"{where}: unknown metric {metric!r}; available: {', '.join(METRIC_INFO)}")
    lo, hi = d.get("min"), d.get("max")
    auto = hi == "auto"
    if auto:
        if metric != "niqe":
            raise ValueError(
                f"{where}: 'max: auto' is only defined for niqe (its model stores the pristine p95)"
            )
        hi = float("inf")  # resolved from the model by load_config; inf only until then
    if "direction" in d and "threshold" not in d:
        raise ValueError(
            f"{where}: 'direction' only applies to 'threshold' (use min/max, or threshold + direction)"
        )
    if "threshold" in d:
        if "min" in d or "max" in d:
            raise ValueError(f"{where}: give either threshold (+ direction) or min/max, not both")
        direction = d.get("direction", METRIC_INFO[metric][0])
        if direction not in ("higher", "lower"):
            raise ValueError(f"{where}: direction must be 'higher' or 'lower', got {direction!r}")
        if direction == "higher":
            lo = d["threshold"]
        else:
            hi = d["threshold"]
    if lo is None and hi is None:
        raise ValueError(f"{where}: gate on {metric!r} needs min, max or threshold")
    try:
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        stage = int(d.get("stage", 1))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: min/max/threshold must be numbers and stage an integer ({exc})") from exc
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{where}: min {lo} is above max {hi}")
    fb = d.get("fallback")
    fallback = parse_gate({"stage": stage, **fb}, f"{where}.fallback") if fb is not None else None
    return Gate(metric, stage, lo, hi, fallback, auto)


def load_config(path: str | Path | None = None, **overrides: Any) -> FilterConfig:
    """Read a gates YAML (or the defaults when ``path`` is None). ``overrides`` replace top-level keys."""
    raw: dict[str, Any] = {}
    where = "default gates"
    if path is not None:
        where = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"gates config not found: {path}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    allowed = {"tile", "gates", "niqe_model", "iqa_weights", "device"}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    tile = raw.get("tile", {}) or {}
    size = int(tile.get("size", 256))
    stride = int(tile.get("stride", size))
    if size < 32 or stride < 1:
        raise ValueError(f"{where}: tile.size must be >= 32 and tile.stride >= 1 (got {size}, {stride})")
    iqa_weights = {str(k).lower(): str(v) for k, v in (raw.get("iqa_weights") or {}).items()}
    notes: list[str] = []
    gate_list = raw.get("gates")
    if gate_list is None:
        gate_list = list(DEFAULT_GATES)
        if _brisque_model_present(iqa_weights):
            gate_list.append(dict(BRISQUE_GATE))  # last: indices of the other defaults stay as documented
        else:
            notes.append(
                "default gates without BRISQUE: the LIVE model is not in the weights folder "
                "(`paragonsr weights fetch brisque_live` adds a stage-1 gate brisque <= 55)"
            )
    if not isinstance(gate_list, list) or not gate_list:
        raise ValueError(f"{where}: 'gates' must be a non-empty list")
    gates = [parse_gate(g, f"{where}: gates[{i}]") for i, g in enumerate(gate_list)]
    # status, CSV column and verdict are keyed by metric: a second gate on the same metric would overwrite the
    # first one's result (a failing tile could come out as passed)
    seen: dict[str, int] = {}
    for i, g in enumerate(gates):
        if g.metric in seen:
            raise ValueError(
                f"{where}: gates[{i}] repeats metric {g.metric!r} (already gated in gates[{seen[g.metric]}]); "
                "give one gate per metric, with both min and max if you need a band"
            )
        seen[g.metric] = i
    # no niqe_model (or 'packaged') = the model that ships with the package; a path = your own niqe-fit model
    niqe_model = raw.get("niqe_model")
    niqe_model = str(PACKAGED_NIQE) if niqe_model in (None, "packaged") else str(niqe_model)
    autos = [gg for g in gates for gg in (g, g.fallback) if gg is not None and gg.auto_max]
    if autos and Path(niqe_model).is_file():
        from paragonsr.metrics.niqe_fit import NIQEModel

        niqe = NIQEModel.load(niqe_model)
        try:
            thr = niqe.threshold_for(size)
        except ValueError as exc:
            raise ValueError(f"{where}: niqe 'max: auto': {exc}") from None
        for gg in autos:
            gg.max = thr
    return FilterConfig(
        tile_size=size,
        tile_stride=stride,
        gates=gates,
        niqe_model=niqe_model,
        iqa_weights=iqa_weights,
        device=str(raw.get("device", "cpu")),
        notes=notes,
    )


def _brisque_model_present(iqa_weights: dict[str, str]) -> bool:
    """Whether the BRISQUE gate can run: ``iqa_weights.brisque`` names a file, or the verified ``brisque_live``
    file is in the weights folder (nothing is downloaded)."""
    if iqa_weights.get("brisque"):
        return Path(iqa_weights["brisque"]).is_file()
    from paragonsr.weights.core import (
        WeightsError,
        load_manifest,
        manifest_entry,
        verify_file,
        weights_folder,
    )

    try:  # a presence check only: never resolve() here, which may fetch under $PARAGONSR_ALLOW_DOWNLOAD
        entry = manifest_entry("brisque_live", load_manifest())
        path = weights_folder(None) / entry["file"]
        return path.is_file() and bool(verify_file(path, entry, "brisque_live"))
    except WeightsError:
        return False


def evaluate(gate: Gate, scores: dict[str, float | None]) -> tuple[str, str]:
    """(status, note) for one gate. ``scores[m] is None`` means metric m could not run."""
    s = scores.get(gate.metric)
    if s is not None:
        return (PASS, "") if gate.check(s) else (FAIL, f"{gate.describe()} (got {s:.4g})")
    fs = scores.get(gate.fallback.metric) if gate.fallback is not None else None
    if gate.fallback is not None and fs is not None:
        ok = gate.fallback.check(fs)
        note = f"via fallback {gate.fallback.describe()} (got {fs:.4g})"
        return (PASS, note) if ok else (FAIL, note)
    return SKIPPED, f"{gate.metric} unavailable"


def verdict(statuses: list[str]) -> str:
    """fail if any gate failed; pass only if every gate ran and passed; otherwise unverified."""
    if FAIL in statuses:
        return FAIL
    return PASS if all(s == PASS for s in statuses) else "unverified"
