"""Architectures. Importing this package registers every arch in ``ARCH_REGISTRY``.

Conventions every generator follows (checkpoints, upscale and export rely on them):
- constructor hyperparameters are explicit keyword arguments; every instance records the registered name and the
  arguments it was built with as ``model.arch_name`` / ``model.arch_kwargs`` (:mod:`paragonsr.archs.hparams`),
  however it was built, so a checkpoint can rebuild the model without flags;
- instances expose ``scale``, ``in_ch`` and ``out_ch`` attributes;
- archs that can be folded for release implement ``fuse_for_release() -> nn.Module`` (in place, returns self);
  calling it on a freshly built model yields the same parameter names/shapes as on a trained one.
- archs whose eval output depends on state settled by training-mode forwards (ParagonSR2's tracked kernels)
  implement ``calibrate_for_eval(batches, device=None) -> nn.Module``: forward the LR batches (tensors, ``(lq, gt)``
  pairs or dicts with ``"lq"``) without weight updates. Training calls it before validating and saving the EMA,
  release before fusing; archs without it need no calibration.
- archs with fixed-function parts that INT8 quantisation would damage list their dotted submodule names in the
  class attribute ``int8_keep_float``; INT8 export keeps those in float (:func:`paragonsr.deploy.quantize.
  keep_float_scopes`). Without it every layer is quantised.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from paragonsr.registry import ARCH_REGISTRY

# Modules that register archs. Missing optional ones are skipped so one unfinished file cannot break the rest.
_ARCH_MODULES = (
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
    """Build the arch registered as ``name`` (or an alias) with ``kwargs``; the model records both itself
    (``arch_name`` canonical, ``arch_kwargs``). Raises KeyError for an unknown name (with a did-you-mean)."""
    return ARCH_REGISTRY.get(name)(**kwargs)


def list_archs() -> list[str]:
    return ARCH_REGISTRY.names()


__all__ = ["ARCH_REGISTRY", "build_arch", "list_archs"]
