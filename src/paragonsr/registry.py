"""Name -> object registries shared by architectures, losses, datasets and degradation pipelines.

One pattern everywhere (BasicSR/traiNNer users know it): decorate a class or factory function with
``@REGISTRY.register()`` and build it from an option dict ``{"type": name, **kwargs}``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _norm(name: str) -> str:
    return name.strip().lower()


class Registry:
    """A case-insensitive mapping from names (and aliases) to classes or factory functions."""

    def __init__(
        self, kind: str, wrap: Callable[[Any, str], Any] | None = None, modules: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        # modules whose import registers the entries, imported by name on the first lookup (so the code that
        # looks entries up never imports them itself: no import cycle between them and their users)
        self._modules = modules
        self._loaded = not modules
        # applied to each object as it is registered (``wrap(obj, name)``); the result is what gets stored
        self._wrap = wrap
        self._items: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}
        # how each name and alias was written at registration (``SRVGGNetCompact``), for messages and docs
        self._spelled: dict[str, str] = {}

    def register(self, name: str | None = None, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: register a class or factory under ``name`` (default its ``__name__``) and ``aliases``, any
        case. Raises KeyError for a name or alias already taken."""

        def deco(obj: T) -> T:
            key = _norm(name or obj.__name__)  # type: ignore[attr-defined]
            if key in self._items or key in self._aliases:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            for alias in aliases:
                a = _norm(alias)
                if a == key:
                    continue
                if a in self._items or a in self._aliases:
                    raise KeyError(f"{self.kind} alias '{a}' is registered twice")
                self._aliases[a] = key
                self._spelled[a] = alias.strip()
            own = getattr(obj, "__name__", "")
            written = (name or own).strip()
            # a lower-case registered name takes the object's own capitals when they spell the same word
            self._spelled[key] = own if written == key and _norm(own) == key else written
            if self._wrap is not None:
                obj = self._wrap(obj, key)
            self._items[key] = obj
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: a module being imported may look entries up itself
        for module in self._modules:
            importlib.import_module(module)

    def canonical(self, name: str) -> str:
        """The canonical (lower-case) name of ``name`` or an alias. Raises KeyError with a did-you-mean."""
        self._load()
        key = _norm(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            choices = sorted(self._items)
            close = difflib.get_close_matches(key, choices + sorted(self._aliases), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"unknown {self.kind} '{name}'.{hint} Available: {', '.join(choices)}")
        return key

    def get(self, name: str) -> Any:
        """The registered object of ``name`` (any case, aliases). Raises KeyError with a did-you-mean."""
        return self._items[self.canonical(name)]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the object of ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def build_from_opt(self, opt: dict[str, Any]) -> Any:
        """Build from a BasicSR-style option dict: ``{"type": name, **kwargs}``."""
        opt = dict(opt)
        if "type" not in opt:
            raise KeyError(f"{self.kind} options need a 'type' key; got keys {sorted(opt)}")
        return self.build(opt.pop("type"), **opt)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load()
        key = _norm(name)
        return key in self._items or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        """Canonical (lower-case) names, sorted."""
        self._load()
        return sorted(self._items)

    def spelling(self, name: str) -> str:
        """How the entry of ``name`` (a name or alias, any case) was written: ``compact`` -> ``SRVGGNetCompact``.
        Raises KeyError (with a did-you-mean) for an unknown name."""
        return self._spelled[self.canonical(name)]

    def aliases(self, name: str) -> list[str]:
        """The aliases of the entry of ``name``, as written at registration, sorted case-insensitively."""
        key = self.canonical(name)
        return sorted((self._spelled[a] for a, k in self._aliases.items() if k == key), key=str.lower)

    def spellings(self, name: str | None = None) -> list[str]:
        """Every accepted spelling (names and aliases as written) of one entry, or of all entries."""
        keys = [self.canonical(name)] if name is not None else self.names()
        return [s for k in keys for s in (self._spelled[k], *self.aliases(k))]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} entries)"


def _record_arch_hparams(obj: Any, name: str) -> Any:
    # Every architecture records its name and constructor arguments on the instance (checkpoint metadata).
    from paragonsr.archs.hparams import record_hparams

    return record_hparams(obj, name)


ARCH_REGISTRY = Registry("architecture", wrap=_record_arch_hparams)
LOSS_REGISTRY = Registry("loss")
DATASET_REGISTRY = Registry("dataset")
DEGRADATION_REGISTRY = Registry("degradation pipeline")
METRIC_REGISTRY = Registry("metric")
# training model classes (``model_type``): registered by paragonsr.train.sr_model / gan_model on first lookup
MODEL_REGISTRY = Registry(
    "model type", modules=("paragonsr.train.sr_model", "paragonsr.train.gan_model", "paragonsr.train.qat")
)
