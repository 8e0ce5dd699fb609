"""The tables of a perceptual model's card (``scripts/perceptual_card.py``): ``paragonsr eval`` per-image scores ->
means per set and over all images, the † / ? marks of metrics that share a network with a training loss, the issue's
targets, and the markdown."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("lpips_alex", "lpips_vgg", "dists", "niqe_matlab", "niqe", "brisque")  # the card's (issue 23)


def metric_weights(keys: list[str], source_dir: Path | None, work: Path) -> tuple[Path, list[str]]:
    """(a folder of links to just the weight files and provenance records of the metrics ``keys``, one line per
    metric left out because its weights are missing), for ``paragonsr eval --weights-dir``: eval scores every
    metric whose weights it finds, and the VGG16 ones cost most (about 30 CPU-s per megapixel each on one busy
    core here). Raises KeyError for an unknown metric."""
    from paragonsr.metrics.perceptual import perceptual_metrics
    from paragonsr.weights import WeightsError, WeightSource

    known = perceptual_metrics()
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise KeyError(f"--metrics: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    folder = work / ("weights_" + "_".join(sorted(keys)))
    folder.mkdir(parents=True, exist_ok=True)
    source, skipped = WeightSource(source_dir), []
    for key in keys:
        info = known[key][1]
        try:
            paths = [source.resolve(name) for name in info.weights]
        except WeightsError:
            skipped.append(f"{info.label} not scored: its weights are not fetched (`paragonsr weights fetch "
                           f"{' '.join(info.weights)}`)")  # fmt: skip
            continue
        for path in paths:
            for f in (path, path.with_name(path.name.removesuffix(path.suffix) + ".provenance.json")):
                link = folder / f.name
                if f.is_file() and not link.exists():
                    link.symlink_to(f.resolve())
    return folder, skipped


def read_scores(csv_path: Path) -> list[dict[str, Any]]:
    """``per_image.csv`` of ``paragonsr eval`` -> rows with floats (``nan`` where a metric skipped the image)."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k not in ("image", "method"):
                r[k] = float(v) if v not in ("", None) else math.nan
    return rows


def mean(rows: list[dict[str, Any]], method: str, key: str, images: set[str] | None = None) -> float:
    vals = [
        r[key]
        for r in rows
        if r["method"] == method
        and key in r
        and (images is None or r["image"] in images)
        and not math.isnan(r[key])
    ]
    return float(np.mean(vals)) if vals else math.nan


