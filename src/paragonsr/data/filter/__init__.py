"""Staged dataset quality filter: stage-1 heuristics, a NIQE gate against a packaged pristine model (both run
offline), and optional learned IQA gates (pyiqa, local weight files)."""

from paragonsr.data.filter.gates import DEFAULT_GATES, PYIQA_GATES, FilterConfig, Gate, load_config
from paragonsr.data.filter.pipeline import FilterResult, run_filter, score_tile

__all__ = [
    "DEFAULT_GATES",
    "PYIQA_GATES",
    "FilterConfig",
    "FilterResult",
    "Gate",
    "load_config",
    "run_filter",
    "score_tile",
]
