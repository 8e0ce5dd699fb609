"""The shipped two-stage ParagonSR2 nano recipe runs as written (paths and CPU sizes forced): the fidelity
stage trains, and the perceptual stage (R3GAN + MUNet + weight-free losses, OTF realesrgan data) starts from
the fidelity EMA through its relative ``pretrain_network_g`` + ``param_key_g: params_ema``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import imread, load_photo_crop
from paragonsr.checkpoint import load_state_dict
from paragonsr.train.option_io import load_options
from paragonsr.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_two_stage_nano_recipe(
    tmp_path: Path, photo_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    for p in photo_paths[:3]:
        h, w = imread(str(p)).shape[:2]
        img = (load_photo_crop(p, 48, h // 2 - 24, w // 2 - 24) * 255).round().astype(np.uint8)
        cv2.imwrite(str(hr / f"{p.stem}.png"), img[:, :, ::-1])
    monkeypatch.chdir(tmp_path)  # the configs' paths are relative to the working directory
    cpu = [
        f"datasets.train.dataroot_gt={hr}", f"datasets.val.dataroot_gt={hr}", "train.total_iter=2",
        "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2", "datasets.train.num_worker_per_gpu=0",
        "datasets.train.dataset_enlarge_ratio=1", "val.val_freq=2", "val.tile_size=12", "logger.save_checkpoint_freq=2",
        "logger.use_tb_logger=false", "train.warmup_iter=1",
    ]  # fmt: skip
    fid = Trainer(load_options(CONFIGS / "2x_ParagonSR2_Nano_fidelity.yml", force=cpu)).train()
    assert fid.iters == 2 and set(fid.losses[-1]) >= {"l_pixel", "l_mssim"}
    assert fid.metrics["val"]["psnr"] > 20  # tiled (12 px LQ tiles) validation of the calibrated EMA
    ema, _ = load_state_dict(
        Path("experiments/2x_ParagonSR2_Nano_fidelity/models/net_g_ema_latest.safetensors")
    )

    per = Trainer(
        load_options(CONFIGS / "2x_ParagonSR2_Nano_perceptual.yml", force=[*cpu, "network_d.num_feat=16"])
    )
    for k, v in per.model.net_g.state_dict().items():
        assert torch.equal(v, ema[k]), k  # initialised from the fidelity EMA
    res = per.train()
    last = res.losses[-1]
    assert {"l_pixel", "l_mssim", "l_ffl", "l_consistency", "l_g_gan", "l_d_adv"} <= set(last)
    assert all(math.isfinite(v) for v in last.values())


# The packaged models' training chain: config -> the config whose run it starts from (its
# ``path.pretrain_network_g`` is an EMA checkpoint that run writes); None = from scratch.
CHAIN = {
    "scratch": None,
    "default": "scratch",
    "classic": "scratch",
    "classic_multiscale": "classic",
    "default_multiscale": "classic_multiscale",
}
# the two-stage recipe above; the CPU perceptual recipe (test_train_perceptual_recipe.py); QAT fine-tunes of the
# packaged models
NOT_IN_CHAIN = {"fidelity", "perceptual", "perceptual_default", "default_qat", "classic_qat"}
# Stage 3 (the data lever, photos + photos2): fine-tunes of a packaged model's unfused twin.
FROM_PACKAGED = {"classic_photos2": "classic", "default_photos2": "default"}


def _raw(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"2x_ParagonSR2_Nano_{name}.yml").read_text(encoding="utf-8"))


def test_every_nano_config_is_in_the_chain_and_names_its_predecessor_run() -> None:
    names = {p.stem.removeprefix("2x_ParagonSR2_Nano_") for p in CONFIGS.glob("2x_ParagonSR2_Nano_*.yml")}
    assert names - NOT_IN_CHAIN == set(CHAIN) | set(FROM_PACKAGED)
    for name, model in FROM_PACKAGED.items():
        raw = _raw(name)
        assert raw["name"] == f"2x_ParagonSR2_Nano_{name}"
        path = raw["path"]["pretrain_network_g"]
        assert path == f"src/paragonsr/assets/models/{model}_unfused.safetensors", name
        assert (CONFIGS.parent / path).is_file(), name
    for name, before in CHAIN.items():
        raw = _raw(name)
        assert raw["name"] == f"2x_ParagonSR2_Nano_{name}"  # its run folder is experiments/<file name>
        if before is None:
            assert raw["path"]["pretrain_network_g"] is None
            continue
        prev = _raw(before)
        start = f"experiments/2x_ParagonSR2_Nano_{before}/models/net_g_ema_"
        path = raw["path"]["pretrain_network_g"]
        assert path.startswith(start) and path.endswith(".safetensors"), name
        it = int(path[len(start) : -len(".safetensors")])  # a checkpoint that run writes
        assert 0 < it <= prev["train"]["total_iter"] and it % prev["logger"]["save_checkpoint_freq"] == 0, (
            name
        )


@pytest.mark.parametrize("name", sorted(CHAIN) + sorted(FROM_PACKAGED))
def test_packaged_model_configs_run_as_written(
    name: str, tmp_path: Path, photo_paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configs that train the packaged models run two iterations on the bundled photos (sizes forced to CPU
    test scale; data, degradation, losses, optimizer and schedule as shipped), starting from packaged weights in
    place of the predecessor run their ``path.pretrain_network_g`` names; every validation set is scored."""
    repo = CONFIGS.parent
    hr = tmp_path / "hr"
    hr.mkdir()
    for p in photo_paths[:2]:
        cv2.imwrite(
            str(hr / f"{p.stem}.png"),
            (load_photo_crop(p, 64, 0, 0)[..., ::-1] * 255).round().astype(np.uint8),
        )
    cfg = CONFIGS / f"2x_ParagonSR2_Nano_{name}.yml"
    raw = _raw(name)
    vals = [k for k in raw["datasets"] if k != "train"]
    monkeypatch.chdir(tmp_path)
    force = [
        f"datasets.train.dataroot_gt={hr}", "datasets.train.meta_info=~", "train.total_iter=2",
        "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2", "datasets.train.num_worker_per_gpu=0",
        "datasets.train.dataset_enlarge_ratio=1", "val.val_freq=2", "val.tile_size=0", "logger.save_checkpoint_freq=2",
        "logger.use_tb_logger=false", "train.warmup_iter=1", "train.calibrate_iters=2",
        *(f"datasets.{k}.dataroot_gt={hr}" for k in vals), *(f"datasets.{k}.meta_info=~" for k in vals),
    ]  # fmt: skip
    weights = repo / "src/paragonsr/assets/models/classic_unfused.safetensors"
    if name in FROM_PACKAGED:
        weights = repo / raw["path"]["pretrain_network_g"]  # the packaged file it names, relative to the repo
    starts = CHAIN.get(name) is not None or name in FROM_PACKAGED
    if starts:
        force.append(f"path.pretrain_network_g={weights}")
    trainer = Trainer(load_options(cfg, force=force))
    if starts:
        packaged, _ = load_state_dict(weights)
        for k, v in trainer.model.net_g.state_dict().items():
            assert torch.equal(v, packaged[k]), k
    res = trainer.train()
    assert res.iters == 2 and all(math.isfinite(v) for v in res.losses[-1].values())
    assert len(res.metrics) == len(vals) and all(m["psnr"] > 20 for m in res.metrics.values())


def test_manifest_records_the_checkpoint_where_its_config_stops() -> None:
    """A packaged model's training record names the committed config that reproduces it, and the packaged
    checkpoint is the EMA at that config's ``total_iter``: one command rebuilds it."""
    manifest = json.loads((CONFIGS.parent / "src/paragonsr/assets/models/manifest.json").read_text())
    records = [r for r in manifest["training"] if isinstance(r.get("config"), str)]  # a committed config file
    from paragonsr.infer import PACKAGED_MODELS

    assert {"default", "classic"} <= {r["model"] for r in records} <= set(PACKAGED_MODELS)
    for r in records:
        raw = yaml.safe_load((CONFIGS.parent / r["config"]).read_text(encoding="utf-8"))
        # settings the run overrode on the command line are recorded beside the config (packaging since issue 23)
        total = (r.get("overrides") or {}).get("train.total_iter", raw["train"]["total_iter"])
        assert r["checkpoint"].endswith(f"_{total}.safetensors"), r["config"]
        assert r["final"]["iter"] == total and r["final"]["val"], r["config"]
