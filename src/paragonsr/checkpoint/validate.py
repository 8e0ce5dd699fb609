"""Check a checkpoint's metadata against the tensors in the file before a model is built from it.

Metadata is text anyone can edit, and a model built from absurd hyperparameters can exhaust memory or time before
the weights are ever compared (``num_feat: 1e9`` asks for ~100 GB, ``num_blocks: 1e9`` builds modules for
minutes). So, in order, each step cheap and bounded by the file's own size:

1. types: every hyperparameter has the type the arch's option model declares (:mod:`paragonsr.archs.options`,
   generated from the constructor, the same model that checks ``network_g`` in a training option file), strictly:
   an int is an int, not ``1e9``, ``"64"`` or ``true``; floats are finite; unknown names are refused;
2. bounds: an integer hyperparameter is a width or a count, and the file's tensors bound both: a width appears as
   some tensor dimension, every block/group/conv counted holds at least one tensor. So every int is at most
   ``max(number of tensors, largest tensor dimension)``, counts (``num_block``, ``num_groups``, ``hr_blocks``,
   ``num_conv``, …) and their product at most the number of tensors, ``scale``/``upscale`` within 1-16;
3. layout: the model is built on the ``meta`` device (no memory is allocated) and its state-dict names and shapes
   are compared with the file's, unfused and, for archs that fuse, fused.

Every refusal is a :class:`~paragonsr.checkpoint.meta.CheckpointError` naming the file and the metadata key.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from paragonsr.checkpoint.meta import CheckpointError

MAX_SCALE = 16
_COUNT = re.compile(r"(num_|hr_)?(block|blocks|group|groups|conv|convs|layer|layers|depth|upconv)")
_SCALE_NAMES = ("scale", "upscale")
_ONE = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
_MANY = {bool: "true/false values", int: "integers", float: "finite numbers", str: "strings"}


def _expected(ann: Any) -> str:
    """What a value of the option-model annotation ``ann`` must be, in words (``an integer``, ``a list of
    finite numbers``, ``an integer or null``, ``one of 'a', 'b'``)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann in _ONE:
        return _ONE[ann]
    if origin is typing.Annotated:
        return _expected(args[0])
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(_expected(a) for a in args if a is not type(None))
        return f"{words} or null" if type(None) in args else words
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(origin, type) and issubclass(origin, Sequence) and not issubclass(origin, str):
        item = args[0] if args else Any
        fixed = origin is tuple and args and args[-1] is not Ellipsis and len(args) > 1
        count = f"{len(args)} " if fixed else ""
        return f"a list of {count}{_MANY[item]}" if item in _MANY else "a list"
    return f"of type {getattr(ann, '__name__', ann)}"


def _int_kind(ann: Any) -> str | None:
    """'int' for an integer argument (optionally nullable), 'ints' for a sequence of integers, else None."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is int:
        return "int"
    if origin in (typing.Union, types.UnionType):
        kinds = {_int_kind(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(origin, type) and issubclass(origin, Sequence) and args and args[0] is int:
        return "ints"
    return None


def _finite(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def check_types(
    path: str | os.PathLike[str], arch: str, kwargs: Mapping[str, Any], source: str = "arch_kwargs"
) -> dict[str, Any]:
    """Step 1 of the module doc: ``kwargs`` (read from the metadata of ``path``) against the arch's option model
    (:func:`paragonsr.archs.options.arch_options`, the one generated for ``network_g`` too), strictly: no
    string-to-number or float-to-int conversion, booleans are not integers, numbers must be finite.

    Returns the annotation of each given key. Raises ``CheckpointError`` ("<file>: metadata <source> '<key>' must
    be <expectation>, got <value>" or "... is not a hyperparameter of arch '<arch>' ...") on the first bad key;
    KeyError for an unknown arch."""
    from paragonsr.archs.options import arch_options

    model = arch_options(arch)
    fields = {k: f for k, f in model.model_fields.items() if k != "type"}
    for key in kwargs:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CheckpointError(
                f"{path}: metadata {source} '{key}' is not a hyperparameter of arch '{arch}'{hint} "
                f"(it has: {', '.join(sorted(fields))})"
            )
    # JSON text is what the metadata is; strict JSON validation takes lists for tuples and nothing else loosely
    text = json.dumps({**kwargs, "type": arch}, default=lambda o: f"<{type(o).__name__}>")
    try:
        model.model_validate_json(text, strict=True)
        errors = []
    except ValidationError as exc:  # a required argument the file leaves out is for the build to report
        errors = [e for e in exc.errors() if e["type"] != "missing" and e["loc"] and e["loc"][0] in kwargs]
    bad = str(errors[0]["loc"][0]) if errors else next((k for k, v in kwargs.items() if not _finite(v)), None)
    if bad is not None:
        raise CheckpointError(
            f"{path}: metadata {source} '{bad}' must be {_expected(fields[bad].annotation)}, got {kwargs[bad]!r}"
        )
    return {k: fields[k].annotation for k in kwargs}


def check_hyperparameters(
    path: str | os.PathLike[str],
    arch: str,
    kwargs: Mapping[str, Any],
    state: Mapping[str, Tensor],
    source: str = "arch_kwargs",
) -> None:
    """Steps 1-2 of the module doc for ``kwargs`` read from the metadata of ``path`` (``state``: its tensors).

    Raises ``CheckpointError`` ("<file>: metadata <source> '<key>' ...") on the first bad value."""
    annotations = check_types(path, arch, kwargs, source)
    n_tensors = len(state)
    max_dim = max((max(t.shape, default=1) for t in state.values()), default=1)
    limit = max(n_tensors, max_dim, MAX_SCALE)
    counts: list[tuple[str, int]] = []
    for key, value in kwargs.items():
        where = f"{path}: metadata {source} '{key}'"
        kind = _int_kind(annotations[key]) if value is not None else None
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
    "check_types",
    "not_checkpoint_message",
]
