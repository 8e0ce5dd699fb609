"""Side-by-side evaluation of SR models and classic resamplers on a GT folder (``paragonsr eval``).

For every GT image: make the LQ (from ``--lq`` files, or by a degradation pipeline / plain bicubic), run each
method, and score PSNR/SSIM with BasicSR's MATLAB definitions (Y channel, ``crop_border = scale``, 8-bit
rounding of the output as a saved file would have), time the inference, and write:

- ``report.md`` — mean table (PSNR-Y, SSIM-Y, Δ vs bicubic, ms per image, output MP/s, parameters),
- ``per_image.csv`` — every score,
- ``crops/<image>.png`` — a labelled crop grid (GT | bicubic | each model) for people to look at,
- ``quality_vs_speed.png`` — PSNR-Y against output megapixels/s.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paragonsr.metrics import calculate_psnr, calculate_ssim
from paragonsr.ops.resample import resize
from paragonsr.utils.atomic import atomic_output, atomic_write_text
from paragonsr.utils.finite import array_non_finite
from paragonsr.utils.params import count_params


@dataclass
class Method:
    """A named way to turn an LQ image (float32 HWC RGB [0,1]) into an SR image of ``scale`` times its size."""

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    params: int | None = None
    source: str = ""
    # manifest weight entries its training losses read (None: not recorded); marks metrics on the same networks
    train_weights: frozenset[str] | None = None


@dataclass
class Result:
    image: str
    method: str
    psnr_y: float
    ssim_y: float
    seconds: float
    out_mp: float
    extra: dict[str, float] = field(default_factory=dict)


def available_deep_metrics(weights_dir: str | Path | None = None) -> tuple[list[str], list[str]]:
    """(keys of the registered perceptual metrics whose weights are present and verified, one 'why not' line per
    other one). Nothing is downloaded."""
    from paragonsr.metrics.perceptual import perceptual_metrics
    from paragonsr.weights import WeightsError, WeightSource

    source, usable, skipped = WeightSource(weights_dir, allow_download=False), [], []
    for key, (_, info) in perceptual_metrics().items():
        if not info.in_eval:
            continue
        try:
            for name in info.weights:
                source.resolve(name)
            usable.append(key)
        except WeightsError as exc:
            if "not found" in str(exc):
                fetch = " ".join(info.weights)
                skipped.append(f"{info.label} not scored: its weights are not in the weights folder (get them "
                               f"with `paragonsr weights fetch {fetch}`)")  # fmt: skip
            else:
                skipped.append(f"{info.label} not scored: {exc}")
    return usable, skipped


@dataclass
class Report:
    scale: int
    results: list[Result] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    deep_metrics: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per GT image that could not be scored

    def mean(self, method: str, key: str) -> float:
        vals = [
            r.extra[key] if key in r.extra else getattr(r, key) for r in self.results if r.method == method
        ]
        vals = [
            v for v in vals if not np.isnan(v)
        ]  # a perceptual metric skips images below its network's size
        return float(np.mean(vals)) if vals else float("nan")

    def speed(self, method: str) -> float:
        rows = [r for r in self.results if r.method == method]
        secs = sum(r.seconds for r in rows)
        return sum(r.out_mp for r in rows) / secs if secs > 0 else float("inf")


def resampler_method(kernel: str, scale: int, label: str | None = None) -> Method:
    def run(lq: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(lq)).permute(2, 0, 1)[None]
        return resize(t, scale=scale, kernel=kernel)[0].permute(1, 2, 0).numpy()

    return Method(label or kernel, run, params=0, source=f"resampler:{kernel}")


def model_method(path: str | Path, scale: int, tile: object = 512, label: str | None = None) -> Method:
    """A checkpoint (.safetensors/.pth, run with torch fp32) or an .onnx file (ONNX Runtime), run through the
    shared tiler with ``tile`` (``0`` = whole image, ``"auto"`` or LR px; overlap 16 px) and the backend's size
    needs. ValueError when the model's scale is not ``scale``; InputError for a bad tile size."""
    from paragonsr.infer.backends import load_backend
    from paragonsr.tiling import Tiler, needs_of

    path = Path(path)
    tiler = Tiler(tile, overlap=16)
    backend = load_backend(path, device="cpu", precision="fp32")
    model = getattr(backend, "model", None)
    params = None if model is None else count_params(model)
    if backend.scale != scale:
        raise ValueError(f"{path}: model scale is x{backend.scale} but the evaluation runs at x{scale}")
    needs = needs_of(backend)

    def run(lq: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lq)).permute(2, 0, 1)[None]
        y = tiler(backend, x, needs)
        return y[0].permute(1, 2, 0).numpy()

    from paragonsr.metrics.perceptual import training_loss_specs, training_weight_names

    trained = training_weight_names(training_loss_specs(path))
    return Method(label or path.stem, run, params=params, source=str(path), train_weights=trained)


