"""The perceptual nano CPU recipe (configs/2x_ParagonSR2_Nano_perceptual_default.yml): it names only training
lists (never a held-out photo), passes ``train --check`` on the shared photo sets, starts from the packaged
``default`` and trains a few GAN iterations on the bundled photos with every term of the recipe — with random
perceptual backbones always, and as written (real LPIPS weights, LPIPS-alex validation) when the weights were
fetched; without them that test skips saying what to run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SHARED_PHOTOS, load_photo_crop
from paragonsr.checkpoint import load_state_dict
from paragonsr.cli import main
from paragonsr.train.option_io import parse_options, read_yaml
from paragonsr.train.trainer import Trainer
from paragonsr.weights import WeightsError

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "configs" / "2x_ParagonSR2_Nano_perceptual_default.yml"
# The weights folder the session started with (fetched weights; conftest may point every test at an empty one):
# read at import, before any fixture changes the environment.
REAL_WEIGHTS = Path(
    os.environ.get("PARAGONSR_WEIGHTS") or Path.home() / ".cache/paragonsr/weights"
).expanduser()
TERMS = {"l_pixel", "l_mssim", "l_lpips", "l_ffl", "l_consistency", "l_g_gan", "l_d_adv"}


def _names(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()}


def test_recipe_trains_on_training_lists_only_and_starts_from_default() -> None:
    raw = read_yaml(CFG)
    train = raw["datasets"]["train"]
    assert train["meta_info"] == ["configs/meta_info/photos_train.txt", "configs/meta_info/photos2_train.txt"]
    assert train["dataroot_gt"] == ["../shared/data/photos", "../shared/data/photos2"]
    held_out = {p: _names(p) for p in (REPO / "configs/meta_info").glob("*_val*.txt")}
    assert len(held_out) >= 5  # photos_val + photos2_val and its per-group lists
    for lst in train["meta_info"]:
        names = _names(REPO / lst)
        assert names, lst
        for val_list, val_names in held_out.items():
            if val_list.name.startswith(Path(lst).name.split("_")[0] + "_"):  # same photo set
                assert not names & val_names, f"{lst} trains on held-out photos of {val_list.name}"
    vals = {k: v for k, v in raw["datasets"].items() if k != "train"}
    assert {v["meta_info"] for v in vals.values()} == {
        "configs/meta_info/photos_val.txt",
        "configs/meta_info/photos2_val.txt",
    }
    assert all(v["degradation"] == "bicubic" for v in vals.values())  # the benchmark LR
    assert raw["path"]["pretrain_network_g"] == "src/paragonsr/assets/models/default_unfused.safetensors"
    gan = raw["train"]["gan_opt"]
    assert gan["type"] == "R3GANLoss" and gan["r1_gamma"] > 0 and gan["lazy_interval"] > 1


def test_recipe_passes_check_on_the_shared_photos(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = SHARED_PHOTOS.parent
    if not (data / "photos2").is_dir():
        pytest.skip(f"the shared photo sets are not at {data} (set PARAGONSR_PHOTOS to its photos folder)")
    monkeypatch.chdir(REPO)  # the config's paths are relative to the repository root (`../shared` beside it)
    roots = [f"datasets.train.dataroot_gt=[{data / 'photos'}, {data / 'photos2'}]",
             f"datasets.val.dataroot_gt={data / 'photos'}", f"datasets.val_photos2.dataroot_gt={data / 'photos2'}"]  # fmt: skip
    # folders, training/held-out lists, the packaged start weights, network and degradation: all there
    assert (
        main(["train", "-opt", str(CFG), "--check", "--force", *roots, "train.lpips_opt.pretrained=false"])
        == 0
    )
    capsys.readouterr()
    # as written: OK, or (weights not fetched) refused naming the perceptual term and nothing else
    rc = main(["train", "-opt", str(CFG), "--check", "--force", *roots])
    err = capsys.readouterr().err
    assert rc == 0 or (rc == 2 and err.count("\n  ") == 1 and "train.lpips_opt" in err), err
    # a held-out list that is not there is caught before training
    assert (
        main(["train", "-opt", str(CFG), "--check", "--force", *roots, "datasets.val.meta_info=nope.txt"])
        == 2
    )
    assert "nope.txt does not exist" in capsys.readouterr().err


def _small_run(tmp_path: Path, photo_paths: list[Path], real_weights: bool) -> dict:
    hr = tmp_path / "hr"
    hr.mkdir()
    for p in photo_paths[:3]:
        img = load_photo_crop(p, 64, 0, 0)
        cv2.imwrite(str(hr / f"{p.stem}.png"), (img[..., ::-1] * 255).round().astype(np.uint8))
    raw = read_yaml(CFG)
    for key, ds in raw["datasets"].items():
        ds.update(dataroot_gt=str(hr), meta_info=None)
        if key == "train":
            ds.update(gt_size=32, batch_size_per_gpu=2, num_worker_per_gpu=0, dataset_enlarge_ratio=1)
    raw["path"]["pretrain_network_g"] = str(REPO / raw["path"]["pretrain_network_g"])
    t = raw["train"]
    t.update(total_iter=2, warmup_iter=1, calibrate_iters=2)
    t["gan_opt"]["lazy_interval"] = 2  # iteration 2 is penalised: R1/R2 run in the test
    raw["val"].update(val_freq=2, tile_size=0)
    raw["logger"].update(save_checkpoint_freq=2, use_tb_logger=False)
    if not real_weights:
        t["lpips_opt"]["pretrained"] = False
        del raw["val"]["metrics"]["lpips"]
    return raw


def _check_result(trainer: Trainer, res, lpips_metric: bool) -> None:
    assert res.iters == 2
    assert all(set(logs) >= TERMS for logs in res.losses)
    assert "r1" not in res.losses[0] and res.losses[1]["r1"] >= 0 and res.losses[1]["r2"] >= 0
    assert all(math.isfinite(v) for logs in res.losses for v in logs.values())
    assert res.losses[0]["l_lpips"] > 0
    assert set(res.metrics) == {"photos_val", "photos2_val"}  # by dataset name
    for m in res.metrics.values():
        assert m["psnr"] > 20
        if lpips_metric:
            assert 0 <= m["lpips"] < 1


def test_recipe_trains_with_random_backbones(
    tmp_path: Path, photo_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _small_run(tmp_path, photo_paths, real_weights=False)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="RANDOM vgg16"):
        trainer = Trainer(parse_options(raw, source=str(CFG)))
    packaged, _ = load_state_dict(REPO / "src/paragonsr/assets/models/default_unfused.safetensors")
    for k, v in trainer.model.net_g.state_dict().items():
        assert torch.equal(v, packaged[k]), k  # starts from the packaged fidelity `default`
    assert trainer.model.net_d.in_conv.out_channels == 32  # MUNet-32, as the recipe says
    _check_result(trainer, trainer.train(), lpips_metric=False)


def test_recipe_trains_as_written_with_real_weights(
    tmp_path: Path, photo_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _small_run(tmp_path, photo_paths, real_weights=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(REAL_WEIGHTS))
    try:
        trainer = Trainer(parse_options(raw, source=str(CFG)))
        res = trainer.train()  # validation resolves the LPIPS-alex metric's weights
    except WeightsError as exc:
        pytest.skip(f"perceptual weights not fetched (run `paragonsr weights fetch`): {exc}")
    _check_result(trainer, res, lpips_metric=True)
