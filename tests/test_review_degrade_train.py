"""Regression tests for defects found in the review of the degradation and training areas."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main


def test_degrade_refuses_outputs_that_would_collide(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(hr / "a.png"), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(hr / "a.jpg"), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    rc = main(["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(out), "--scale", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "a.jpg" in err and "a.png" in err and "both be written" in err
    assert not (out / "lq").exists()


def test_dataset_color_y_is_rejected_not_ignored() -> None:
    from paragonsr.train.option_io import OptionError, parse_options

    opt = {
        "name": "t",
        "scale": 2,
        "datasets": {
            "train": {
                "type": "PairedImageDataset",
                "dataroot_gt": "g",
                "dataroot_lq": "l",
                "gt_size": 32,
                "color": "y",
            }
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 2},
        "train": {"total_iter": 10, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
    }
    with pytest.raises(OptionError, match=r"datasets\.train\.color.*not supported"):
        parse_options(opt)
    opt["datasets"]["train"]["color"] = "rgb"
    assert parse_options(opt).datasets["train"].color == "rgb"


def test_enlarged_epoch_draws_distinct_samples_for_repeats() -> None:
    from paragonsr.data.datasets import ResumableSampler

    s = ResumableSampler(10, 1, 0, True, seed=5, ratio=3)
    keys = list(s)
    assert len(keys) == 30 and len(set(keys)) == 30  # each repeat has its own per-sample RNG key
    s.set_epoch(1)
    assert not set(keys) & set(s)  # and no key is reused by the next epoch


@pytest.mark.parametrize("phase", ["train", "val"])
def test_paired_dataset_rejects_wrong_scale_pairs(tmp_path: Path, phase: str) -> None:
    from paragonsr.data.datasets import PairedImageDataset

    for d in ("gt", "lq"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), (rng.random((40, 40, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "lq" / "a.png"), (rng.random((10, 10, 3)) * 255).astype(np.uint8))  # a x4 LQ
    gt_size = 16 if phase == "train" else None
    ds = PairedImageDataset(tmp_path / "gt", tmp_path / "lq", 2, gt_size=gt_size, phase=phase)
    with pytest.raises(ValueError, match=r"a\.png: GT 40x40 is not x2 of LQ 10x10 \(expected 20x20\)"):
        ds[0]
    # an odd GT whose LQ was floor-downscaled (41 -> 20) is still a valid pair
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), (rng.random((41, 41, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "lq" / "a.png"), (rng.random((20, 20, 3)) * 255).astype(np.uint8))
    item = ds[0]
    assert item["gt"].shape[-1] == 2 * item["lq"].shape[-1]


def test_nonfinite_guard_counts_each_network_separately() -> None:
    import torch

    from paragonsr.train.option_io import parse_options
    from paragonsr.train.sr_model import NonFiniteError, SRModel

    opt = {
        "name": "t",
        "scale": 2,
        "datasets": {
            "train": {"type": "PairedImageDataset", "dataroot_gt": "g", "dataroot_lq": "l", "gt_size": 32}
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
        "train": {"total_iter": 10, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"},
                  "max_nonfinite_steps": 3},
    }  # fmt: skip
    model = SRModel(parse_options(opt), torch.device("cpu"))
    # a GAN whose D step fails every iteration while G's succeeds: the D streak must still reach the limit
    model._guard(True, 0, "generator")
    model._guard(False, 0, "discriminator")
    model._guard(True, 1, "generator")
    model._guard(False, 1, "discriminator")
    model._guard(True, 2, "generator")
    with pytest.raises(NonFiniteError, match=r"3 consecutive non-finite steps at iter 2 \(discriminator\)"):
        model._guard(False, 2, "discriminator")
    state = model.state_dict()
    model._guard(True, 3, "discriminator")
    model.load_state_dict(state)  # the per-network streaks survive a resume
    with pytest.raises(NonFiniteError, match="4 consecutive"):
        model._guard(False, 3, "discriminator")


def test_train_allow_download_flag_reaches_weight_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import json

    from paragonsr.weights import ALLOW_DOWNLOAD_ENV, WeightsError, resolve_weights

    monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "0")  # recorded, so the flag's "1" is undone after the test
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    manifest = {"w": {"file": "w.bin", "url": src.resolve().as_uri(), "sha256": None}}
    wdir = tmp_path / "weights"
    with pytest.raises(WeightsError, match="--allow-download"):
        resolve_weights("w", wdir, manifest=manifest)
    opt = tmp_path / "o.yml"
    for sub in ("g", "l"):  # train checks its dataset folders before anything else
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), np.zeros((32, 32, 3), np.uint8))
    opt.write_text(
        json.dumps(
            {
                "name": "t",
                "scale": 2,
                "datasets": {
                    "train": {
                        "type": "PairedImageDataset",
                        "dataroot_gt": str(tmp_path / "g"),
                        "dataroot_lq": str(tmp_path / "l"),
                        "gt_size": 32,
                    }
                },
                "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
                "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}},
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr("paragonsr.train.trainer.train_pipeline", lambda *a, **k: None)
    assert main(["train", "-opt", str(opt), "--allow-download"]) == 0
    assert resolve_weights("w", wdir, manifest=manifest).read_bytes() == b"weights"


def test_degrade_output_inside_input_is_not_read_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "a.png"), (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    args = ["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(hr / "lr"), "--scale", "2"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # the resumed run sees only a.png, already done
    assert "1 images, 1 already done, 0 to degrade" in capsys.readouterr().out
    assert not (hr / "lr" / "lq" / "lr").exists()


def test_training_reader_applies_exif_orientation_like_degrade(tmp_path: Path) -> None:
    from PIL import Image

    from paragonsr.data.transforms import imread_rgb
    from paragonsr.infer.image_io import read_image

    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :8] = 255  # white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, quality=100, exif=exif)
    img = imread_rgb(path)
    assert img.shape == (32, 16, 3)  # displayed orientation, as paragonsr degrade/upscale read it
    np.testing.assert_array_equal(img, read_image(path)[0])
    assert img[:8].mean() > 0.9 and img[-8:].mean() < 0.1  # the band is now on top


def test_conflicting_gt_size_and_lq_size_is_an_error() -> None:
    from paragonsr.train.option_io import OptionError, parse_options

    def opt(**ds: int) -> dict:
        return {
            "name": "t",
            "scale": 2,
            "datasets": {
                "train": {"type": "PairedImageDataset", "dataroot_gt": "g", "dataroot_lq": "l", **ds}
            },
            "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
            "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}},
        }

    with pytest.raises(
        OptionError, match=r"gt_size 48 and lq_size 32 disagree at scale 2 \(expected gt_size = .* 64\)"
    ):
        parse_options(opt(gt_size=48, lq_size=32))
    assert parse_options(opt(gt_size=64, lq_size=32)).datasets["train"].lq_size == 32


def test_degrade_no_gt_refuses_pipelines_that_change_the_gt(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    cv2.imwrite(str(hr / "a.png"), (np.random.default_rng(0).random((33, 35, 3)) * 255).astype(np.uint8))
    cfg = tmp_path / "crop.yml"
    cfg.write_text("type: realesrgan\ngt_size: 16\n", encoding="utf-8")  # the pipeline crops the GT
    out = tmp_path / "out"
    rc = main(["degrade", "--config", str(cfg), "-i", str(hr), "-o", str(out), "--scale", "2", "--no-gt"])
    assert rc == 1
    assert "--no-gt: the pipeline changed the GT" in capsys.readouterr().err
    assert not (out / "lq" / "a.png").exists()
    # a pipeline that keeps the GT (odd sizes only lose the < scale remainder) is fine with --no-gt
    out2 = tmp_path / "out2"
    assert (
        main(["degrade", "--pipeline", "lrgen", "-i", str(hr), "-o", str(out2), "--scale", "2", "--no-gt"])
        == 0
    )
    assert cv2.imread(str(out2 / "lq" / "a.png")).shape == (16, 17, 3)
