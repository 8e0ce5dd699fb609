"""Model checkpoints: save/load ``.safetensors`` and ``.pth`` with architecture metadata.

The package splits into :mod:`~paragonsr.checkpoint.core` (save/load), :mod:`~paragonsr.checkpoint.meta`
(metadata encoding, :class:`CheckpointError`, model introspection) and :mod:`~paragonsr.checkpoint.validate`
(hyperparameter and layout checks before anything is built). The public names live here, as they did when the
checkpoint code was one module.
"""

from __future__ import annotations

from paragonsr.archs.detect import detect_arch
from paragonsr.checkpoint.core import (
    AUTO_PARAM_KEYS,
    PTH_EXTS,
    SAFETENSORS_EXTS,
    load_model,
    load_state_dict,
    load_weights,
    save_model,
)
from paragonsr.checkpoint.meta import (
    CheckpointError,
    LoadReport,
    NonFiniteWeightsError,
    model_is_fused,
    unwrap_model,
)

__all__ = [
    "AUTO_PARAM_KEYS",
    "PTH_EXTS",
    "SAFETENSORS_EXTS",
    "CheckpointError",
    "LoadReport",
    "NonFiniteWeightsError",
    "detect_arch",
    "load_model",
    "load_state_dict",
    "load_weights",
    "model_is_fused",
    "save_model",
    "unwrap_model",
]
