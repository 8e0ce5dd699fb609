"""The field's standard SR benchmark protocol (``paragonsr eval --benchmark DIR ...``).

For each folder of HR images (the set name is the folder name, e.g. ``Set5``):

1. the HR image is read as 8-bit RGB (gray is repeated to three channels, as BasicSR's ``cv2.imread`` does) and
   mod-cropped to the scale;
2. LR = MATLAB ``imresize(HR, 1/scale, 'bicubic')`` on the uint8 image (:func:`imresize_matlab`; 8-bit result);
3. each method upscales the LR; the **bicubic** row is MATLAB ``imresize(LR, scale, 'bicubic')`` on uint8 (the
   published "Bicubic" rows), models and other resamplers run on the LR in [0, 1] and are rounded to 8 bit;
4. PSNR/SSIM on the Y channel of MATLAB ``rgb2ycbcr`` (BT.601, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for
   RGB in [0, 1]; Y kept as float, not rounded: the convention of BasicSR and of the MATLAB evaluation scripts
   that call ``rgb2ycbcr`` on ``im2double`` images), with ``scale`` border pixels removed on every side;
5. the per-set mean goes to ``benchmark.csv`` (``set, method, psnr_y, ssim_y, n``) and a paper-style
   ``report.md`` (sets as columns, methods as rows), next to the published figures of reference models for the
   sets evaluated. Per-image scores and speed per set: ``per_set/<set>/`` (the ``paragonsr eval`` report).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paragonsr.evaluate import Method, Report, evaluate, quantize8, write_report
from paragonsr.ops.imresize import imresize_matlab
from paragonsr.utils.atomic import atomic_output, atomic_write_text

_BICUBIC_SOURCE = "SRCNN/VDSR-era tables (e.g. Kim et al., VDSR, CVPR 2016, Table 3)"
# Published PSNR-Y (dB) of reference methods under this protocol: (name, scale, source, {set: psnr}).
PUBLISHED: tuple[tuple[str, int, str, dict[str, float]], ...] = (
    ("Bicubic", 2, _BICUBIC_SOURCE, {"Set5": 33.66, "Set14": 30.24, "B100": 29.56}),
    ("Bicubic", 3, _BICUBIC_SOURCE, {"Set5": 30.39, "Set14": 27.55, "B100": 27.21}),
    ("Bicubic", 4, _BICUBIC_SOURCE, {"Set5": 28.42, "Set14": 26.00, "B100": 25.96}),
    (
        "FSRCNN",
        2,
        "Dong et al., ECCV 2016; Urban100/Manga109 as tabulated in later efficient-SR papers (CARN, IMDN)",
        {"Set5": 37.00, "Set14": 32.63, "B100": 31.53, "Urban100": 29.88, "Manga109": 36.67},
    ),
    (
        "VDSR",
        2,
        "Kim et al., CVPR 2016, as re-tabulated with Manga109 in later papers (LapSRN, CARN, IMDN)",
        {"Set5": 37.53, "Set14": 33.05, "B100": 31.90, "Urban100": 30.77, "Manga109": 37.22},
    ),
)
# Folder names seen for the same set.
_SET_ALIASES = {"bsd100": "B100", "bsds100": "B100", "b100": "B100", "urban100": "Urban100"}


def canonical_set(name: str) -> str:
    """Published-table name of a benchmark folder (``bsd100`` -> ``B100``); unknown names pass through."""
    low = name.lower()
    if low in _SET_ALIASES:
        return _SET_ALIASES[low]
    known = {s.lower(): s for _, _, _, sets in PUBLISHED for s in sets}
    return known.get(low, name)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float HWC in [0, 1] -> uint8 (MATLAB ``im2uint8``: scale by 255, round, saturate)."""
    return quantize8(img).astype(np.uint8)