def quantize8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_lq(gt: np.ndarray, scale: int) -> np.ndarray:
    """Pillow-style antialiased bicubic downscale (replicate edges), rounded to 8 bit once at the end.

    Within about 0.01 dB PSNR-Y of the MATLAB protocol on Set5/Set14 at x2; the exact MATLAB ``imresize`` LR of the
    standard benchmark is :func:`paragonsr.benchmark.matlab_bicubic_lr`.
    """
    t = torch.from_numpy(np.ascontiguousarray(gt)).permute(2, 0, 1)[None]
    lq = resize(t, size=(gt.shape[0] // scale, gt.shape[1] // scale), kernel="bicubic")
    return (quantize8(lq[0].permute(1, 2, 0).numpy()) / 255.0).astype(np.float32)


def evaluate(
    gt_paths: Sequence[Path],
    methods: Sequence[Method],
    scale: int,
    lq_for: Callable[[Path, np.ndarray], np.ndarray],
    crops_dir: Path | None = None,
    progress: bool = True,
    deep_metrics: Sequence[str] = (),
    weights_dir: str | Path | None = None,
    desc: str = "eval",
) -> Report:
    from tqdm import tqdm

    from paragonsr.io.image_io import read_image, to_rgb
    from paragonsr.metrics.perceptual import perceptual_metrics

    registered = perceptual_metrics()
    report = Report(scale=scale, methods=list(methods), deep_metrics=list(deep_metrics))
    for path in tqdm(gt_paths, desc=desc, unit="img", disable=not progress):
        try:  # an unreadable GT/LQ is reported and skipped: the other images are still scored
            gt, _ = read_image(path)
            gt = mod_crop(to_rgb(gt), scale)
            lq = lq_for(path, gt)
        except (OSError, ValueError) as exc:
            msg = str(exc) if str(path) in str(exc) or path.name in str(exc) else f"{path}: {exc}"
            report.failed.append(msg)
            tqdm.write(f"error: {msg}", file=sys.stderr)
            continue
        gt8 = quantize8(gt)
        runs = []
        for m in methods:
            t0 = time.perf_counter()
            sr = m.run(lq)
            dt = time.perf_counter() - t0
            if sr.shape[:2] != gt.shape[:2]:
                raise ValueError(f"{m.name} returned {sr.shape[:2]} for {path.name}, expected {gt.shape[:2]}")
            runs.append((m, sr, dt))
        bad = next(((m, b) for m, sr, _ in runs if (b := array_non_finite(sr)) is not None), None)
        if bad is not None:  # 8-bit rounding would score a black/white image as if it were a result
            msg = f"{path}: the output of {bad[0].source or bad[0].name} holds {bad[1]} values; image not scored"
            report.failed.append(msg)
            tqdm.write(f"error: {msg}", file=sys.stderr)
            continue
        outputs = {}
        for m, sr, dt in runs:
            sr8 = quantize8(sr)
            outputs[m.name] = sr8
            report.results.append(
                Result(
                    image=path.name,
                    method=m.name,
                    psnr_y=calculate_psnr(sr8, gt8, crop_border=scale, test_y_channel=True),
                    ssim_y=calculate_ssim(sr8, gt8, crop_border=scale, test_y_channel=True),
                    seconds=dt,
                    out_mp=sr.shape[0] * sr.shape[1] / 1e6,
                    extra={
                        k: float(registered[k][0](sr8, gt8, crop_border=scale, weights_dir=weights_dir))
                        if min(gt8.shape[:2]) - 2 * scale >= registered[k][1].min_size
                        else float("nan")
                        for k in deep_metrics
                    },
                )
            )
        if crops_dir is not None:
            write_crop_grid(crops_dir / f"{path.stem}.png", gt8, outputs, report, path.name)
    return report


def deep_header(key: str) -> str:
    """Report column of a perceptual metric: its label and direction (``LPIPS-alex ↓``)."""
    from paragonsr.metrics.perceptual import perceptual_metrics

    info = perceptual_metrics()[key][1]
    return f"{info.label} {'↓' if info.lower_is_better else '↑'}"


def shares_net(method: Method, key: str) -> str:
    """``†`` when a training loss of ``method`` reads one of the metric's networks, ``?`` when not recorded for a
    model, empty otherwise (and for resamplers)."""
    from paragonsr.metrics.perceptual import perceptual_metrics

    if method.source.startswith("resampler:") or method.params == 0:
        return ""
    if not perceptual_metrics()[key][1].weights:  # no network (e.g. the project-fit NIQE): nothing to share
        return ""
    if method.train_weights is None:
        return "?"
    return "†" if method.train_weights & set(perceptual_metrics()[key][1].weights) else ""


def deep_notes(report: Report) -> list[str]:
    """Footnotes for the marks of :func:`shares_net` that appear in the table."""
    marks = {shares_net(m, k) for m in report.methods for k in report.deep_metrics}
    lines = []
    if "†" in marks:
        lines.append(
            "† the metric's network is also a training loss of this model: its score there is optimistic."
        )
    if "?" in marks:
        lines.append("? the model's training losses are not recorded: a metric may share a network with one.")
    return ["", *lines] if lines else []


def _busiest_window(gray: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the size x size window with the most gradient energy (where SR differences show)."""
    gy, gx = np.gradient(gray)
    energy = np.abs(gx) + np.abs(gy)
    h, w = gray.shape
    step = max(8, size // 4)
    best, best_pos = -1.0, (0, 0)
    for top in range(0, max(1, h - size + 1), step):
        for left in range(0, max(1, w - size + 1), step):
            e = float(energy[top : top + size, left : left + size].sum())
            if e > best:
                best, best_pos = e, (top, left)
    return best_pos


def write_crop_grid(
    path: Path, gt8: np.ndarray, outputs: dict[str, np.ndarray], report: Report, image: str, size: int = 160
) -> None:
    import cv2

    from paragonsr.io.image_io import write_image
    from paragonsr.utils.grid import caption_band, tile

    size = min(size, gt8.shape[0], gt8.shape[1])
    top, left = _busiest_window(gt8.mean(axis=2), size)
    tiles = [("GT", gt8), *list(outputs.items())]
    zoom = 2
    cells = []
    for name, img in tiles:
        crop: np.ndarray = img[top : top + size, left : left + size].astype(np.uint8)
        crop = cv2.resize(crop, (size * zoom, size * zoom), interpolation=cv2.INTER_NEAREST)
        label = name
        if name != "GT":
            r = next(r for r in report.results if r.image == image and r.method == name)
            label = f"{name} {r.psnr_y:.2f}dB"
        band = caption_band(crop.shape[1], label[:40], 28, font_scale=0.55, origin=(4, 20))
        cells.append(np.concatenate([band, crop], axis=0))
    row = tile(cells, cols=len(cells), gap=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, row.astype(np.float32) / 255.0, bit_depth=8)


def write_report(report: Report, out_dir: Path, title: str = "paragonsr evaluation") -> Path:
    with atomic_output(out_dir / "per_image.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["image", "method", "psnr_y", "ssim_y", "seconds", "output_megapixels", *report.deep_metrics]
        )
        for r in report.results:
            w.writerow(
                [
                    r.image,
                    r.method,
                    f"{r.psnr_y:.4f}",
                    f"{r.ssim_y:.5f}",
                    f"{r.seconds:.4f}",
                    f"{r.out_mp:.4f}",
                    *(f"{r.extra[k]:.5f}" for k in report.deep_metrics),
                ]
            )
    base = next((m.name for m in report.methods if m.name == "bicubic"), None)
    n_images = len({r.image for r in report.results})
    lines = [
        f"# {title}",
        "",
        f"x{report.scale}, {n_images} images; PSNR/SSIM on the Y channel (BasicSR/MATLAB definition), "
        f"crop_border {report.scale}, outputs rounded to 8 bit.",
        "",
        "| method | PSNR-Y (dB) | Δ vs bicubic | SSIM-Y |"
        + "".join(f" {deep_header(k)} |" for k in report.deep_metrics)
        + " ms / image | output MP/s | parameters |",
        "|---|---:|---:|---:|" + "---:|" * len(report.deep_metrics) + "---:|---:|---:|",
    ]
    for m in report.methods:
        psnr = report.mean(m.name, "psnr_y")
        delta = psnr - report.mean(base, "psnr_y") if base else float("nan")
        ms = report.mean(m.name, "seconds") * 1000
        params = "-" if m.params is None else f"{m.params:,d}"
        deep = "".join(f" {report.mean(m.name, k):.4f}{shares_net(m, k)} |" for k in report.deep_metrics)
        lines.append(
            f"| {m.name} | {psnr:.3f} | {delta:+.3f} | {report.mean(m.name, 'ssim_y'):.4f} |{deep} {ms:.1f} | "
            f"{report.speed(m.name):.3f} | {params} |"
        )
    lines += deep_notes(report)
    lines += ["", "Per-image scores: `per_image.csv`; crops: `crops/`; plot: `quality_vs_speed.png`.", ""]
    if report.failed:
        lines += [f"Not scored ({len(report.failed)} image(s): unreadable input or non-finite output):", ""]
        lines += [f"- {line}" for line in report.failed] + [""]
    md = out_dir / "report.md"
    atomic_write_text(md, "\n".join(lines))
    _plot(report, out_dir / "quality_vs_speed.png")
    return md


def _plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for m in report.methods:
        speed = report.speed(m.name)
        ax.scatter([speed], [report.mean(m.name, "psnr_y")], s=40)
        ax.annotate(m.name, (speed, report.mean(m.name, "psnr_y")), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel("output megapixels / s (log)")
    ax.set_ylabel("PSNR-Y (dB)")
    ax.set_title(f"x{report.scale}: quality vs speed")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, suffix=".tmp.png") as tmp:  # savefig picks the format from the name
        fig.savefig(tmp)
    plt.close(fig)
