"""Generate docs/options.md: every training option (from the pydantic schema) and every registered type a
``type:`` key can name (architectures, losses, metrics, degradation pipelines) with their arguments; and
docs/options.schema.json, the JSON Schema editors validate option files with.

    python scripts/gen_options_doc.py [--out docs/options.md] [--schema docs/options.schema.json] [--check]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from paragonsr.degrade.realesrgan_opts import RealESRGANOpt
from paragonsr.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, Registry
from paragonsr.train import option_types as T
from paragonsr.train import options as O
from paragonsr.train.option_schema import option_schema

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("(top level)", O.Options, "General settings and Real-ESRGAN's top-level degradation keys."),
    (
        "datasets.<phase>",
        O.PairedDatasetOpt,
        "Keys of every dataset; each `type` below adds its own (paired: `PairedImageDataset`, the default).",
    ),
    (
        "datasets.<phase> (on the fly)",
        O.OTFDatasetOpt,
        "Keys of datasets whose LQ a degradation pipeline makes in the loader workers (`OTFDataset`).",
    ),
    (
        "train",
        O.TrainOpt,
        "Optimisation. Any `<name>_opt` key (pixel_opt, perceptual_opt, gan_opt, ...) is a loss.",
    ),
    ("train.optim_g / optim_d: Adam", O.AdamOpt, ""),
    ("train.optim_g / optim_d: AdamW", O.AdamWOpt, ""),
    ("train.optim_g / optim_d: SGD", O.SGDOpt, ""),
    ("train.scheduler: MultiStepLR", O.MultiStepLROpt, ""),
    ("train.scheduler: CosineAnnealingLR", O.CosineAnnealingLROpt, ""),
    ("train.scheduler: ConstantLR", O.ConstantLROpt, ""),
    (
        "train.<name>_opt / train.losses[i]",
        T.LossOpt,
        "Keys of every loss; each `type` (below) adds its constructor's arguments.",
    ),
    ("val", O.ValOpt, "Validation every `val_freq` iterations (EMA weights, calibrated ParagonSR2 kernels)."),
    (
        "val.metrics.<name>",
        T.MetricOpt,
        "Keys of every metric; each `type` (below) adds its function's arguments.",
    ),
    ("path", O.PathOpt, ""),
    ("logger", O.LoggerOpt, ""),
    ("logger.wandb", O.WandbOpt, "Optional; wandb is imported only when `project` is set."),
    ("dist_params", O.DistOpt, ""),
    (
        "realesrgan pipeline",
        RealESRGANOpt,
        "Every option of the `realesrgan` degradation (`paragonsr degrade --pipeline realesrgan --config file.yml`; "
        "a whole BasicSR option file works there too). *where*: the place of the key in a training option file "
        "(`datasets.train`'s `degradation_opt` for keys of ours). Stage-2 keys end in `2`.",
    ),
]
_WHERE = {"top": "top level", "dataset": "`datasets.<phase>`", "pipeline": "`degradation_opt`"}


def _tname(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        if any(type(m).__name__ == "Discriminator" for m in args[1:]):
            return "mapping (discriminated by `type`)"
        return _tname(args[0])  # constraints and validators: the description and bounds say them
    if origin in (typing.Union, types.UnionType):
        if any(type(m).__name__ == "Tag" for a in args for m in typing.get_args(a)[1:]):
            return "mapping (discriminated by `type`)"
        return " | ".join(_tname(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_tname(a) for a in args)}]"
    if ann is Ellipsis:
        return "..."
    if isinstance(ann, type):
        return "None" if ann is type(None) else ann.__name__
    s = str(ann).replace("typing.", "").replace("NoneType", "null")
    for mod in ("paragonsr.train.options.", "pydantic.main.", "collections.abc.", "pathlib."):
        s = s.replace(mod, "")
    return s


def _extra(field: Any) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    d = field.default
    if d is PydanticUndefined:
        d = field.default_factory() if field.default_factory else None
    if d is None and "default" in _extra(field):
        d = _extra(field)["default"]  # unset = the pipeline's default
    if isinstance(d, BaseModel):
        return "(section defaults)"
    return f"`{d!r}`" if d not in (None, {}, []) else ("`~`" if d is None else f"`{d!r}`")


def section_table(model: type[BaseModel], only: dict[str, Any] | None = None) -> list[str]:
    """The markdown table of ``model``'s fields (or of the fields ``only``)."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    # keys declared with the degradation pipelines (``layout``) after the section's own ones
    items = (only if only is not None else model.model_fields).items()
    fields = sorted(items, key=lambda kv: "layout" in _extra(kv[1]))
    for name, f in fields:
        desc = (f.description or "").replace("|", "\\|")
        tname = _tname(f.annotation).replace("|", "\\|")
        if model is RealESRGANOpt:
            desc = f"*{_WHERE[_extra(f)['layout']]}*: {desc}"
        rows.append(f"| `{name}` | {tname} | {_default(f)} | {desc} |")
    return rows


