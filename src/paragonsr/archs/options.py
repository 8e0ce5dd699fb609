"""Option models of the registered architectures: which keyword arguments each arch takes, of which types, with
which defaults and descriptions, generated from its constructor by
:func:`paragonsr.registry_options.registered_models` (signature, type hints, docstring ``Args:``).

One statement serves every reader of architecture arguments: the ``network_g`` / ``network_d`` sections of a
training option file (:mod:`paragonsr.train.option_types`), their generated docs and JSON Schema, and the check of
the hyperparameters a checkpoint's metadata records (:mod:`paragonsr.checkpoint_validate`). Importing this module
imports every architecture (which registers them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import paragonsr.archs  # noqa: F401  (registers every architecture)
from paragonsr.registry import ARCH_REGISTRY
from paragonsr.registry_options import RegisteredOpt, registered_models, registered_union

__all__ = ["ARCH_OPTS", "NetworkOpt", "NetworkUnion", "arch_options"]


class NetworkOpt(RegisteredOpt):
    """``type`` = a registered architecture; other keys are its constructor arguments."""


_SCALE = "the top-level `scale`"
ARCH_OPTS = registered_models(
    ARCH_REGISTRY,
    NetworkOpt,
    prefix="Network",
    module=__name__,
    optional={"scale": _SCALE, "upscale": _SCALE},
)
# the generated classes live here by name, so options pickle (spawned workers)
globals().update({m.__name__: m for m in ARCH_OPTS.values()})

if TYPE_CHECKING:  # the generated members are subclasses of NetworkOpt
    NetworkUnion = NetworkOpt
else:
    NetworkUnion = registered_union(ARCH_REGISTRY, ARCH_OPTS)


def arch_options(name: str) -> type[NetworkOpt]:
    """The option model of the architecture registered as ``name`` (any capitalisation, aliases). Its fields
    other than ``type`` are the arch's keyword arguments. Raises KeyError (with a did-you-mean) for an unknown
    name."""
    return ARCH_OPTS[ARCH_REGISTRY.canonical(name)]  # type: ignore[return-value]
