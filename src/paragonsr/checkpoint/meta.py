"""How checkpoint metadata is stored: a flat str -> str mapping (what safetensors headers allow, and what sits under
``"paragonsr_meta"`` in our ``.pth`` files), encoded from and decoded to the ``meta`` dict that
:mod:`paragonsr.checkpoint` documents. Also the model introspection ``save_model`` needs (wrappers, fused flag).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from torch import nn

from paragonsr import __version__
from paragonsr.errors import ParagonSRError


class CheckpointError(ParagonSRError, ValueError):
    """A checkpoint file cannot be read or does not fit the model."""


class NonFiniteWeightsError(CheckpointError):
    """A checkpoint holds NaN/inf weights (a diverged run): refused on save and load, never skipped silently."""


# --------------------------------------------------------------------------------------------- metadata


def model_is_fused(model: nn.Module) -> bool | None:
    # fuse_for_release() implementations mark the model; accept the common attribute spellings.
    for attr in ("fused", "is_fused", "_fused"):
        val = getattr(model, attr, None)
        if isinstance(val, bool):
            return val
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The real network inside DataParallel/DDP and torch.compile wrappers (clean keys, arch attributes)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = cast(nn.Module, model._orig_mod)
        else:
            return model


def encode_meta(meta: dict[str, Any]) -> dict[str, str]:
    """Flatten metadata into the str -> str mapping safetensors requires."""
    out = {"format": "pt", "paragonsr_version": str(meta.get("paragonsr_version") or __version__)}
    if meta.get("arch"):
        out["arch"] = str(meta["arch"])
    try:
        out["arch_kwargs"] = json.dumps(meta.get("arch_kwargs") or {}, sort_keys=True)
    except TypeError as exc:  # the model could not be rebuilt from it: refuse rather than save a dead file
        raise CheckpointError(f"arch_kwargs must be JSON-serialisable for the metadata: {exc}") from None
    for key in ("scale", "in_ch", "out_ch"):
        if meta.get(key) is not None:
            out[key] = str(int(meta[key]))
    if meta.get("fused") is not None:
        out["fused"] = "true" if meta["fused"] else "false"
    out["extra"] = json.dumps(meta.get("extra") or {}, sort_keys=True, default=str)
    return out


def decode_meta(raw: Mapping[str, Any] | None, path: Path, fmt: str) -> dict[str, Any]:
    raw = dict(raw or {})

    def as_json(key: str) -> dict[str, Any]:
        val = raw.get(key)
        if val is None or isinstance(val, dict):
            return dict(val or {})
        try:
            parsed = json.loads(val)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata '{key}' is not valid JSON ({exc}): {val!r}") from None
        if not isinstance(parsed, dict):
            raise CheckpointError(f"{path}: metadata '{key}' must be a JSON object, got {val!r}")
        return parsed

    def as_int(key: str) -> int | None:
        val = raw.get(key)
        if val is None or val == "":
            return None
        try:
            return int(val)
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: metadata '{key}' must be an integer, got {val!r}") from None

    fused = raw.get("fused")
    if isinstance(fused, str):
        fused = fused.strip().lower() in ("1", "true", "yes")
    return {
        "arch": raw.get("arch") or None,
        "arch_kwargs": as_json("arch_kwargs"),
        "scale": as_int("scale"),
        "in_ch": as_int("in_ch"),
        "out_ch": as_int("out_ch"),
        "fused": fused if isinstance(fused, bool) else None,
        "paragonsr_version": raw.get("paragonsr_version"),
        "extra": as_json("extra"),
        "param_key": None,
        "format": fmt,
        "path": str(path),
    }


@dataclass
class LoadReport:
    """What happened when weights were loaded into a model."""

    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    # the entry of a .pth dict the weights came from ("params", "params_ema", ...); None for a flat state dict
    # or a .safetensors file
    param_key: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 8) -> str:
        def show(items: list[str]) -> str:
            more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = [f"{self.loaded} tensors match"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing in checkpoint: {show(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected in checkpoint: {show(self.unexpected)}")
        if self.mismatched:
            mm = [f"{k} (checkpoint {list(a)} vs model {list(b)})" for k, a, b in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatches: {show(mm)}")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.describe()


__all__ = [
    "CheckpointError",
    "LoadReport",
    "NonFiniteWeightsError",
    "decode_meta",
    "encode_meta",
    "model_is_fused",
    "unwrap_model",
]
