"""Option models of the registered architectures: which keyword arguments each arch takes, of which types, with
which defaults and descriptions, generated from its constructor by
:func:`paragonsr.registry_options.registered_models` (signature, type hints, docstring ``Args:``).

One statement serves every reader of architecture arguments: the ``network_g`` / ``network_d`` sections of a
training option file (:mod:`paragonsr.train.option_types`), their generated docs and JSON Schema, and the check of
the hyperparameters a checkpoint's metadata records (:mod:`paragonsr.checkpoint.validate`). Importing this module
imports every architecture (which registers them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel

import paragonsr.archs  # noqa: F401  (registers every architecture)
from paragonsr.registry import ARCH_REGISTRY
from paragonsr.registry_options import RegisteredOpt, registered_models, registered_union

__all__ = ["ARCH_OPTS", "NetworkOpt", "NetworkUnion", "arch_options"]


class NetworkOpt(RegisteredOpt):
    """``type`` = a registered architecture; other keys are its constructor arguments."""


_SCALE = "the top-level `scale`"


def _generate(known: Mapping[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    """Option models of the registered architectures not in ``known``, published in this module by name (so
    options pickle, e.g. for spawned workers; classes already published stay the same objects)."""
    models = registered_models(
        ARCH_REGISTRY,
        NetworkOpt,
        prefix="Network",
        module=__name__,
        optional={"scale": _SCALE, "upscale": _SCALE},
    )
    new = {k: m for k, m in models.items() if k not in known}
    globals().update({m.__name__: m for m in new.values()})
    return new


ARCH_OPTS = _generate({})

if TYPE_CHECKING:  # the generated members are subclasses of NetworkOpt
    NetworkUnion = NetworkOpt
else:
    NetworkUnion = registered_union(ARCH_REGISTRY, ARCH_OPTS)


def arch_options(name: str) -> type[NetworkOpt]:
    """The option model of the architecture registered as ``name`` (any capitalisation, aliases). Its fields
    other than ``type`` are the arch's keyword arguments. Raises KeyError (with a did-you-mean) for an unknown
    name. An architecture registered after this module was imported (a plugin) gets its model on first use.
    """
    key = ARCH_REGISTRY.canonical(name)
    if key not in ARCH_OPTS:
        ARCH_OPTS.update(_generate(ARCH_OPTS))
    return ARCH_OPTS[key]  # type: ignore[return-value]