def metric_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(csv key, header, weight names) of every scored metric, in report order."""
    from paragonsr.metrics.perceptual import perceptual_metrics

    cols: list[tuple[str, str, tuple[str, ...]]] = [
        ("psnr_y", "PSNR-Y (dB) ↑", ()),
        ("ssim_y", "SSIM-Y ↑", ()),
    ]
    for key, (_, info) in perceptual_metrics().items():
        if rows and key in rows[0]:
            cols.append((key, f"{info.label} {'↓' if info.lower_is_better else '↑'}", tuple(info.weights)))
    return cols


def packaged_train_weights(name: str) -> frozenset[str] | None:
    """Weight files the training losses of packaged model ``name`` read (its manifest's training record)."""
    from paragonsr.deploy.packaging import loss_specs
    from paragonsr.infer import default_model_path
    from paragonsr.metrics.perceptual import training_weight_names

    path = default_model_path(f"{name}.safetensors")
    if path is None:
        return None
    phases = json.loads((path.parent / "manifest.json").read_text()).get("training", [])
    specs = [
        s for p in phases if p.get("model", "default") == name for s in loss_specs(p.get("options") or {})
    ]
    return training_weight_names(specs) if specs else None


def mark(weights: tuple[str, ...], trained: frozenset[str] | None) -> str:
    if not weights:
        return ""
    return "?" if trained is None else ("†" if trained & set(weights) else "")


def no_nan(obj: Any) -> Any:
    """JSON has no NaN: a metric that scored nothing is null."""
    if isinstance(obj, dict):
        return {k: no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [no_nan(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


def render(card: dict[str, Any]) -> str:
    cols, marks = card["columns"], card["marks"]
    head = "| model | " + " | ".join(c[1] for c in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)

    def table(means: dict[str, dict[str, float]]) -> list[str]:
        lines = [head, sep]
        for label, vals in means.items():
            cells = [
                "—" if math.isnan(vals.get(k, math.nan)) else f"{vals[k]:.{2 if k == 'psnr_y' else 4}f}{marks[label].get(k, '')}"
                for k, _, _ in cols
            ]  # fmt: skip
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    c = card["candidate"]
    out = [
        f"# Perceptual 2x nano: model card of `{c['file']}`",
        "",
        f"Candidate sha256 `{c['sha256'][:16]}…`. Written by `scripts/perceptual_card.py`. Protocol: `paragonsr eval "
        "--tile 0`, x2 antialiased bicubic LR, PSNR/SSIM on Y (border 2), outputs rounded to 8 bit; "
        f"{card['images']} held-out photos (never trained on) in {len(card['sets'])} set(s): "
        + ", ".join(f"{k} ({v})" for k, v in card["sets"].items())
        + ".",
        "",
        "## All scored photos (mean per image)",
        "",
        *table(card["means"]["all"]),
        "",
        "- † the metric's network is also a training loss of that model (LPIPS-vgg; DISTS shares its VGG16 trunk): "
        "optimistic there. ? no training record. LPIPS-alex, the field's default, is the target metric.",
        "- NIQE (MATLAB model): the standard pristine model of Mittal et al.; NIQE (project fit): the project's own "
        "fit on its CC photos (`scripts/fit_niqe.py`). Both no-reference, lower is better.",
    ]
    if card.get("span_note"):
        out.append(f"- {card['span_note']}")
    out += [f"- {line}" for line in card.get("not_scored", [])]
    out += ["", "## Targets (issue 23)", ""] + [f"- {t}" for t in card["targets"]]
    for name, means in card["means"].items():
        if name != "all":
            out += ["", f"## {name} ({card['sets'][name]} photo(s))", "", *table(means)]
    out += ["", "## Crops", "", "bicubic | MKS 2021 | default | candidate | HR; 2x nearest zoom.", ""]
    out += ["| crop | photo | box (top, left, size; HR px) | shows |", "|---|---|---|---|"]
    for b in card["crops"]:
        out.append(
            f"| [{b['box']}]({b['file']}) | {b['image']} | {b['top']}, {b['left']}, {b['size']} | {b['what']} |"
        )
    out += [""] + [f"![{b['box']}]({b['file']})" for b in card["crops"]] + [""]
    return "\n".join(out)


def targets(allm: dict[str, dict[str, float]], cand: str, span: str | None) -> list[str]:
    d, p = allm["default"], allm[cand]
    lines = []
    if "lpips_alex" in p and not math.isnan(p.get("lpips_alex", math.nan)):
        r = p["lpips_alex"] / d["lpips_alex"]
        lines.append(f"LPIPS-alex {p['lpips_alex']:.4f} = {r:.3f}x default's {d['lpips_alex']:.4f} (target <= 0.66x): "
                     f"{'met' if r <= 0.66 else 'missed'}")  # fmt: skip
    dp = p["psnr_y"] - d["psnr_y"]
    lines.append(f"PSNR-Y {dp:+.2f} dB vs default (target >= -1.0 dB): {'met' if dp >= -1.0 else 'missed'}")
    if span is not None and not math.isnan(allm[span].get("lpips_alex", math.nan)):
        gap = allm[span]["lpips_alex"] - p["lpips_alex"]
        lines.append(f"LPIPS-alex {gap:+.4f} below SPAN x2 ch48's {allm[span]['lpips_alex']:.4f} (target >= 0.005): "
                     f"{'met' if gap >= 0.005 else 'missed'}")  # fmt: skip
    return lines
