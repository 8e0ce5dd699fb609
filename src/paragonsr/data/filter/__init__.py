"""Three-stage dataset quality filter (seed 001): stage-1 heuristics, technical and aesthetic gates."""

from paragonsr.data.filter.gates import DEFAULT_GATES, FilterConfig, Gate, load_config
from paragonsr.data.filter.pipeline import FilterResult, run_filter, score_tile

__all__ = ["DEFAULT_GATES", "FilterConfig", "FilterResult", "Gate", "load_config", "run_filter", "score_tile"]
