"""`paragonsr eval`: bicubic numbers against an independent computation; report files; models side by side."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import imread, load_photo_crop
from paragonsr.archs import build_arch
from paragonsr.checkpoint import save_model
from paragonsr.cli import main


def _y(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in MATLAB's rgb2ycbcr scaling, from an RGB uint8-range array."""
    img = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]


def _gt_folder(tmp_path: Path, photo_paths: list[Path]) -> Path:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    textured = [p for p in photo_paths if "Picture_1A" in p.name or "lomiri_life" in p.name]
    for i, p in enumerate(textured):
        crop = load_photo_crop(p, 96, 150, 150)
        cv2.imwrite(str(gt_dir / f"img{i}.png"), np.round(crop[..., ::-1] * 255).astype(np.uint8))
    return gt_dir


def test_eval_bicubic_matches_independent_pillow_pipeline(
    tmp_path: Path, photo_paths: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gt_dir = _gt_folder(tmp_path, photo_paths)
    out = tmp_path / "report"
    assert (
        main(
            [
                "eval",
                "--gt",
                str(gt_dir),
                "--scale",
                "2",
                "-o",
                str(out),
                "--resampler",
                "magic_sharp_2021",
                "--weights-dir",
                str(tmp_path / "no_weights"),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    assert {r["method"] for r in rows} == {"bicubic", "magic_sharp_2021"}
    for r in (r for r in rows if r["method"] == "bicubic"):
        # independent: Pillow's antialiased bicubic down and up (it rounds to 8 bit between passes), numpy PSNR-Y
        gt = np.asarray(Image.open(gt_dir / r["image"]).convert("RGB"))
        lq = Image.fromarray(gt).resize((48, 48), Image.Resampling.BICUBIC)
        sr = np.asarray(lq.resize((96, 96), Image.Resampling.BICUBIC))
        diff = (_y(sr) - _y(gt))[2:-2, 2:-2]
        ref = 10 * math.log10(255.0**2 / np.mean(diff**2))
        assert abs(float(r["psnr_y"]) - ref) < 0.15, (r, ref)
    md = (out / "report.md").read_text()
    assert "| bicubic |" in md and "+0.000" in md
    # LPIPS/DISTS need weight files: absent here, so they are reported as skipped (never downloaded)
    printed = capsys.readouterr().out
    for label, names in (
        ("LPIPS-alex", "alexnet lpips_alex"),
        ("LPIPS-vgg", "vgg16 lpips_vgg"),
        ("DISTS", "vgg16 dists"),
    ):
        assert f"{label} not scored: its weights are not in the weights folder" in printed
        assert f"paragonsr weights fetch {names}" in printed
    assert "LPIPS" not in md and "DISTS" not in md
    assert (out / "quality_vs_speed.png").stat().st_size > 1000
    crops = sorted((out / "crops").glob("*.png"))
    assert len(crops) == 2 and imread(str(crops[0])).shape[1] > 3 * 160


def test_eval_models_side_by_side(tmp_path: Path, photo_paths: list[Path]) -> None:
    gt_dir = _gt_folder(tmp_path, photo_paths)
    torch.manual_seed(0)
    model = build_arch("paragonsr2_nano", scale=2)
    ckpt = save_model(tmp_path / "nano.safetensors", model)
    out = tmp_path / "r"
    assert (
        main(
            ["eval", "--gt", str(gt_dir), "--scale", "2", "--model", str(ckpt), "-o", str(out), "--no-crops"]
        )
        == 0
    )
    rows = list(csv.DictReader((out / "per_image.csv").read_text().splitlines()))
    nano = [float(r["psnr_y"]) for r in rows if r["method"] == "nano"]
    assert len(nano) == 2 and all(20 < v < 60 for v in nano)
    assert "| nano |" in (out / "report.md").read_text()
    # a scale mismatch is a clear error, not a crash
    assert main(["eval", "--gt", str(gt_dir), "--scale", "3", "--model", str(ckpt), "-o", str(out)]) == 2


def test_eval_degrade_draws_one_seeded_stream_per_image_name(tmp_path: Path, photo_paths: list[Path]) -> None:
    """`--degrade PIPELINE --seed S`: each image's LQ comes from its own stream, seeded by S and its file name,
    so the scores do not depend on the order images are visited in, and another seed draws another LQ."""
    from paragonsr.commands.eval import pipeline_lq
    from paragonsr.degrade import build_degradation
    from paragonsr.evaluate import evaluate, resampler_method

    gt_dir = _gt_folder(tmp_path, photo_paths)
    out = tmp_path / "report"
    args = ["eval", "--gt", str(gt_dir), "--degrade", "lrgen", "--seed", "3", "--no-crops", "-o", str(out)]
    assert main(args) == 0
    rows = {r["image"]: float(r["psnr_y"]) for r in csv.DictReader((out / "per_image.csv").open())}
    pipe = build_degradation("lrgen", None, 2)

    def lq_for(path: Path, gt: np.ndarray) -> np.ndarray:  # the seeding spelled out
        o = pipe(gt.astype(np.float32), np.random.default_rng([3, *path.name.encode()]))
        return np.round(np.clip(o["lq"], 0, 1) * 255).astype(np.float32) / 255

    paths = sorted(gt_dir.iterdir(), reverse=True)  # the other order
    ref = evaluate(paths, [resampler_method("bicubic", 2)], 2, lq_for, progress=False)
    assert rows == pytest.approx({r.image: r.psnr_y for r in ref.results}, abs=1e-3)
    gt = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    a, b = pipeline_lq(pipe, 3)(paths[0], gt), pipeline_lq(pipe, 4)(paths[0], gt)
    assert np.array_equal(a, lq_for(paths[0], gt)) and not np.array_equal(a, b)
