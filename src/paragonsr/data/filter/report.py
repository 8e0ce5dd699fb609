"""Filter outputs: the per-tile CSV (append while running, resumable), the summary table and the histograms."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any, cast

import numpy as np

from paragonsr.data.filter.gates import FAIL, NOT_RUN, PASS, SKIPPED, FilterConfig
from paragonsr.utils.atomic import atomic_output

KEY_COLUMNS = ["image", "y", "x", "h", "w"]


def columns(cfg: FilterConfig) -> list[str]:
    return [*KEY_COLUMNS, *cfg.metrics(), *(f"gate_{g.metric}" for g in cfg.gates), "verdict", "reason"]


def read_rows(path: Path, expected: list[str]) -> list[dict[str, str]]:
    """Rows of an existing report. A header from a different gate set is an error (scores would not line up);
    a truncated last line (killed run) is dropped."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != expected:
            raise ValueError(
                f"{path} was written with other metrics/gates (columns {header}); expected {expected}. "
                "Use a new --out, or --restart to score everything again."
            )
        return [dict(zip(header, r)) for r in reader if len(r) == len(header) and r[-2]]


def tile_key(row: dict[str, str]) -> tuple[str, int, int]:
    return row["image"], int(row["y"]), int(row["x"])


class RowWriter:
    """Appends rows and flushes after each image, so an interrupted run keeps everything already scored."""

    def __init__(self, path: Path, cols: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=cols)
        if new:
            self._w.writeheader()

    def write(self, rows: list[dict[str, str]]) -> None:
        self._w.writerows(rows)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def rewrite_sorted(
    path: Path, cols: list[str], drop: set[tuple[str, int, int]] | None = None
) -> list[dict[str, str]]:
    """Final pass: de-duplicate by tile, drop the ``drop`` tile keys, sort, and replace the file atomically."""
    rows = {k: r for r in read_rows(path, cols) if (k := tile_key(r)) not in (drop or ())}
    ordered = [rows[k] for k in sorted(rows)]
    with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(ordered)
    return ordered


def summary_table(rows: list[dict[str, str]], cfg: FilterConfig, unavailable: dict[str, str]) -> str:
    """Markdown summary: per gate (by stage) how many tiles it saw, passed, failed, skipped; verdict totals."""
    lines = [
        f"tiles scored: {len(rows)}",
        "",
        "| stage | gate | seen | pass | fail | skipped |",
        "|---|---|---|---|---|---|",
    ]
    for g in sorted(cfg.gates, key=lambda g: g.stage):
        c = Counter(r[f"gate_{g.metric}"] for r in rows)
        seen = len(rows) - c[NOT_RUN]
        desc = g.describe() + (f" (fallback {g.fallback.describe()})" if g.fallback else "")
        lines.append(f"| {g.stage} | {desc} | {seen} | {c[PASS]} | {c[FAIL]} | {c[SKIPPED]} |")
    v = Counter(r["verdict"] for r in rows)
    lines += ["", f"verdict: pass {v[PASS]}, fail {v[FAIL]}, unverified {v['unverified']}"]
    for m, why in unavailable.items():
        lines.append(f"SKIPPED metric {m}: {why}")
    if v["unverified"]:
        lines.append(
            "unverified = no gate failed but at least one was skipped (not counted as passed); keep them with "
            "--keep-unverified, or give the skipped gates weights / a fallback / remove them in --config"
        )
    return "\n".join(lines)


def plot_histograms(rows: list[dict[str, str]], cfg: FilterConfig, out_dir: Path) -> list[Path]:
    """One PNG per metric: score histogram with the gate bounds drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    bounds: dict[str, list[float]] = {}
    for g in cfg.gates:
        for gg in (g, g.fallback):
            if gg is not None:
                bounds.setdefault(gg.metric, []).extend(b for b in (gg.min, gg.max) if b is not None)
    written = []
    for m in cfg.metrics():
        vals = np.array([float(r[m]) for r in rows if r.get(m) not in (None, "")])
        if not len(vals):
            continue
        gate_col = f"gate_{m}"
        ok = np.array([r.get(gate_col) != FAIL for r in rows if r.get(m) not in (None, "")])
        # heavy-tailed scores (Laplacian variance spans 4 decades) read better on a log axis
        pos = vals[vals > 0]
        log = bool(len(pos) > len(vals) // 2 and pos.max() / pos.min() > 100)
        if log:  # zeros (flat tiles) land in the first bin
            vals = np.maximum(vals, pos.min())
        edges = (
            np.geomspace(vals.min(), vals.max() * 1.000001, 41)
            if log
            else np.linspace(vals.min(), vals.max() + 1e-9, min(50, max(5, len(vals) // 4)) + 1)
        )
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.hist([vals[ok], vals[~ok]], bins=cast(Any, edges), stacked=True, color=["#4c72b0", "#dd8452"],
                label=["kept by this gate", "dropped by this gate"])  # fmt: skip
        if log:
            ax.set_xscale("log")
        for b in bounds.get(m, []):
            ax.axvline(b, color="#c44e52", linestyle="--", label=f"gate {b:g}")
        ax.set_title(f"{m} ({len(vals)} tiles)")
        ax.set_xlabel(m)
        ax.set_ylabel("tiles")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{m}.png"
        with atomic_output(path, suffix=".tmp.png") as tmp:  # savefig picks the format from the name
            fig.savefig(tmp)
        plt.close(fig)
        written.append(path)
    return written
