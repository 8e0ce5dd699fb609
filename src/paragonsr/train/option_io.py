"""Load a training YAML into :class:`Options`: scientific-notation floats, ``--force key.path=value``
overrides, ``--debug`` adjustments, and validation errors that name the key path, the expected type and a
did-you-mean for unknown keys."""

from __future__ import annotations

import difflib
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from paragonsr.errors import ParagonSRError
from paragonsr.train.options import DATASET_TYPES, OPTIM_TYPES, SCHED_TYPES, Options, OTFDatasetOpt
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
_TAGS = {"paired", "otf", *OPTIM_TYPES.values(), *SCHED_TYPES.values()}
_TAG_CHOICES = {"datasets": DATASET_TYPES, "optim": OPTIM_TYPES, "sched": SCHED_TYPES}


def _unwrap(tp: Any) -> list[Any]:
    """Candidate types behind Optional/Union/Annotated."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for a in typing.get_args(tp):
            out += _unwrap(a)
        return out
    return [tp]


def _tag_of(model: type[BaseModel]) -> str:
    if issubclass(model, OTFDatasetOpt):
        return "otf"
    f = model.model_fields.get("type")
    return "paired" if "dataroot_lq" in model.model_fields else str(f.default if f else "")


def _model_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """Walk the schema along an error location; return (model at the end or None, its annotation)."""
    ann: Any = Options
    for part in loc:
        cands = _unwrap(ann)
        models = [c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)]
        if part in _TAGS:
            picked = [m for m in models if _tag_of(m) == part]
            ann = picked[0] if picked else None
            continue
        field = next(
            (m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields), None
        )
        containers = [c for c in cands if typing.get_origin(c) in (dict, list)]
        if field is not None:
            ann = field.annotation
        elif containers and typing.get_args(containers[0]):
            ann = typing.get_args(containers[0])[-1]
        else:
            return None, None
    models = [c for c in _unwrap(ann) if isinstance(c, type) and issubclass(c, BaseModel)]
    return (models[0] if len(models) == 1 else None), ann


def _type_name(ann: Any) -> str:
    if ann is None:
        return "?"
    s = str(ann) if not isinstance(ann, type) else ann.__name__
    return s.replace("typing.", "").replace("NoneType", "null")


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def format_validation_error(exc: ValidationError, source: str = "options") -> str:
    lines = []
    for err in exc.errors():
        raw_loc = tuple(err["loc"])
        loc = tuple(p for p in raw_loc if p not in _TAGS)
        path = ".".join(str(p) for p in loc) or "<root>"
        kind = err["type"]
        if kind == "extra_forbidden":
            owner, _ = _model_at(raw_loc[:-1])
            fields = sorted(owner.model_fields) if owner is not None else []
            hint = _did_you_mean(str(loc[-1]), sorted({*fields, *known_keys(loc[:-1])}))
            lines.append(f"{path}: unknown key{hint} (allowed here: {', '.join(fields)})")
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            section = "datasets" if "datasets" in loc else "sched" if "scheduler" in str(loc) else "optim"
            choices = sorted({v for v in _TAG_CHOICES[section]})
            given = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else None
            if section == "datasets":
                names = ["PairedImageDataset", "RealESRGANDataset", "OTFDataset"]
            else:
                names = sorted(set(_TAG_CHOICES[section].values()))
            hint = _did_you_mean(str(given), names) if given else ""
            lines.append(f"{path}.type: unknown type {given!r}{hint} (expected one of {', '.join(names)})")
            del choices
        elif kind == "missing":
            _, ann = _model_at(raw_loc)
            lines.append(f"{path}: required key is missing (expected {_type_name(ann)})")
        else:
            _, ann = _model_at(raw_loc)
            got = err.get("input")
            got_s = f"{got!r} ({type(got).__name__})" if not isinstance(got, dict) else "a mapping"
            lines.append(f"{path}: {err['msg']}; expected {_type_name(ann)}, got {got_s}")
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
        raise OptionError(format_validation_error(exc, source)) from None
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
