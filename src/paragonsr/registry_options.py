"""Option models generated from registered constructors: one pydantic model per registered name, and the union
that picks one by an option section's ``type``.

A constructor's signature gives the fields (type hints become field types, defaults stay defaults) and its
docstring's ``Args:`` section the descriptions (``name: text``; ``a, b: text`` documents both; indented lines
continue). A timm-style factory ``f(scale, **overrides) -> Class`` also takes the arguments of ``Class``: with
defaults when the factory lists the class arguments it fixes in a ``variant_kwargs`` attribute (those values, the
class's for the rest), else left unset (the factory's own value). Hints pydantic cannot check (``nn.Module``,
callables) become ``Any``. The section's hand-written base model comes first: a field it declares is
not generated again.

The union's discriminator resolves ``type`` through the registry (any capitalisation, aliases), so a typo is a
``union_tag_invalid`` error that :func:`paragonsr.train.option_io.format_validation_error` turns into one line with
a did-you-mean; :class:`TypeTag` carries what that message needs.
"""

from __future__ import annotations

import difflib
import inspect
import re
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, create_model

from paragonsr.registry import Registry

__all__ = [
    "RegisteredOpt", "TypeTag", "any_case", "constructor_fields", "param_docs", "registered_models", "registered_union",
    "unknown_name", "unknown_registered",
]  # fmt: skip

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword Args|Keyword Arguments)\s*:\s*$")
_ENTRY = re.compile(r"^(\w+(?:\s*,\s*\w+)*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class RegisteredOpt(BaseModel):
    """Base of a section built from a registered constructor: ``type`` + the constructor's keyword arguments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    type: str = Field(description="registered name (any capitalisation)")

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments the option file sets (the base's own keys excluded; unset ones left to the
        constructor's defaults)."""
        cls = type(self)
        own = cls.__bases__[0] if cls.__bases__ and issubclass(cls.__bases__[0], RegisteredOpt) else cls
        return self.model_dump(exclude_unset=True, exclude=set(own.model_fields))


def param_docs(obj: Any) -> dict[str, str]:
    """``{parameter: description}`` from the Google-style ``Args:`` sections of ``obj``'s docstring (empty if
    none). A class contributes the class and ``__init__`` docstrings of its bases too (the class's own win)."""
    docs = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        docs = []
        for cls in reversed(obj.__mro__):
            for owner in (cls, vars(cls).get("__init__")):
                doc = (
                    vars(owner).get("__doc__") if isinstance(owner, type) else getattr(owner, "__doc__", None)
                )
                docs.append(inspect.cleandoc(doc) if isinstance(doc, str) else "")
    out: dict[str, str] = {}
    for doc in docs:
        lines, i = doc.splitlines(), 0
        while i < len(lines):
            if not _SECTION.match(lines[i].strip()):
                i += 1
                continue
            i += 1
            indent, names = -1, []
            while i < len(lines) and lines[i].strip():
                line = lines[i]
                ind = len(line) - len(line.lstrip())
                indent = ind if indent < 0 else indent
                if ind < indent:
                    break
                m = _ENTRY.match(line.strip()) if ind == indent else None
                if m:
                    names = [n.strip() for n in m.group(1).split(",")]
                    for n in names:
                        out[n] = m.group(2).strip()
                else:
                    for n in names:
                        out[n] = f"{out[n]} {line.strip()}".strip()
                i += 1
    return out


def _checkable(hint: Any) -> Any:
    """``hint`` if pydantic can validate it and describe it in JSON Schema, else ``Any``."""
    if hint is None:
        return Any
    try:
        TypeAdapter(hint).json_schema()
    except Exception:  # arbitrary classes (nn.Module), callables, arrays: no check from the option file
        return Any
    return hint


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target)
    except Exception:  # an unresolvable forward reference: unchecked fields
        return {}


def _sentence(text: str) -> str:
    return text.rstrip(".")


def constructor_fields(
    obj: Any, skip: Collection[str] = (), optional: Mapping[str, str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """``{name: (annotation, FieldInfo)}`` of the keyword arguments of the class or factory ``obj``.

    ``skip``: arguments that are not options (filled in by the caller). ``optional``: arguments that may be left
    out although the constructor requires or defaults them (``{name: what fills them}``), e.g. a network's
    ``scale`` taken from the top level."""
    optional = optional or {}
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    hints, docs = _hints(target), param_docs(obj)
    ret = hints.get("return")
    if not inspect.isclass(obj) and inspect.isclass(ret):  # a factory: its class documents the arguments too
        docs = {**param_docs(ret), **docs}
    fields: dict[str, tuple[Any, Any]] = {}
    var_kw = False
    for name, p in sig.parameters.items():
        if name == "self" or name in skip or p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
            continue
        desc = _sentence(docs.get(name, ""))
        ann = _checkable(hints.get(name))
        if name in optional:
            fields[name] = (ann, Field(None, description=f"{desc}; unset: {optional[name]}".lstrip("; ")))
        elif p.default is inspect.Parameter.empty:
            fields[name] = (ann, Field(description=desc))
        else:
            fields[name] = (ann, Field(p.default, description=desc))
    if var_kw and not inspect.isclass(obj) and inspect.isclass(ret):  # factory(**overrides) -> Class
        # a factory that names what it fixes (``variant_kwargs``) has known defaults: those, else the class's
        fixed = getattr(obj, "variant_kwargs", None)
        for name, (ann, info) in constructor_fields(ret, skip, optional).items():
            if name in fields:
                continue
            desc = _sentence(info.description or "")
            if fixed is not None and name not in optional:
                default = fixed.get(name, info.default)
                fields[name] = (ann, Field(default, description=desc))
                continue
            note = "unset: this variant's value" if name not in optional else ""
            text = "; ".join(t for t in (desc, note) if t)
            fields[name] = (ann, Field(None, description=text))
    return fields


def any_case(names: Collection[str]) -> dict[str, Any]:
    """JSON Schema of a string equal to one of ``names`` in any capitalisation (JSON Schema regexes have no
    ``(?i)`` flag); ``examples`` lists the names as written."""
    uniq = sorted(set(names), key=str.lower)
    alts = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in n) for n in uniq]
    return {"type": "string", "pattern": f"^({'|'.join(alts)})$", "examples": uniq}


