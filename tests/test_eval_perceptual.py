"""Perceptual metrics in `paragonsr eval` through the one metric registry (no real weights needed): columns,
per-image values, skip lines, and the mark on metrics that share a network with a training loss of the model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paragonsr.evaluate import Method, available_deep_metrics, evaluate, resampler_method, write_report
from paragonsr.metrics.perceptual import (
    MetricInfo,
    perceptual_metrics,
    training_loss_specs,
    training_weight_names,
)


def _mad(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, **_: object) -> float:
    c = crop_border
    return float(np.abs(img[c:-c, c:-c] - img2[c:-c, c:-c]).mean() / 255.0)


def test_registry_holds_the_perceptual_metrics() -> None:
    from paragonsr.registry import METRIC_REGISTRY

    reg = perceptual_metrics()
    assert list(reg)[:3] == ["lpips_alex", "lpips_vgg", "dists"]  # the field's LPIPS first
    assert reg["lpips_alex"][1] == MetricInfo(
        "lpips_alex", "LPIPS-alex", ("alexnet", "lpips_alex"), rank=0, min_size=32
    )
    assert reg["dists"][1].weights == ("vgg16", "dists") and reg["lpips_vgg"][1].lower_is_better
    # one registry: the same functions are what val.metrics `type:` names reach
    assert METRIC_REGISTRY.get("lpips") is METRIC_REGISTRY.get("calculate_lpips_alex") is reg["lpips_alex"][0]
    assert METRIC_REGISTRY.get("lpips_vgg") is reg["lpips_vgg"][0]
    from paragonsr.train.validation import metric_direction

    assert metric_direction("calculate_lpips_vgg") == metric_direction("dists") == "lower"
    assert metric_direction("calculate_psnr") == "higher"


def test_eval_scores_registered_metrics_and_marks_shared_networks(tmp_path: Path, monkeypatch) -> None:
    import paragonsr.metrics.perceptual as pm

    info = MetricInfo("fake", "FAKE", ("vgg16", "lpips_vgg"))
    monkeypatch.setattr(pm, "perceptual_metrics", lambda: {"fake": (_mad, info)})
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(gt_dir / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))

    def model(weights: frozenset[str] | None, name: str, gain: float) -> Method:
        up = resampler_method("nearest", 2)
        return Method(name, lambda lq: np.clip(up.run(lq) * gain, 0, 1), params=5, train_weights=weights)

    methods = [
        resampler_method("bicubic", 2),
        model(frozenset({"vgg16"}), "trained_vgg", 1.0),
        model(frozenset({"alexnet", "lpips_alex"}), "trained_alex", 0.9),
        model(None, "unrecorded", 0.8),
    ]
    lq_for = lambda p, gt: gt[::2, ::2]  # noqa: E731
    report = evaluate(sorted(gt_dir.iterdir()), methods, 2, lq_for, progress=False, deep_metrics=["fake"])
    md = write_report(report, tmp_path / "out").read_text()
    rows = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert "FAKE ↓" in rows["method"]
    assert "†" in rows["trained_vgg"] and "?" not in rows["trained_vgg"]
    assert "†" not in rows["trained_alex"] and "?" not in rows["trained_alex"]
    assert "?" in rows["unrecorded"] and "†" not in rows["bicubic"] + rows["trained_alex"]
    assert "† the metric's network is also a training loss of this model" in md
    assert "? the model's training losses are not recorded" in md
    per_image = list(csv.DictReader((tmp_path / "out" / "per_image.csv").read_text().splitlines()))
    for r in per_image:
        res = next(x for x in report.results if x.method == r["method"])
        assert float(r["fake"]) == pytest.approx(res.extra["fake"], abs=1e-5) and res.extra["fake"] > 0


def test_available_deep_metrics_says_how_to_fetch(tmp_path: Path) -> None:
    usable, skipped = available_deep_metrics(tmp_path)
    assert usable == ["niqe"]  # the project-fit NIQE needs no weight file
    assert any(
        "LPIPS-alex not scored" in s and "paragonsr weights fetch alexnet lpips_alex" in s for s in skipped
    )
    assert any("DISTS not scored" in s and "paragonsr weights fetch vgg16 dists" in s for s in skipped)


def test_training_losses_are_read_from_run_options_or_the_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    opts = {"train": {"losses": [{"type": "LPIPSLoss", "net": "alex", "loss_weight": 1.0}, {"type": "L1Loss"},
                                 {"type": "NoSuchLoss"}],
                      "perceptual_opt": {"type": "PerceptualLoss", "vgg_type": "vgg16"},
                      "contrastive_opt": {"type": "ContrastiveLoss", "pretrained": False}}}  # fmt: skip
    (run / "options.yml").write_text(json.dumps(opts))  # JSON is YAML
    ckpt = run / "models" / "net_g_10.safetensors"
    save_file({"w": torch.zeros(1)}, str(ckpt))
    assert training_weight_names(training_loss_specs(ckpt)) == {"alexnet", "lpips_alex", "vgg16"}
    recorded = tmp_path / "release.safetensors"
    save_file(
        {"w": torch.zeros(1)},
        str(recorded),
        metadata={"extra": json.dumps({"train_losses": [{"type": "dists"}]})},
    )
    assert training_weight_names(training_loss_specs(recorded)) == {"vgg16", "dists"}
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    assert training_loss_specs(bare) is None and training_weight_names(None) is None


def test_benchmark_reports_perceptual_means_per_set(tmp_path: Path, monkeypatch) -> None:
    import paragonsr.metrics.perceptual as pm
    from paragonsr.benchmark import matlab_bicubic_method, run_benchmark, write_benchmark

    monkeypatch.setattr(
        pm, "perceptual_metrics", lambda: {"fake": (_mad, MetricInfo("fake", "FAKE", ("x",)))}
    )
    hr = tmp_path / "Set5"
    hr.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(hr / name), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    methods = [matlab_bicubic_method(2), resampler_method("nearest", 2)]
    scores, failed = run_benchmark(
        [("Set5", sorted(hr.iterdir()))], methods, 2, tmp_path / "out", False, ["fake"]
    )
    csv_path, md = write_benchmark(scores, tmp_path / "out", 2, failed)
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    per_image = list(csv.DictReader((tmp_path / "out/per_set/Set5/per_image.csv").read_text().splitlines()))
    for r in rows:
        mean = np.mean([float(p["fake"]) for p in per_image if p["method"] == r["method"]])
        assert float(r["fake"]) == pytest.approx(mean, abs=1e-4) and mean > 0
    text = md.read_text()
    assert "| method | Set5 FAKE ↓ |" in text and f"| nearest | {float(rows[1]['fake']):.4f} |" in text


def test_images_below_a_networks_size_are_left_out(tmp_path: Path, monkeypatch) -> None:
    import paragonsr.metrics.perceptual as pm
    from paragonsr.metrics import calculate_metric

    tiny = np.zeros((20, 20, 3))
    with pytest.raises(
        ValueError, match="lpips_alex needs images of at least 32x32 px after the border crop, got 16x16"
    ):
        calculate_metric({"img": tiny, "img2": tiny}, {"type": "lpips", "crop_border": 2})
    big, small = MetricInfo("big", "BIG", (), min_size=30), MetricInfo("small", "SMALL", ())
    monkeypatch.setattr(pm, "perceptual_metrics", lambda: {"big": (_mad, big), "small": (_mad, small)})
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(
        str(gt_dir / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    )  # 28 px after the crop
    report = evaluate(sorted(gt_dir.iterdir()), [resampler_method("bicubic", 2)], 2, lambda p, gt: gt[::2, ::2],
                      progress=False, deep_metrics=["big", "small"])  # fmt: skip
    assert np.isnan(report.results[0].extra["big"]) and report.results[0].extra["small"] > 0
    assert np.isnan(report.mean("bicubic", "big")) and report.mean("bicubic", "small") > 0
