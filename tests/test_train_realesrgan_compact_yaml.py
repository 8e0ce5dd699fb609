"""A user's Real-ESRGAN compact fine-tune YAML trains with only its paths changed (plus CPU-sized crops).

Deviation, on purpose: ``perceptual_opt.pretrained=false`` because CI has no VGG19 weights offline (with weights
in PARAGONSR_WEIGHTS the YAML needs no such override)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from conftest import imread, load_photo_crop
from paragonsr.archs import build_arch
from paragonsr.checkpoint import load_state_dict
from paragonsr.train.option_io import load_options
from paragonsr.train.trainer import Trainer

COMPACT_YML = Path(__file__).parent / "fixtures" / "realesrgan_compact_x2_finetune.yml"


def test_realesrgan_compact_yaml_trains(tmp_path: Path, photo_paths: list[Path]) -> None:
    for sub in ("DF2K", "Set5/GTmod12", "Set5/LRbicx2", "weights"):
        (tmp_path / sub).mkdir(parents=True)
    names = []
    for p in photo_paths[:4]:
        h, w = imread(str(p)).shape[:2]
        img = (load_photo_crop(p, 64, h // 2 - 32, w // 2 - 32) * 255).round().astype(np.uint8)[:, :, ::-1]
        cv2.imwrite(str(tmp_path / "DF2K" / f"{p.stem}.png"), img)
        names.append(f"{p.stem}.png (64,64,3)")
    (tmp_path / "meta_info.txt").write_text("\n".join(names))
    gt = imread(str(tmp_path / "DF2K" / names[0].split()[0]))[:48, :48]
    cv2.imwrite(str(tmp_path / "Set5/GTmod12/a.png"), gt)
    cv2.imwrite(str(tmp_path / "Set5/LRbicx2/a.png"), cv2.resize(gt, (24, 24), interpolation=cv2.INTER_CUBIC))
    # the YAML's pretrained weights (a transferred Compact): a BasicSR-layout .pth with params_ema
    compact = build_arch("srvggnetcompact", num_feat=32, num_conv=32, upscale=2)
    torch.save({"params_ema": compact.state_dict()}, tmp_path / "weights" / "small.pth")

    paths = [
        f"datasets.train.dataroot_gt={tmp_path / 'DF2K'}",
        f"datasets.train.meta_info={tmp_path / 'meta_info.txt'}",
        f"datasets.val.dataroot_gt={tmp_path / 'Set5/GTmod12'}",
        f"datasets.val.dataroot_lq={tmp_path / 'Set5/LRbicx2'}",
        f"path.pretrain_network_g={tmp_path / 'weights' / 'small.pth'}",
        f"path.experiments_root={tmp_path / 'exp'}",
    ]
    cpu_sized = [
        "gt_size=32", "datasets.train.gt_size=32", "datasets.train.batch_size_per_gpu=2", "queue_size=4",
        "datasets.train.num_worker_per_gpu=2", "train.total_iter=3", "val.val_freq=3", "logger.print_freq=1",
        "logger.save_checkpoint_freq=3", "logger.use_tb_logger=false", "train.perceptual_opt.pretrained=false",
    ]  # fmt: skip
    opt = load_options(COMPACT_YML, force=paths + cpu_sized)
    trainer = Trainer(opt)
    assert torch.equal(
        trainer.model.net_g.state_dict()["body.0.weight"], compact.state_dict()["body.0.weight"]
    )
    res = trainer.train()
    assert res.iters == 3
    losses = res.losses[-1]
    assert {"l_pixel", "l_perceptual", "l_g_gan", "l_d_total"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())
    assert res.metrics["validation"]["psnr"] > 20  # Set5-style paired validation ran on the generator's EMA
    _, meta = load_state_dict(tmp_path / "exp" / "models" / "net_g_ema_3.safetensors")
    assert meta["arch"] == "srvggnetcompact" and meta["arch_kwargs"]["num_conv"] == 32
    assert (tmp_path / "exp" / "models" / "net_d_3.safetensors").is_file()
