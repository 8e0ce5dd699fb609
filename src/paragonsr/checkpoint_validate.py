"""Check a checkpoint's metadata against the tensors in the file before a model is built from it.

Metadata is text anyone can edit, and a model built from absurd hyperparameters can exhaust memory or time before
the weights are ever compared (``num_feat: 1e9`` asks for ~100 GB, ``num_blocks: 1e9`` builds modules for
minutes). So, in order, each step cheap and bounded by the file's own size:

1. types: every hyperparameter has the type the arch's signature declares (an int is an int, not ``1e9`` or
   ``"64"``; floats are finite; unknown names are refused);
2. bounds: an integer hyperparameter is a width or a count, and the file's tensors bound both: a width appears as
   some tensor dimension, every block/group/conv counted holds at least one tensor. So every int is at most
   ``max(number of tensors, largest tensor dimension)``, counts (``num_block``, ``num_groups``, ``hr_blocks``,
   ``num_conv``, …) and their product at most the number of tensors, ``scale``/``upscale`` within 1-16;
3. layout: the model is built on the ``meta`` device (no memory is allocated) and its state-dict names and shapes
   are compared with the file's, unfused and, for archs that fuse, fused.

Every refusal is a :class:`~paragonsr.checkpoint_meta.CheckpointError` naming the file and the metadata key.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from paragonsr.checkpoint_meta import CheckpointError

MAX_SCALE = 16
_COUNT = re.compile(r"(num_|hr_)?(block|blocks|group|groups|conv|convs|layer|layers|depth|upconv)")
_SCALE_NAMES = ("scale", "upscale")


def _declared(fn: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """Parameters an arch factory accepts, following ``**overrides`` into the class it returns."""
    params = dict(inspect.signature(fn).parameters)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    params = {k: p for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if var_kw:
        ret = inspect.signature(fn).return_annotation
        target = inspect.unwrap(fn).__globals__.get(ret) if isinstance(ret, str) else ret
        if inspect.isclass(target):
            inner, inner_var = _declared(target)
            params = {**inner, **params}
            var_kw = inner_var
        else:
            return params, True
    return params, var_kw


def _kind(param: inspect.Parameter) -> str | None:
    """'bool' | 'int' | 'float' | 'str' | 'ints'/'floats' (sequences) | None (unknown: not checked)."""
    default, ann = param.default, str(param.annotation)
    for typ, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if type(default) is typ:
            return name
    if isinstance(default, (tuple, list)) and default and all(type(v) is int for v in default):
        return "ints"
    if isinstance(default, (tuple, list)) and default and all(type(v) in (int, float) for v in default):
        return "floats"
    for word in ("bool", "int", "float", "str"):
        if re.search(rf"(^|[^\w\[]){word}($|[^\w])", ann):
            return word
    return None


def _type_error(value: Any, kind: str) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if kind == "int":
        return None if type(value) is int else "an integer"
    if kind == "float":
        ok = type(value) in (int, float) and math.isfinite(value)
        return None if ok else "a finite number"
    if kind == "str":
        return None if isinstance(value, str) else "a string"
    if kind == "ints":
        ok = isinstance(value, (list, tuple)) and all(type(v) is int for v in value)
        return None if ok else "a list of integers"
    if kind == "floats":
        ok = isinstance(value, (list, tuple)) and all(_type_error(v, "float") is None for v in value)
        return None if ok else "a list of finite numbers"
    return None


def check_hyperparameters(
    path: str | os.PathLike[str],
    arch: str,
    kwargs: Mapping[str, Any],
    state: Mapping[str, Tensor],
    source: str = "arch_kwargs",
) -> None:
    """Steps 1-2 of the module doc for ``kwargs`` read from the metadata of ``path`` (``state``: its tensors).

    Raises ``CheckpointError`` ("<file>: metadata <source> '<key>' ...") on the first bad value."""
    from paragonsr.archs import ARCH_REGISTRY

    params, open_kwargs = _declared(ARCH_REGISTRY.get(arch))
    n_tensors = len(state)
    max_dim = max((max(t.shape, default=1) for t in state.values()), default=1)
    limit = max(n_tensors, max_dim, MAX_SCALE)
    counts: list[tuple[str, int]] = []
    for key, value in kwargs.items():
        where = f"{path}: metadata {source} '{key}'"
        if key not in params:
            if open_kwargs:
                continue
            known = ", ".join(sorted(params))
            raise CheckpointError(f"{where} is not a hyperparameter of arch '{arch}' (it has: {known})")
        kind = _kind(params[key])
        if value is None and params[key].default is None:
            continue
        want = _type_error(value, kind) if kind else None
        if want:
            raise CheckpointError(f"{where} must be {want}, got {value!r}")
        ints = [value] if kind == "int" else list(value) if kind == "ints" else []
        for v in ints:
            if key in _SCALE_NAMES and not 1 <= v <= MAX_SCALE:
                raise CheckpointError(f"{where} = {v} is out of range (1-{MAX_SCALE})")
            if not 0 <= v <= limit:
                raise CheckpointError(
                    f"{where} = {v} is out of range for this file (0-{limit}: its {n_tensors} tensors are at "
                    f"most {max_dim} wide)"
                )
        if kind == "int" and _COUNT.fullmatch(key):
            if value > n_tensors:
                raise CheckpointError(
                    f"{where} = {value} counts more modules than the file has tensors ({n_tensors})"
                )
            counts.append((key, value))
    product = math.prod(max(1, v) for _, v in counts)
    if product > n_tensors:
        names = " x ".join(f"{k} {v}" for k, v in counts)
        raise CheckpointError(
            f"{path}: metadata {source} {names} = {product} blocks, more than the file has tensors ({n_tensors})"
        )


def check_top_level(path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Bounds of the metadata's own ``scale``/``in_ch``/``out_ch`` (already ints, see ``decode_meta``)."""
    for key, hi in (("scale", MAX_SCALE), ("in_ch", 64), ("out_ch", 64)):
        val = meta.get(key)
        if val is not None and not 1 <= val <= hi:
            raise CheckpointError(f"{path}: metadata '{key}' = {val} is out of range (1-{hi})")


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_layout(
    path: str | os.PathLike[str],
    arch: str,
    kwargs: Mapping[str, Any],
    state: Mapping[str, Tensor],
    fused: bool | None,
) -> None:
    """Step 3: the arch built from ``kwargs`` on the meta device must have exactly the file's tensor names and
    shapes (in the unfused layout, the fused one, or either when ``fused`` is None). Third-party layouts are
    mapped by the arch's ``convert_state_dict`` first. Raises ``CheckpointError`` naming the differences."""
    from paragonsr.archs import build_arch

    try:
        with torch.device("meta"):
            model = build_arch(arch, **kwargs)
            convert = getattr(model, "convert_state_dict", None)
            have = {
                k: tuple(v.shape) for k, v in (convert(dict(state)) if callable(convert) else state).items()
            }
            layouts = [] if fused else [_shapes(model)]
            if fused is not False and hasattr(model, "fuse_for_release"):
                layouts.append(_shapes(cast(Any, model).fuse_for_release()))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot build arch '{arch}' with {dict(kwargs)}: {exc}") from None
    if any(want == have for want in layouts) or not layouts:
        return
    want = layouts[0]
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [
        f"{k} {list(have[k])} (expected {list(want[k])})" for k in want if k in have and want[k] != have[k]
    ]
    parts = [
        f"{len(x)} {label}: {', '.join(x[:3])}{' ...' if len(x) > 3 else ''}"
        for x, label in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape"))
        if x
    ]
    raise CheckpointError(
        f"{path}: the metadata (arch '{arch}', {dict(kwargs)}) does not match the tensors in the file: "
        + "; ".join(parts)
    )


def not_checkpoint_message(path: Path, head: bytes) -> str:
    """One line for a file that is neither safetensors nor a ``torch.save`` file, saying what it looks like."""
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        kind = "a plain Python pickle (not written by torch.save)"
    elif head[:2] == b"PK":
        kind = "a zip archive that torch cannot read (corrupt or truncated?)"
    elif head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        kind = "text"
    else:
        kind = "data of an unknown format"
    named = f" is named {path.suffix} but" if path.suffix.lower() == ".safetensors" else ""
    return f"{path}:{named} holds {kind}, not a safetensors or torch checkpoint"


__all__ = [
    "MAX_SCALE",
    "check_hyperparameters",
    "check_layout",
    "check_top_level",
    "not_checkpoint_message",
]
