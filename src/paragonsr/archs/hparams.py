"""Every architecture records how it was built, so a checkpoint can rebuild it from the file alone.

An instance carries ``arch_name`` (the registered name that rebuilds it) and ``arch_kwargs`` (keyword arguments for
that name); :func:`paragonsr.checkpoint.save_model` writes both, whoever built the model:

- every object registered in ``ARCH_REGISTRY`` (a class or a timm-style factory) passes through
  :func:`record_hparams`, which records the arguments given to each call under the registered name (arguments left
  out keep the defaults that name gives them on rebuilding). A factory records after the class it builds, so the
  outermost registered call wins: ``paragonsr2_nano(scale=2)`` is saved as ``paragonsr2_nano`` with
  ``{"scale": 2}``, not as a ``paragonsr2`` with the nano widths;
- a class that is only built *through* a registered factory (SPAN, RRDBNet, ParagonSR v1) is decorated with
  :func:`rebuilt_by`: built directly, it records the factory's name and every argument whose value differs from
  the factory's default (the class defaults may differ from the factory's, e.g. SPAN's width).

Instances of unregistered subclasses record nothing (their layout is unknown to the registry).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

T = TypeVar("T")

_EMPTY = inspect.Parameter.empty


def _named_arguments(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one call by parameter name (``**overrides`` flattened), without defaults."""
    out: dict[str, Any] = {}
    for name, value in sig.bind(*args, **kwargs).arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"architectures take keyword hyperparameters; got extra positional {value!r}")
        else:
            out[name] = value
    out.pop("self", None)
    return out


def _stamp(model: Any, name: str, kwargs: dict[str, Any]) -> None:
    if isinstance(model, nn.Module):
        target: Any = model  # plain attributes; nn.Module's stub types attribute values as Tensor | Module
        target.arch_name = name
        target.arch_kwargs = dict(kwargs)


def _wrap_init(cls: type, record: Callable[[nn.Module, dict[str, Any]], None]) -> None:
    """Replace ``cls.__init__`` (in place; signature kept for introspection) so that an instance of exactly
    ``cls`` calls ``record(self, named_arguments)`` once built."""
    init = cls.__init__  # type: ignore[misc]
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:
            record(self, _named_arguments(sig, (self, *args), kwargs))

    cls.__init__ = __init__  # type: ignore[misc]


def record_hparams(obj: T, name: str) -> T:
    """Make the registered class or factory ``obj`` record ``name`` and the arguments of every call on the model
    it returns. Classes are changed in place; a factory is returned wrapped (``functools.wraps``: signature,
    annotations and docstring unchanged)."""
    if inspect.isclass(obj):
        _wrap_init(obj, lambda model, kwargs: _stamp(model, name, kwargs))
        return obj
    sig = inspect.signature(obj)  # type: ignore[arg-type]

    @functools.wraps(obj)  # type: ignore[arg-type]
    def build(*args: Any, **kwargs: Any) -> Any:
        model = obj(*args, **kwargs)  # type: ignore[operator]
        _stamp(model, name, _named_arguments(sig, args, kwargs))
        return model

    return build  # type: ignore[return-value]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def rebuilt_by(factory: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: instances built directly record the registered ``factory`` and every argument (defaults
    included) whose value differs from that factory's default. The factory must accept every constructor argument
    of the class by name (directly or through ``**overrides``)."""

    def deco(cls: type[T]) -> type[T]:
        sig = inspect.signature(cls.__init__)

        def record(model: nn.Module, given: dict[str, Any]) -> None:
            from paragonsr.registry import ARCH_REGISTRY

            bound = sig.bind(model, **given)
            bound.apply_defaults()
            own = inspect.signature(ARCH_REGISTRY.get(factory)).parameters
            kwargs = {
                k: v
                for k, v in bound.arguments.items()
                if k != "self"
                and not (k in own and own[k].default is not _EMPTY and _same(v, own[k].default))
            }
            _stamp(model, ARCH_REGISTRY.canonical(factory), kwargs)

        _wrap_init(cls, record)
        return cls

    return deco


__all__ = ["rebuilt_by", "record_hparams"]
