"""Non-finite guards: NaN/inf must never reach a checkpoint, a training state or an output file.

One pass over the floating-point tensors, one host sync per call. Integer tensors (e.g. BatchNorm's
``num_batches_tracked``) are always finite and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor


def _kind(t: Tensor | np.ndarray) -> str:
    """'NaN', '+inf', '-inf' or a mix, for a tensor known to hold a non-finite value."""
    arr = t.detach().float().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, dtype=np.float64)
    kinds = [
        name
        for name, hit in (
            ("NaN", np.isnan(arr).any()),
            ("+inf", np.isposinf(arr).any()),
            ("-inf", np.isneginf(arr).any()),
        )
        if hit
    ]
    return "/".join(kinds) or "non-finite"


def first_non_finite(named: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> tuple[str, str] | None:
    """``(name, 'NaN'|'+inf'|...)`` of the first floating-point tensor holding a non-finite value, else None.

    ``named``: a state dict (name -> tensor; other values are ignored), or ``(name, tensor)`` pairs such as
    ``module.named_parameters()``. Nested dicts/lists (optimizer states) are walked, names joined with ``.``.
    """
    items = named.items() if isinstance(named, Mapping) else named
    flat: list[tuple[str, Tensor]] = []
    _flatten(items, "", flat)
    if not flat:
        return None
    # One reduction per tensor on its own device, one sync for all of them.
    ok = torch.stack([torch.isfinite(t).all().to("cpu", non_blocking=True) for _, t in flat])
    if bool(ok.all()):
        return None
    name, t = flat[int((~ok).nonzero()[0, 0])]
    return name, _kind(t)


def _flatten(items: Iterable[tuple[Any, Any]], prefix: str, out: list[tuple[str, Tensor]]) -> None:
    for key, val in items:
        name = f"{prefix}{key}"
        if isinstance(val, Tensor):
            if val.is_floating_point() and val.numel() > 0:
                out.append((name, val.detach()))
        elif isinstance(val, Mapping):
            _flatten(val.items(), f"{name}.", out)
        elif isinstance(val, (list, tuple)):
            _flatten(enumerate(val), f"{name}.", out)


_CHUNK = 1 << 22  # values per block: isfinite makes float and bool temporaries of its input's size


def _blocks(arr: Any) -> Iterable[Any]:
    """Views of ``arr`` of at most ~``_CHUNK`` values, split along its longest axis (an output image of
    hundreds of MB is checked with ~20 MB of temporaries instead of several full-size ones)."""
    size = arr.numel() if isinstance(arr, Tensor) else arr.size
    if arr.ndim == 0 or size <= _CHUNK:
        yield arr
        return
    axis = int(np.argmax(arr.shape))
    n = int(arr.shape[axis])
    step = max(1, n * _CHUNK // size)
    for i in range(0, n, step):
        yield arr[(slice(None),) * axis + (slice(i, i + step),)]


def array_non_finite(arr: np.ndarray | Tensor) -> str | None:
    """None when every value of an image/array is finite, else what was found ('NaN', '+inf', ...). Checked in
    blocks of ~4M values (bounded temporaries, however big the image)."""
    if isinstance(arr, Tensor):
        if not arr.is_floating_point():
            return None
        ok = all(bool(torch.isfinite(part).all()) for part in _blocks(arr.detach()))
        return None if ok else _kind(arr)
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.floating) or all(bool(np.isfinite(part).all()) for part in _blocks(a)):
        return None
    return _kind(a)


__all__ = ["array_non_finite", "first_non_finite"]