def matlab_bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Benchmark LR of a mod-cropped HR image (float HWC [0, 1]): ``imresize(uint8, 1/scale)``, as float [0, 1]."""
    lr = imresize_matlab(to_uint8(hr), 1.0 / scale)
    return lr.astype(np.float32) / 255.0


def matlab_bicubic_method(scale: int) -> Method:
    """The published 'Bicubic' row: ``imresize(LR_uint8, scale, 'bicubic')``, 8-bit result."""

    def run(lr: np.ndarray) -> np.ndarray:
        return imresize_matlab(to_uint8(lr), float(scale)).astype(np.float32) / 255.0

    return Method("bicubic", run, params=0, source="MATLAB-compatible imresize bicubic")


@dataclass
class SetScore:
    set: str
    method: str
    psnr_y: float
    ssim_y: float
    n: int
    extra: dict[str, float] = field(default_factory=dict)  # perceptual metric key -> set mean


def run_benchmark(
    sets: Sequence[tuple[str, Sequence[Path]]],
    methods: Sequence[Method],
    scale: int,
    out_dir: Path | None = None,
    progress: bool = True,
    deep_metrics: Sequence[str] = (),
    weights_dir: str | Path | None = None,
) -> tuple[list[SetScore], list[str]]:
    """Score every method on every ``(set name, HR image paths)``; per-set reports go to ``out_dir/per_set``.
    ``deep_metrics``: keys of registered perceptual metrics to score too (see ``available_deep_metrics``).

    Returns the per-set means and one line per image that could not be read (skipped; ``n`` counts the rest).
    """
    scores: list[SetScore] = []
    failed: list[str] = []
    for name, paths in sets:
        report: Report = evaluate(
            paths,
            methods,
            scale,
            lambda _p, hr: matlab_bicubic_lr(hr, scale),
            progress=progress,
            desc=name,
            deep_metrics=deep_metrics,
            weights_dir=weights_dir,
        )
        failed += [f"{name}: {line}" for line in report.failed]
        if out_dir is not None:
            write_report(report, out_dir / "per_set" / name, title=f"{name} x{scale}")
        for m in methods:
            n = sum(1 for r in report.results if r.method == m.name)
            if n == 0:  # every image of the set failed: listed in `failed`, no NaN row
                continue
            extra = {k: report.mean(m.name, k) for k in deep_metrics}
            scores.append(
                SetScore(name, m.name, report.mean(m.name, "psnr_y"), report.mean(m.name, "ssim_y"), n, extra)
            )
    return scores, failed


def published_rows(set_names: Sequence[str], scale: int) -> list[tuple[str, str, dict[str, float]]]:
    """(label, source, {set folder name: psnr}) of the published rows that cover at least one evaluated set."""
    rows = []
    for name, s, source, table in PUBLISHED:
        cells = {sn: table[canonical_set(sn)] for sn in set_names if canonical_set(sn) in table}
        if s == scale and cells:
            rows.append((f"{name} (published)", source, cells))
    return rows


def write_benchmark(
    scores: Sequence[SetScore], out_dir: Path, scale: int, failed: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``benchmark.csv`` and the paper-style ``report.md`` (listing ``failed`` images); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "benchmark.csv"
    with atomic_output(csv_path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        deep = list(dict.fromkeys(k for s in scores for k in s.extra))
        w.writerow(["set", "method", "psnr_y", "ssim_y", "n", *deep])
        for s in scores:
            cells = [f"{s.extra[k]:.5f}" if k in s.extra else "" for k in deep]
            w.writerow([s.set, s.method, f"{s.psnr_y:.4f}", f"{s.ssim_y:.5f}", s.n, *cells])
    set_names = list(dict.fromkeys(s.set for s in scores))
    methods = list(dict.fromkeys(s.method for s in scores))
    by = {(s.set, s.method): s for s in scores}
    counts = ", ".join(f"{n} {next(s.n for s in scores if s.set == n)}" for n in set_names)
    lines = [
        f"# Standard benchmark, x{scale}",
        "",
        f"HR mod-cropped to {scale}; LR = MATLAB-style `imresize(HR, 1/{scale}, 'bicubic')` on uint8; PSNR-Y (dB) / "
        f"SSIM-Y on BT.601 Y (unrounded), {scale}-pixel border removed; outputs rounded to 8 bit. "
        f"Images: {counts}.",
        "",
        "| method | " + " | ".join(set_names) + " |",
        "|---|" + "---:|" * len(set_names),
    ]
    for m in methods:
        cells = [f"{by[n, m].psnr_y:.2f} / {by[n, m].ssim_y:.4f}" if (n, m) in by else "–" for n in set_names]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    published = published_rows(set_names, scale)
    for label, _, pub in published:
        lines.append(
            f"| *{label}* | " + " | ".join(f"*{pub[n]:.2f}*" if n in pub else "–" for n in set_names) + " |"
        )
    if published:
        lines += ["", "Published rows (PSNR-Y only, not measured here):"]
        lines += [f"- {label}: {source}" for label, source, _ in published]
    lines += _deep_table(scores, set_names, methods, by)
    if failed:
        lines += ["", f"Not scored ({len(failed)} image(s) could not be read):"]
        lines += [f"- {line}" for line in failed]
    lines.append("")
    md = out_dir / "report.md"
    atomic_write_text(md, "\n".join(lines))
    return csv_path, md


def _deep_table(
    scores: Sequence[SetScore], set_names: list[str], methods: list[str], by: dict[tuple[str, str], SetScore]
) -> list[str]:
    """Perceptual metrics per set (``set: metric`` columns, methods as rows); empty without any."""
    from paragonsr.evaluate import deep_header

    deep = list(dict.fromkeys(k for s in scores for k in s.extra))
    if not deep:
        return []
    cols = [(n, k) for n in set_names for k in deep]
    lines = [
        "",
        "Perceptual metrics (per-set means; a † in `per_set/<set>/report.md` marks a shared network):",
        "",
    ]
    lines.append("| method | " + " | ".join(f"{n} {deep_header(k)}" for n, k in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for m in methods:
        cells = [f"{by[n, m].extra[k]:.4f}" if (n, m) in by and k in by[n, m].extra else "–" for n, k in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines
