"""The shipped two-stage ParagonSR2 nano recipe runs as written (paths and CPU sizes forced): the fidelity
stage trains, and the perceptual stage (R3GAN + MUNet + weight-free losses, OTF realesrgan data) starts from
the fidelity EMA through its relative ``pretrain_network_g`` + ``param_key_g: params_ema``."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import load_photo_crop
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
        h, w = cv2.imread(str(p)).shape[:2]
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
