"""One tiler for every backend: torch models, ONNX Runtime sessions and the network under validation.

Backends describe what input sizes they need (:class:`SizeNeeds`: scale, size multiple, minimum size, static input
size, batch, pad mode); the tiler (:func:`tiled_forward`, :class:`Tiler`) plans tiles around those needs, pads,
cross-fades the overlaps without seams, crops, picks the tile from the memory budget (``auto``) and can refuse
non-finite output. A tile size has one meaning everywhere (:func:`parse_tile`): ``0`` = whole image, ``auto``,
or a number of LR pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paragonsr.tiling.option import (
    DEFAULT_OVERLAP,
    MIN_TILE,
    TILE_HELP,
    WHOLE_IMAGE,
    TileSize,
    add_tile_argument,
    parse_tile,
)

if TYPE_CHECKING:
    from paragonsr.tiling.geometry import axis_weights, plan_axis
    from paragonsr.tiling.memory import (
        DEFAULT_CPU_BUDGET_MB,
        DEFAULT_FEAT_ESTIMATE,
        auto_tile_size,
        available_memory,
        cpu_memory_budget,
        is_oom,
    )
    from paragonsr.tiling.needs import SizeNeeds, needs_of, pad_input, run_padded
    from paragonsr.tiling.throughput import choose_tile, tiled_pixels
    from paragonsr.tiling.tiler import NonFiniteOutputError, Tiler, tiled_forward

# The torch side is imported on first use, so ``--tile`` parsing (``option``) does not load torch.
_LAZY = {
    "axis_weights": "geometry",
    "plan_axis": "geometry",
    "DEFAULT_CPU_BUDGET_MB": "memory",
    "DEFAULT_FEAT_ESTIMATE": "memory",
    "auto_tile_size": "memory",
    "available_memory": "memory",
    "cpu_memory_budget": "memory",
    "is_oom": "memory",
    "SizeNeeds": "needs",
    "needs_of": "needs",
    "pad_input": "needs",
    "run_padded": "needs",
    "choose_tile": "throughput",
    "tiled_pixels": "throughput",
    "NonFiniteOutputError": "tiler",
    "Tiler": "tiler",
    "tiled_forward": "tiler",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "DEFAULT_CPU_BUDGET_MB",
    "DEFAULT_FEAT_ESTIMATE",
    "DEFAULT_OVERLAP",
    "MIN_TILE",
    "TILE_HELP",
    "WHOLE_IMAGE",
    "NonFiniteOutputError",
    "SizeNeeds",
    "TileSize",
    "Tiler",
    "add_tile_argument",
    "auto_tile_size",
    "available_memory",
    "axis_weights",
    "choose_tile",
    "cpu_memory_budget",
    "is_oom",
    "needs_of",
    "pad_input",
    "parse_tile",
    "plan_axis",
    "run_padded",
    "tiled_forward",
    "tiled_pixels",
]
