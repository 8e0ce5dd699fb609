"""Robustness to the LR resampler: PSNR-Y of models when the LR was made by each downscaling kernel in turn.

The standard table makes its LR with one kernel (antialiased bicubic); files people upscale were made by whatever
their software used. For every condition this script makes the LR of each GT image with the ``lrgen`` pipeline
pinned to a single kernel (no blur, no chain, 8-bit rounding, antialiased, seeded per image), upscales it with
every ``--model`` and with bicubic, and scores PSNR/SSIM-Y against the GT (border = scale). Conditions: one per
``--kernel``, plus ``blur<σ>_bicubic`` for each ``--blur σ`` (Gaussian blur, then bicubic) and ``chain`` (lrgen's
multi-step resize chains with random kernels) unless ``--no-chain``.

Writes ``OUT/lr_kernels.csv`` (columns ``condition, method, psnr_y, ssim_y, n``), ``OUT/lr_kernels.md`` (one row
per condition, PSNR-Y per method and, with two or more models, the difference of each model to the first) and
``OUT/lr_kernels.png`` (gain over bicubic per condition and model).

    python scripts/eval_lr_kernels.py --gt HELD_OUT_GT --model default --model classic -o OUT
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from paragonsr.commands.eval import model_methods, pipeline_lq
from paragonsr.degrade import build_degradation
from paragonsr.evaluate import Method, Report, evaluate, resampler_method
from paragonsr.io.files import list_images
from paragonsr.utils.atomic import atomic_output, atomic_write_text

KERNELS = ("bicubic", "bilinear", "lanczos3", "box", "nearest", "magic_sharp_2021")


def condition_options(condition: str) -> dict:
    """The ``lrgen`` options of one condition: ``<kernel>``, ``blur<σ>_bicubic`` or ``chain``.

    Raises ValueError for a name of none of these forms, or a σ that is not a finite number > 0."""
    base = {"clean_prob": 0.0, "blur_prob": 0.0, "chain_prob": 0.0}
    if condition == "chain":
        return {**base, "chain_prob": 1.0}
    if condition.startswith("blur") and condition.endswith("_bicubic"):
        text = condition[len("blur") : -len("_bicubic")]
        try:
            sigma = float(text)
        except ValueError:
            sigma = float("nan")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"condition {condition!r}: the blur sigma must be a finite number > 0, got {text!r}"
            )
        return {
            **base,
            "blur_prob": 1.0,
            "blur_sigma": [sigma, sigma],
            "kernels": ["bicubic"],
            "kernel_prob": [1.0],
        }
    if condition.startswith("blur") or condition == "":
        raise ValueError(f"condition {condition!r}: expected a kernel name, 'blur<sigma>_bicubic' or 'chain'")
    return {**base, "kernels": [condition], "kernel_prob": [1.0]}


def lq_maker(condition: str, scale: int, seed: int) -> Callable[[Path, np.ndarray], np.ndarray]:
    """``(path, gt) -> lq``: float32 HWC RGB in [0, 1], 8-bit rounded; one seeded stream per image name."""
    return pipeline_lq(build_degradation("lrgen", condition_options(condition), scale), seed)


def run(
    gt_paths: list[Path], methods: list[Method], conditions: list[str], scale: int, seed: int
) -> dict[str, Report]:
    """One :class:`Report` per condition, in order. ``ValueError`` if any image could not be scored."""
    reports: dict[str, Report] = {}
    for cond in conditions:
        report = evaluate(gt_paths, methods, scale, lq_maker(cond, scale, seed), desc=cond)
        if report.failed:
            raise ValueError(f"{cond}: {len(report.failed)} image(s) not scored: {report.failed[0]}")
        reports[cond] = report
    return reports


def write_outputs(
    reports: dict[str, Report], methods: list[str], out: Path, diffs: list[tuple[str, str]] | None = None
) -> None:
    """Write the CSV, the markdown table and the plot. ``diffs``: ``(a, b)`` method pairs shown as ``a − b``
    columns (default: every model against the first model)."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["condition", "method", "psnr_y", "ssim_y", "n"])
    for cond, rep in reports.items():
        for m in methods:
            n = sum(r.method == m for r in rep.results)
            w.writerow([cond, m, f"{rep.mean(m, 'psnr_y'):.4f}", f"{rep.mean(m, 'ssim_y'):.5f}", n])
    atomic_write_text(out / "lr_kernels.csv", buf.getvalue())

    models = [m for m in methods if m != "bicubic"]
    pairs = diffs if diffs is not None else [(m, models[0]) for m in models[1:]]
    heads = [f"{a} − {b}" for a, b in pairs]
    lines = [
        "# PSNR-Y by LR resampler",
        "",
        f"x{next(iter(reports.values())).scale}, {len(next(iter(reports.values())).results) // len(methods)} "
        "images; LR by the `lrgen` pipeline pinned to one condition; PSNR-Y (dB), border = scale.",
        "",
        "| LR made by | " + " | ".join(methods + heads) + " |",
        "|---|" + "---:|" * (len(methods) + len(heads)),
    ]
    for cond, rep in reports.items():
        vals = [f"{rep.mean(m, 'psnr_y'):.3f}" for m in methods]
        vals += [f"{rep.mean(a, 'psnr_y') - rep.mean(b, 'psnr_y'):+.3f}" for a, b in pairs]
        lines.append(f"| {cond} | " + " | ".join(vals) + " |")
    atomic_write_text(out / "lr_kernels.md", "\n".join(lines) + "\n")
    _plot(reports, models, out / "lr_kernels.png")


def _plot(reports: dict[str, Report], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(reports)
    x = np.arange(len(conds))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(conds)), 4), dpi=110)
    for i, m in enumerate(models):
        gain = [reports[c].mean(m, "psnr_y") - reports[c].mean("bicubic", "psnr_y") for c in conds]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, gain, width, label=m)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(x, conds, rotation=20, ha="right")
    ax.set_ylabel("PSNR-Y gain over bicubic (dB)")
    ax.set_title("PSNR-Y by the kernel that made the LR")
    if models:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images")
    ap.add_argument("--model", action="append", default=[], help="checkpoint or packaged model (repeatable)")
    ap.add_argument(
        "--kernel", action="append", help=f"LR kernel (repeatable; default: {', '.join(KERNELS)})"
    )
    ap.add_argument(
        "--blur", action="append", type=float, default=None, help="σ of a blur-then-bicubic condition"
    )
    ap.add_argument("--no-chain", action="store_true", help="leave out the multi-step chain condition")
    ap.add_argument(
        "--diff",
        action="append",
        default=None,
        metavar="A,B",
        help="an 'A − B' column of two method labels (repeatable; replaces the default columns, every model − the first)",
    )
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="base seed (>= 0) of the per-image LR draws")
    ap.add_argument("--tile", default="512", help="tile size in LR px (0 = whole image)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    args = ap.parse_args(argv)

    blurs = [0.6] if args.blur is None else args.blur
    conditions = list(args.kernel or KERNELS) + [f"blur{s:g}_bicubic" for s in blurs]
    conditions += [] if args.no_chain else ["chain"]
    pairs = None if args.diff is None else [tuple(d.split(",", 1)) for d in args.diff]
    try:
        if args.seed < 0:
            raise ValueError(f"--seed {args.seed}: expected an integer >= 0")
        for c in conditions:
            build_degradation("lrgen", condition_options(c), args.scale)  # bad names fail before any work
        gt_paths = list_images(args.gt, recursive=False, what="GT", allow_empty=False)
        methods = [resampler_method("bicubic", args.scale), *model_methods(args.model, args.scale, args.tile)]
        names = [m.name for m in methods]
        for pair in pairs or []:
            if len(pair) != 2 or any(x not in names for x in pair):
                raise ValueError(
                    f"--diff {','.join(pair)}: expected A,B of the method labels {', '.join(names)}"
                )
        reports = run(gt_paths, methods, conditions, args.scale, args.seed)
        write_outputs(reports, names, args.out, pairs)  # pairs were checked above
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((args.out / "lr_kernels.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
