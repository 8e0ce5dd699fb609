"""End to end: ParagonSR v1 and RRDBNet as `network_g` in training, then `upscale` and `export` on the
checkpoints the trainer wrote (no flags: the arch comes from the checkpoint metadata)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import imread, load_photo_crop
from paragonsr.cli import main
from paragonsr.train.option_io import parse_options
from paragonsr.train.trainer import Trainer

NETWORKS: dict[str, dict[str, Any]] = {
    "paragonsr_v1": {"type": "paragon_sr_nano", "scale": 2},  # an alias spelling of the v1 nano variant
    "rrdbnet": {"type": "RRDBNet", "scale": 2, "num_feat": 8, "num_block": 1, "num_grow_ch": 4},
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, photo_paths: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("v1_rrdb_data")
    for sub in ("gt", "lq"):
        (root / sub).mkdir()
    for p in photo_paths[4:8]:
        h, w = imread(str(p)).shape[:2]
        gt = (load_photo_crop(p, 32, h // 2, w // 2) * 255).round().astype(np.uint8)
        cv2.imwrite(str(root / "gt" / f"{p.stem}.png"), gt[:, :, ::-1])
        cv2.imwrite(
            str(root / "lq" / f"{p.stem}.png"),
            cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)[:, :, ::-1],
        )
    return root


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_train_upscale_export(name: str, data_root: Path, tmp_path: Path) -> None:
    paired = {
        "type": "PairedImageDataset",
        "dataroot_gt": str(data_root / "gt"),
        "dataroot_lq": str(data_root / "lq"),
    }
    opt = {
        "name": name,
        "scale": 2,
        "manual_seed": 3,
        "datasets": {"train": {**paired, "gt_size": 32, "batch_size_per_gpu": 2}},
        "network_g": NETWORKS[name],
        "path": {"experiments_root": str(tmp_path / "exp")},
        "train": {"total_iter": 3, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 3, "use_tb_logger": False},
    }
    res = Trainer(parse_options(opt)).train()
    assert res.iters == 3 and all(math.isfinite(lo["l_pixel"]) for lo in res.losses)
    ckpt = tmp_path / "exp" / "models" / "net_g_3.safetensors"
    assert ckpt.is_file()

    out_img = tmp_path / "up.png"
    assert (
        main(
            [
                "upscale",
                str(data_root / "lq" / sorted((data_root / "lq").iterdir())[0].name),
                "-o",
                str(out_img),
                "-m",
                str(ckpt),
                "-q",
            ]
        )
        == 0
    )
    assert imread(str(out_img)).shape == (32, 32, 3)

    rel = tmp_path / "release"
    assert (
        main(
            [
                "export",
                str(ckpt),
                "-o",
                str(rel),
                "--name",
                name,
                "--latency-runs",
                "1",
                "--latency-size",
                "32",
            ]
        )
        == 0
    )
    assert (rel / f"{name}_fp32.onnx").is_file()
    card = json.loads((rel / "model_card.json").read_text())["model"]
    assert card["scale"] == 2 and card["params_trainable"] > 0
    assert card["variant"] == {"paragonsr_v1": "paragonsr_nano", "rrdbnet": "rrdbnet"}[name]
