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
from paragonsr.train import options as O
from paragonsr.train.option_schema import option_schema

SECTIONS: list[tuple[str, type[BaseModel], str]] = [
    ("(top level)", O.Options, "General settings and Real-ESRGAN's top-level degradation keys."),
    (
        "datasets.<phase> (paired)",
        O.PairedDatasetOpt,
        "`type: PairedImageDataset`: GT + LQ folders or meta_info.",
    ),
    (
        "datasets.<phase> (on the fly)",
        O.OTFDatasetOpt,
        "`type: RealESRGANDataset` / `OTFDataset`: GT only, LQ from a degradation pipeline in the loader workers.",
    ),
    (
        "network_g / network_d",
        O.NetworkOpt,
        "`type` = a registered architecture; other keys = its arguments.",
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
        O.LossOpt,
        "`type` = a registered loss; other keys = its arguments.",
    ),
    ("val", O.ValOpt, "Validation every `val_freq` iterations (EMA weights, calibrated ParagonSR2 kernels)."),
    (
        "val.metrics.<name>",
        O.MetricOpt,
        "`type` = a registered metric (calculate_psnr, calculate_ssim, ...).",
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
    for mod in ("paragonsr.train.options.", "pydantic.main."):
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


def section_table(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    # keys declared with the degradation pipelines (``layout``) after the section's own ones
    fields = sorted(model.model_fields.items(), key=lambda kv: "layout" in _extra(kv[1]))
    for name, f in fields:
        desc = (f.description or "").replace("|", "\\|")
        tname = _tname(f.annotation).replace("|", "\\|")
        if model is RealESRGANOpt:
            desc = f"*{_WHERE[_extra(f)['layout']]}*: {desc}"
        rows.append(f"| `{name}` | {tname} | {_default(f)} | {desc} |")
    return rows


def registry_table(registry: Any, title: str) -> list[str]:
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
        aliases = sorted(a for a, c in registry._aliases.items() if c == name)
        label = f"`{name}`" + (f" (aliases: {', '.join(aliases)})" if aliases else "")
        out.append(f"| {label} | {', '.join(args) or '-'} |")
    return [*out, ""]


def render() -> str:
    import paragonsr.archs
    import paragonsr.degrade
    import paragonsr.losses
    import paragonsr.metrics  # noqa: F401
    from paragonsr.registry import ARCH_REGISTRY, DEGRADATION_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY

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
    lines += ["## Registered types", ""]
    lines += registry_table(ARCH_REGISTRY, "Architectures (`network_g.type`, `network_d.type`)")
    lines += registry_table(LOSS_REGISTRY, "Losses (`train.<name>_opt.type`)")
    lines += registry_table(METRIC_REGISTRY, "Metrics (`val.metrics.<name>.type`)")
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
