"""scripts/perceptual_card.py on tiny inputs: the card's table agrees with an independent computation, and the
crop grid holds bicubic | MKS | default | candidate | HR at the given box (the tests' weights folder is empty, so
only PSNR/SSIM-Y and the weight-free NIQE fit are scored)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, load_script

DEFAULT_UNFUSED = REPO / "src/paragonsr/assets/models/default_unfused.safetensors"


def test_card_table_and_crop_grid(tmp_path: Path, photos_dir: Path) -> None:
    from paragonsr.checkpoint import load_model
    from paragonsr.evaluate import bicubic_lq, mod_crop, quantize8
    from paragonsr.io.image_io import read_image, to_rgb
    from paragonsr.metrics import calculate_psnr
    from paragonsr.metrics.perceptual import training_loss_specs, training_weight_names
    from paragonsr.train.option_io import load_options

    mod = load_script(REPO / "scripts" / "perceptual_card.py")
    photos = sorted(photos_dir.glob("*.jpg"))[:2]
    sets = {}
    for i, p in enumerate(photos):  # two one-photo sets
        (tmp_path / f"s{i}").mkdir()
        shutil.copyfile(p, tmp_path / f"s{i}" / p.name)
        sets[f"s{i}"] = tmp_path / f"s{i}"
    # the candidate: `default`'s unfused weights in a GAN run folder (so the two rows must agree)
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    opt = load_options(REPO / "configs" / "2x_ParagonSR2_Nano_perceptual_default.yml").model_dump(mode="json")
    (run / "options.yml").write_text(yaml.safe_dump(opt), encoding="utf-8")
    cand = run / "models" / "net_g_ema_500.safetensors"
    shutil.copyfile(DEFAULT_UNFUSED, cand)
    box = (photos[0].name, 100, 60, 64)
    out = tmp_path / "card"
    argv = [
        str(cand),
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
        "--box",
        f"b={box[0]}:{box[1]},{box[2]},{box[3]}",
    ]
    argv += ["--sets-only", *(f"--set={k}={v}" for k, v in sets.items())]
    assert mod.main(argv) == 0

    card = json.loads((out / "card.json").read_text())
    assert card["sets"] == {"s0": 1, "s1": 1} and card["images"] == 2
    allm = card["means"]["all"]
    assert list(allm) == ["bicubic", "MKS 2021", "default", "perceptual"]
    for key, val in allm["default"].items():  # the same weights (fused vs unfused: ~1e-7 apart)
        assert allm["perceptual"][key] == pytest.approx(val, abs=2e-3), key
    assert allm["default"]["psnr_y"] > allm["MKS 2021"]["psnr_y"] > allm["bicubic"]["psnr_y"]
    # PSNR-Y computed here, independently of eval and the card
    model = load_model(DEFAULT_UNFUSED)
    want = []
    for p in photos:
        gt = mod_crop(to_rgb(read_image(p)[0]), 2)
        with torch.no_grad():
            sr = model(torch.from_numpy(bicubic_lq(gt, 2)).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        want.append(calculate_psnr(quantize8(sr), quantize8(gt), crop_border=2, test_y_channel=True))
    assert allm["default"]["psnr_y"] == pytest.approx(float(np.mean(want)), abs=1e-3)
    assert card["means"]["s1"]["default"]["psnr_y"] == pytest.approx(want[1], abs=1e-3)
    md = (out / "README.md").read_text()
    assert (
        "- LPIPS-alex not scored: its weights are not fetched (`paragonsr weights fetch alexnet lpips_alex`)"
        in md
    )
    assert [c[0] for c in card["columns"]] == ["psnr_y", "ssim_y", "niqe"]  # the weight-free NIQE fit only
    assert "| perceptual | " in md and "PSNR-Y +0.00 dB vs default (target >= -1.0 dB): met" in md
    assert "| [b](crops/b.png) | " + photos[0].name + " | 100, 60, 64 |" in md

    # † / ? marks: the candidate's record says LPIPS-vgg; default's (manifest) uses no network
    trained = training_weight_names(training_loss_specs(cand))
    assert (
        mod.mark(("vgg16", "lpips_vgg"), trained) == "†"
        and mod.mark(("alexnet", "lpips_alex"), trained) == ""
    )
    assert mod.mark(("alexnet", "lpips_alex"), None) == "?" and mod.mark((), None) == ""
    assert mod.packaged_train_weights("default") == frozenset()

    grid = read_image(out / "crops" / "b.png")[0]
    assert "![b](crops/b.png)" in md
    s, zoom, gap = 64, 2, 4
    assert grid.shape[:2] == (s * zoom, 5 * s * zoom + 4 * gap)
    gt = quantize8(mod_crop(to_rgb(read_image(photos[0])[0]), 2))
    hr = gt[100 : 100 + s, 60 : 60 + s].repeat(2, 0).repeat(2, 1)
    panel = lambda i: np.round(grid[:, i * (s * zoom + gap) : i * (s * zoom + gap) + s * zoom] * 255)  # noqa: E731
    assert np.array_equal(panel(4)[24:], hr[24:])  # below the label
    assert (
        np.abs(panel(2)[24:] - panel(3)[24:]).max() <= 1
    )  # fused and unfused `default`: 8-bit rounding apart
    full = quantize8(sr_full(model, gt / 255.0))[100 : 100 + s, 60 : 60 + s].repeat(2, 0).repeat(2, 1)
    assert np.abs(panel(2)[24:] - full[24:]).max() <= 1  # the crop's LR margin: as the whole-image output


def sr_full(model: torch.nn.Module, gt: np.ndarray) -> np.ndarray:
    from paragonsr.evaluate import bicubic_lq

    with torch.no_grad():
        x = torch.from_numpy(bicubic_lq(gt.astype(np.float32), 2)).permute(2, 0, 1)[None]
        return model(x)[0].permute(1, 2, 0).numpy()


def test_bad_box_is_one_line() -> None:
    mod = load_script(REPO / "scripts" / "perceptual_card.py")
    with pytest.raises(ValueError, match=r"--box 'x=a.jpg': expected NAME=IMAGE:TOP,LEFT\[,SIZE\]"):
        mod.parse_box("x=a.jpg")
    assert mod.parse_box("t=a b.jpg:10,20,32") == mod.Box(
        "t", "a b.jpg", 10, 20, "given on the command line", 32
    )