def registry_table(registry: Any, title: str) -> list[str]:
    """A table of the entries of ``registry`` whose arguments no option model lists (degradation pipelines)."""
    out = [f"### {title}", "", "| type | arguments |", "|---|---|"]
    for name in registry.names():
        obj = registry.get(name)
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            sig = inspect.signature(target)
            hints = typing.get_type_hints(target)
        except Exception:  # unresolvable annotations: names only
            sig, hints = inspect.signature(target), {}
        args = []
        for pname, p in sig.parameters.items():
            if pname in ("self", "args", "kwargs", "_") or p.kind is inspect.Parameter.VAR_KEYWORD:
                continue
            t = _tname(hints[pname]) if pname in hints else ""
            d = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
            args.append(f"`{pname}`{': ' + t if t else ''}{d}".replace("|", "\\|"))
        aliases = registry.aliases(name)
        label = f"`{name}`" + (f" (aliases: {', '.join(aliases)})" if aliases else "")
        out.append(f"| {label} | {', '.join(args) or '-'} |")
    return [*out, ""]


# (registry, generated models, section heading, note)
TYPE_SECTIONS: list[tuple[Registry, dict[str, type[BaseModel]], str, str]] = [
    (ARCH_REGISTRY, T.ARCH_OPTS, "network_g / network_d", "Architectures (`type`) and their arguments."),
    (LOSS_REGISTRY, T.LOSS_OPTS, "train.<name>_opt", "Losses: the keys of `train.<name>_opt` above, plus:"),
    (
        METRIC_REGISTRY,
        T.METRIC_OPTS,
        "val.metrics.<name>",
        "Metrics: the keys of `val.metrics.<name>`, plus:",
    ),
    (DATASET_REGISTRY, T.DATASET_OPTS, "datasets.<phase>", "Datasets: the keys of `datasets.<phase>`, plus:"),
]


def type_sections(registry: Registry, models: dict[str, type[BaseModel]], where: str, note: str) -> list[str]:
    """One table per registered ``type``: the fields its constructor adds to the section's base keys."""
    lines = [f"## `{where}` types", "", note, ""]
    for key, model in models.items():
        base: Any = model.__bases__[0]
        aliases = registry.aliases(key)
        lines += [f"### `{registry.spelling(key)}`", ""]
        if aliases:
            lines += [f"Also `type: {'`, `'.join(aliases)}`.", ""]
        if model.__doc__:
            lines += [model.__doc__.strip(), ""]
        own = {n: f for n, f in model.model_fields.items() if n not in base.model_fields or n == "type"}
        lines += [*section_table(model, own), ""]
    return lines


def render() -> str:
    import paragonsr.degrade  # noqa: F401  registers the pipelines
    from paragonsr.registry import DEGRADATION_REGISTRY

    lines = [
        "# Training options reference",
        "",
        "<!-- generated by scripts/gen_options_doc.py - do not edit by hand -->",
        "",
        "`paragonsr train -opt file.yml [--auto_resume] [--debug] [--force key.path=value ...] [--allow-download] "
        "[--launcher pytorch]`. The vocabulary is BasicSR / Real-ESRGAN / traiNNer-redux's. Unknown keys are "
        "errors with the key path, the expected type and a did-you-mean; `type:` names are case-insensitive. "
        "`1e-4` parses as a float with or without `!!float`.",
        "",
        "Errors are one line each, naming the key path: `network_g.num_feats: unknown argument; did you mean "
        "'num_feat'? (accepted: ...)`, `train.pixel_opt.type: unknown loss 'L1Los'; did you mean 'L1Loss'? "
        "(expected one of ...)`, `model_type: unknown model type 'SRModle'; did you mean 'SRModel'? (expected one "
        "of GANModel, SRModel)`, `train.optim_g.lrr: unknown key; did you mean 'lr'? (allowed here: ...)`. The "
        "keys of `network_g`, losses, metrics and datasets are the arguments of the registered constructors "
        "(sections at the end of this page).",
        "",
        "Editors validate and complete option files with [`options.schema.json`](options.schema.json) (generated "
        "with this page): first line `# yaml-language-server: $schema=<path to>/docs/options.schema.json`. "
        "Regenerate both with `make docs` (`python scripts/gen_options_doc.py`).",
        "",
        "Output layout: `experiments/<name>/{models,training_states,visualization,tb_logger}` + "
        "`train_<name>_<time>.log`. Networks are saved as safetensors (`net_g_<iter>`, EMA as `net_g_ema_<iter>` "
        "(`params_ema`), `net_d_<iter>`), training states as `training_states/<iter>.state`.",
        "",
    ]
    for title, model, note in SECTIONS:
        lines += [f"## `{title}`", ""] + ([note, ""] if note else []) + section_table(model) + [""]
    for registry, models, where, note in TYPE_SECTIONS:
        lines += type_sections(registry, models, where, note)
    lines += ["## Registered degradation pipelines", ""]
    lines += registry_table(DEGRADATION_REGISTRY, "Degradation pipelines (`datasets.<phase>.degradation`)")
    return "\n".join(lines).rstrip() + "\n"


def render_schema() -> str:
    return json.dumps(option_schema(), indent=1, sort_keys=True) + "\n"


def _write(out: Path, text: str) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out} ({len(text.splitlines())} lines)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "options.md"))
    ap.add_argument(
        "--schema", default=str(Path(__file__).resolve().parents[1] / "docs" / "options.schema.json")
    )
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = ap.parse_args()
    outputs = [(Path(args.out), render()), (Path(args.schema), render_schema())]
    if args.check:
        stale = [
            out for out, text in outputs if not (out.is_file() and out.read_text(encoding="utf-8") == text)
        ]
        for out, _ in outputs:
            print(
                f"{out}: {'OUT OF DATE (run scripts/gen_options_doc.py)' if out in stale else 'up to date'}"
            )
        return 1 if stale else 0
    for out, text in outputs:
        _write(out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
