"""Load a training YAML into :class:`Options`: scientific-notation floats, ``--force key.path=value``
overrides, ``--debug`` adjustments, and validation errors that name the key path, the expected type and a
did-you-mean for unknown keys."""

from __future__ import annotations

import collections.abc
import difflib
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Discriminator, Tag, ValidationError

from paragonsr.errors import ParagonSRError
from paragonsr.registry_options import RegisteredOpt, TypeTag
from paragonsr.train.options import Options
from paragonsr.train.trainner_compat import known_keys

__all__ = [
    "OptionError",
    "apply_force",
    "format_validation_error",
    "load_options",
    "parse_options",
    "read_yaml",
]


class OptionError(ParagonSRError, ValueError):
    """A problem in an option file; the message lists every offending key."""


class _Loader(yaml.SafeLoader):
    pass


# PyYAML follows YAML 1.1 where `1e-4` (no dot) is a string; BasicSR users write `!!float 1e-4` to cope.
# Resolve both spellings as floats so a forgotten tag is not a silent string learning rate.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"option file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise OptionError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise OptionError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_force(data: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML; list items by index: ``a.0=1``)."""
    for item in assignments:
        if "=" not in item:
            raise OptionError(f"--force expects key.path=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.load(raw, Loader=_Loader)
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = node[int(part)] if isinstance(node, list) else node.get(part)
            if nxt is None:
                nxt = {}
                if isinstance(node, list):
                    raise OptionError(f"--force {key}: no item {part} in list {'.'.join(parts[:i])}")
                node[part] = nxt
            if not isinstance(nxt, dict | list):
                raise OptionError(f"--force {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
            node = nxt
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return data


# ---------------------------------------------------------------- error formatting
def _members(ann: Any) -> tuple[list[type[BaseModel]], dict[str, type[BaseModel]], TypeTag | None, list[Any]]:
    """What stands behind an annotation: its models, the tag -> model map and :class:`TypeTag` of a discriminated
    union, and the other candidate types (containers, scalars), through Optional/Union/Annotated."""
    models: list[type[BaseModel]] = []
    tags: dict[str, type[BaseModel]] = {}
    others: list[Any] = []
    disc: list[TypeTag] = []

    def visit(tp: Any, tag: str | None = None) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            inner, *meta = typing.get_args(tp)
            for m in meta:
                if isinstance(m, Tag):
                    tag = m.tag
                elif isinstance(m, Discriminator) and isinstance(m.discriminator, TypeTag):
                    disc.append(m.discriminator)
            visit(inner, tag)
        elif origin in (typing.Union, types.UnionType):
            for a in typing.get_args(tp):
                visit(a)
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            models.append(tp)
            if tag is not None:
                tags[tag] = tp
        elif tp is not type(None):
            others.append(tp)

    visit(ann)
    return models, tags, (disc[0] if disc else None), others


def _walk(loc: tuple[Any, ...]) -> tuple[list[Any], Any]:
    """Follow an error location through the schema: (the location without union tags, the annotation at its end
    or None where the schema cannot be followed)."""
    ann: Any = Options
    path: list[Any] = []
    for part in loc:
        if ann is None:
            path.append(part)
            continue
        models, tags, _, others = _members(ann)
        if isinstance(part, str) and part in tags:  # the member a discriminated union picked: not a key
            ann = tags[part]
            continue
        if isinstance(part, str) and _is_member_tag(part, models, others):
            continue  # the union member pydantic tried (``str``, ``list[str]``, ``int``...): not a key
        path.append(part)
        field = next(
            (m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields), None
        )
        containers = [c for c in others if typing.get_origin(c) in (dict, list, collections.abc.Sequence)]
        if field is not None:  # pydantic keeps a top-level Annotated's metadata (the discriminator) apart
            disc = [m for m in field.metadata if isinstance(m, Discriminator)]
            ann = typing.Annotated[(field.annotation, disc[0])] if disc else field.annotation
        elif containers and typing.get_args(containers[0]):
            ann = typing.get_args(containers[0])[-1]
        else:
            ann = None
    return path, ann


def _is_member_tag(part: str, models: list[type[BaseModel]], others: list[Any]) -> bool:
    """True when ``part`` names the member of a plain union (no models, no mapping member) that pydantic tried,
    e.g. ``str`` / ``list[str]`` of ``str | list[str]``: such a location entry is not a key of the option file."""
    mapping = any(typing.get_origin(o) in (dict, collections.abc.Mapping) or o is dict for o in others)
    return not models and not mapping and len(others) > 1


def _type_name(ann: Any) -> str:
    if ann is None:
        return "?"
    models, _, tag, others = _members(ann)
    if tag is not None:
        return f"a mapping with `type` one of {', '.join(tag.choices)}"
    if len(models) == 1 and not others:
        return models[0].__name__
    return _plain(ann)


def _plain(ann: Any) -> str:
    """An annotation as an option file's author reads it: ``int | 'auto'``, ``str | list[str]``, ``null`` (no
    ``Annotated[..., FieldInfo(...)]``, ``Literal[...]`` or ``collections.abc`` prefixes)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _plain(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(_plain(a) for a in args))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if ann is type(None):
        return "null"
    if isinstance(ann, type) and not args:
        return ann.__name__
    if origin is not None and args:
        name = {"Sequence": "list", "Mapping": "dict"}.get(origin.__name__, origin.__name__)
        return f"{name}[{', '.join('...' if a is Ellipsis else _plain(a) for a in args)}]"
    return str(ann).replace("typing.", "").replace("NoneType", "null")


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _loss_path(path: list[Any], data: dict[str, Any] | None) -> list[Any]:
    """``train.losses.<i>...`` -> ``train.pixel_opt...`` for a loss given as a BasicSR ``<name>_opt`` key (the
    collected entry carries that name)."""
    if data is None or len(path) < 3 or path[:2] != ["train", "losses"] or not isinstance(path[2], int):
        return path
    train = data.get("train")
    losses = train.get("losses") if isinstance(train, dict) else None
    item = losses[path[2]] if isinstance(losses, list) and path[2] < len(losses) else None
    if isinstance(item, dict) and item.get("name"):
        return ["train", f"{item['name']}_opt", *path[3:]]
    return path


def _one_line(err: Any, data: dict[str, Any] | None) -> str:
    raw_loc = tuple(err["loc"])
    clean, ann = _walk(raw_loc)
    path = ".".join(str(p) for p in _loss_path(clean, data)) or "<root>"
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        _, owner_ann = _walk(raw_loc[:-1])
        owners = _members(owner_ann)[0] if owner_ann is not None else []
        fields = sorted(owners[0].model_fields) if len(owners) == 1 else []
        hint = _did_you_mean(str(clean[-1]), sorted({*fields, *known_keys(tuple(clean[:-1]))}))
        if owners and issubclass(owners[0], RegisteredOpt):  # a constructor's keyword arguments
            return f"{path}: unknown argument{hint} (accepted: {', '.join(fields)})"
        return f"{path}: unknown key{hint} (allowed here: {', '.join(fields)})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = _members(ann)[2]
        if not isinstance(got, dict):
            return f"{path}: expected a mapping with a `type` key, got {got!r} ({type(got).__name__})"
        if "type" not in got or tag is None:
            expected = f" (one of {', '.join(tag.choices)})" if tag is not None else ""
            return f"{path}.type: required key is missing{expected}"
        return f"{path}.type: {tag.unknown(got['type'])}"
    if kind == "unknown_name":
        return f"{path}: {err['msg']}"
    if kind == "missing":
        return f"{path}: required key is missing (expected {_type_name(ann)})"
    got_s = f"{got!r} ({type(got).__name__})" if not isinstance(got, dict) else "a mapping"
    if len(clean) < len(raw_loc) and not _members(ann)[0] and len(_members(ann)[3]) > 1:
        # one error per union member tried: one line for the key (format_validation_error drops repeats)
        return f"{path}: expected {_type_name(ann)}, got {got_s}"
    return f"{path}: {err['msg']}; expected {_type_name(ann)}, got {got_s}"


def format_validation_error(
    exc: ValidationError, source: str = "options", data: dict[str, Any] | None = None
) -> str:
    """One line per problem of ``exc``: the key path as written in the option file (``data``, when given, maps
    collected losses back to their ``<name>_opt`` key), what is wrong, what was expected and a did-you-mean."""
    lines = list(dict.fromkeys(_one_line(err, data) for err in exc.errors()))
    return f"invalid {source}:\n  " + "\n  ".join(lines)


# ---------------------------------------------------------------- entry points
def _apply_debug(opt: Options) -> None:
    # BasicSR's --debug: prefix the name, print every iteration, validate/save often, no external loggers.
    if not opt.name.startswith("debug"):
        opt.name = f"debug_{opt.name}"
    opt.train.total_iter = min(opt.train.total_iter, 16)
    opt.logger.print_freq = 1
    opt.logger.save_checkpoint_freq = 8
    opt.logger.use_tb_logger = False
    opt.logger.wandb = None
    if opt.val is not None:
        opt.val.val_freq = 8


def _from_trainner(data: dict[str, Any], source: str) -> dict[str, Any]:
    # traiNNer-redux keys -> ours (one warning line per key that has no effect here); see trainner_compat
    from paragonsr.train.trainner_compat import translate

    tr = translate(data)
    if tr.errors:
        raise OptionError(f"invalid {source}:\n  " + "\n  ".join(tr.errors))
    for line in tr.warnings:
        logging.getLogger("paragonsr.train").warning("%s: %s", source, line)
    return tr.data


def parse_options(
    data: dict[str, Any], *, force: list[str] | None = None, debug: bool = False, source: str = "options"
) -> Options:
    data = apply_force(data, list(force or []))
    data = _from_trainner(data, source)
    try:
        opt = Options.model_validate(data)
    except ValidationError as exc:
        raise OptionError(format_validation_error(exc, source, data)) from None
    from paragonsr.train.option_check import check_registered

    problems = check_registered(opt)
    if problems:
        raise OptionError(f"invalid {source}:\n  " + "\n  ".join(problems))
    if debug:
        _apply_debug(opt)
    return opt


def load_options(
    path: str | Path, *, force: list[str] | None = None, debug: bool = False, root: str | Path | None = None
) -> Options:
    """Read, override, validate. Relative data/weight paths stay relative to the working directory
    (BasicSR behaviour) unless ``root`` is given."""
    opt = parse_options(read_yaml(path), force=force, debug=debug, source=str(path))
    if root is not None and opt.path.root is None:
        opt.path.root = str(root)
    return opt