class TypeTag:
    """Discriminator of a ``type``-keyed section: maps an option dict (or a built model) to the canonical name of
    its entry; an unknown name is returned as written (pydantic reports ``union_tag_invalid``)."""

    def __init__(
        self,
        kind: str,
        resolve: Callable[[str], str],
        choices: list[str],
        models: Mapping[str, type[BaseModel]],
        default: str | None = None,
        accepted: list[str] | None = None,
    ) -> None:
        self.kind, self.resolve, self.choices, self.default = kind, resolve, choices, default
        self.accepted = accepted or choices  # every spelling a did-you-mean may suggest (aliases too)
        self._tags = {m: t for t, m in models.items()}
        self.__name__ = f"{kind.replace(' ', '_')}_type"  # pydantic names the validator after it

    def __call__(self, v: Any) -> str | None:
        if isinstance(v, BaseModel):
            return self._tags.get(type(v))
        if not isinstance(v, dict):
            return None
        t = v.get("type", self.default)
        if t is None:
            return None
        try:
            return self.resolve(str(t))
        except KeyError:
            return str(t)

    def unknown(self, given: Any) -> str:
        """``unknown <kind> 'X'; did you mean 'Y'? (expected one of ...)`` for a ``type`` value ``given``."""
        return unknown_name(self.kind, given, self.choices, self.accepted)


def unknown_name(kind: str, given: Any, choices: list[str], accepted: list[str] | None = None) -> str:
    """One line for a name that is not registered: ``unknown <kind> 'X'; did you mean 'Y'? (expected one of
    <choices>)``; the did-you-mean looks among ``accepted`` (default ``choices``) in any capitalisation."""
    low = {c.lower(): c for c in (accepted or choices)}
    close = difflib.get_close_matches(str(given).lower(), list(low), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(low[c]) for c in close)}?" if close else ""
    return f"unknown {kind} {given!r}{hint} (expected one of {', '.join(choices)})"


def unknown_registered(registry: Registry, given: Any) -> str:
    """:func:`unknown_name` for ``registry``: its entries as written, aliases in the did-you-mean."""
    names = sorted((registry.spelling(k) for k in registry.names()), key=str.lower)
    return unknown_name(registry.kind, given, names, registry.spellings())


def registered_models(
    registry: Registry,
    base: type[BaseModel],
    *,
    prefix: str,
    module: str,
    skip: Collection[str] = (),
    optional: Mapping[str, str] | None = None,
    default: str | None = None,
) -> dict[str, type[BaseModel]]:
    """``{canonical name: model}`` for every entry of ``registry``: the entry's ``option_base`` (or ``base``) plus
    its constructor fields; ``type`` takes the entry's spellings in any case (required unless it is ``default``).
    The models are named ``<prefix>_<name as registered>`` in ``module``, which must hold them under those names
    (pickling finds a class by module and name)."""
    out: dict[str, type[BaseModel]] = {}
    default_key = registry.canonical(default) if default else None
    for key in registry.names():
        obj = registry.get(key)
        own = getattr(obj, "option_base", base)
        fields = {
            n: f
            for n, f in constructor_fields(obj, skip, optional).items()
            if n not in own.model_fields and n != "type"
        }
        spelled = registry.spelling(key)
        aliases = registry.aliases(key)
        desc = f"`{spelled}`" + (f" (or {', '.join(f'`{a}`' for a in aliases)})" if aliases else "")
        schema = any_case(registry.spellings(key))
        type_field = (
            Field(spelled, description=desc, json_schema_extra=schema)
            if key == default_key
            else Field(description=desc, json_schema_extra=schema)
        )
        doc = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
        model = create_model(  # type: ignore[call-overload]
            f"{prefix}_{spelled}",
            __base__=own,
            __doc__=doc or None,
            __module__=module,
            type=(str, type_field),
            **fields,
        )
        out[key] = model
    return out


def registered_union(
    registry: Registry, models: Mapping[str, type[BaseModel]], default: str | None = None
) -> Any:
    """``Annotated[Union[...], Discriminator(TypeTag)]`` over ``models`` (from :func:`registered_models`)."""
    members = tuple(Annotated[m, Tag(k)] for k, m in models.items())
    names = sorted((registry.spelling(k) for k in models), key=str.lower)
    tag = TypeTag(registry.kind, registry.canonical, names, models, default, registry.spellings())
    return Annotated[Union[members], Discriminator(tag)]  # noqa: UP007 (a runtime tuple of members)
