"""Metric scorers for the filter: stage-1 heuristics, BRISQUE (the project's implementation with the LIVE model),
NIQE (packaged or own pristine model), optional pyiqa models.

BRISQUE (:mod:`paragonsr.metrics.brisque`) reads the ``brisque_live`` model from the weights folder
(``paragonsr weights fetch brisque_live``), or the converted file given as ``iqa_weights: {brisque: PATH}``;
without it the metric is unavailable (its gates are skipped, with the reason in the summary).

pyiqa imports torchvision (a CUDA wheel that breaks next to CPU torch here), is non-commercially licensed since
2026 and downloads weights by default, so it is only an optional extra: imported lazily, given a local weight file
per metric (``iqa_weights: {arniqa: /path/file.pth}``), and any failure (not installed, file missing, a load
error) makes the metric *unavailable*, which the gates report as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from paragonsr.data.filter.gates import FilterConfig
from paragonsr.data.filter.heuristics import HEURISTICS

Scorer = Callable[[np.ndarray], float]

PYIQA_METRICS = ("arniqa", "nima")


class MetricUnavailable(RuntimeError):
    """The metric cannot run in this environment; the message says why."""


def _pyiqa_scorer(name: str, cfg: FilterConfig) -> Scorer:
    weights = cfg.iqa_weights.get(name)
    if not weights:
        raise MetricUnavailable(f"{name}: no local weight file configured (iqa_weights: {{{name}: PATH}})")
    if not Path(weights).is_file():
        raise MetricUnavailable(f"{name}: weight file not found: {weights}")
    try:
        import pyiqa
        import torch
    except Exception as exc:  # ImportError, or torchvision failing to import inside pyiqa
        raise MetricUnavailable(f"{name}: pyiqa is not usable ({type(exc).__name__}: {exc})") from None
    try:
        metric = pyiqa.create_metric(name, device=cfg.device, pretrained_model_path=weights)
        metric.eval()
    except Exception as exc:
        raise MetricUnavailable(f"{name}: pyiqa could not build it from {weights} ({exc})") from None

    def score(tile: np.ndarray) -> float:
        x = tile.astype(np.float32) / (65535.0 if tile.dtype == np.uint16 else 255.0)
        t = torch.from_numpy(np.ascontiguousarray(x[..., :3])).permute(2, 0, 1)[None].to(cfg.device)
        with torch.no_grad():
            return float(metric(t).reshape(-1)[0])

    return score


def _brisque_scorer(cfg: FilterConfig) -> Scorer:
    from paragonsr.metrics.brisque import BrisqueModel, brisque, load_live_model
    from paragonsr.weights import WeightsError

    path = cfg.iqa_weights.get("brisque")
    try:
        model = BrisqueModel.load(path) if path else load_live_model()
    except (WeightsError, OSError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise MetricUnavailable(
            f"brisque: LIVE model not available ({first}); run `paragonsr weights fetch brisque_live`"
        ) from None

    def score(tile: np.ndarray) -> float:
        t = tile[..., :3] if tile.ndim == 3 else tile
        if np.issubdtype(t.dtype, np.floating):  # float tiles are [0, 1]
            t = np.floor(np.clip(t, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return brisque(t, model)

    return score


def make_scorer(name: str, cfg: FilterConfig) -> Scorer:
    """A callable tile -> score, or :class:`MetricUnavailable` with the reason."""
    if name in HEURISTICS:
        return HEURISTICS[name]
    if name == "niqe":
        if not cfg.niqe_model:
            raise MetricUnavailable("niqe: no niqe_model set (fit one with 'paragonsr data niqe-fit')")
        from paragonsr.metrics.niqe_fit import NIQEModel

        try:
            model = NIQEModel.load(cfg.niqe_model)
        except (FileNotFoundError, ValueError) as exc:
            raise MetricUnavailable(str(exc)) from None
        if cfg.tile_size < model.patch:
            raise MetricUnavailable(f"niqe: tile size {cfg.tile_size} < model block size {model.patch}")
        return model.score
    if name == "brisque":
        return _brisque_scorer(cfg)
    if name in PYIQA_METRICS:
        return _pyiqa_scorer(name, cfg)
    raise MetricUnavailable(f"{name}: unknown metric")


class ScorerSet:
    """Builds each scorer once (per process) and remembers why unavailable ones are unavailable."""

    def __init__(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self.scorers: dict[str, Scorer] = {}
        self.unavailable: dict[str, str] = {}
        for m in cfg.metrics():
            try:
                self.scorers[m] = make_scorer(m, cfg)
            except MetricUnavailable as exc:
                self.unavailable[m] = str(exc)

    def score(self, name: str, tile: np.ndarray) -> float | None:
        fn = self.scorers.get(name)
        return None if fn is None else fn(tile)
