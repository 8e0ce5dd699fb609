"""Architectures. Importing this package registers every arch in ``ARCH_REGISTRY``.

Conventions every generator follows (checkpoints, upscale and export rely on them):
- constructor hyperparameters are explicit keyword arguments; ``build_arch`` records them on the instance as
  ``model.arch_name`` / ``model.arch_kwargs`` so a checkpoint can rebuild the model without flags;
- instances expose ``scale``, ``in_ch`` and ``out_ch`` attributes;
- archs that can be folded for release implement ``fuse_for_release() -> nn.Module`` (in place, returns self);
  calling it on a freshly built model yields the same parameter names/shapes as on a trained one.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from paragonsr.registry import ARCH_REGISTRY

# Modules that register archs. Missing optional ones are skipped so one unfinished file cannot break the rest.
_ARCH_MODULES = (
    "resample",
    "compact",
    "paragonsr2",
    "paragonsr_v1",
    "rrdbnet",
    "munet",
    "unet_sn",
    "span",
)
for _m in _ARCH_MODULES:
    try:
        importlib.import_module(f"paragonsr.archs.{_m}")
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a module does not exist yet
        if _exc.name != f"paragonsr.archs.{_m}":
            raise


def build_arch(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered arch and record how it was built (for checkpoint metadata)."""
    canonical = ARCH_REGISTRY.canonical(name)
    model = ARCH_REGISTRY.get(canonical)(**kwargs)
    model.arch_name = canonical
    model.arch_kwargs = dict(kwargs)
    return model


def list_archs() -> list[str]:
    return ARCH_REGISTRY.names()


__all__ = ["ARCH_REGISTRY", "build_arch", "list_archs"]
