"""The compact transfer + fine-tune flow at x4 (docs/compact_transfer_x4.md) on generated files: `paragonsr transfer`
of a 64 feat / 16 conv x4 Compact to 32/32, `train --check` of configs/4x_realesrgan_compact_transfer_finetune.yml
(missing pretrained file and VGG weights reported before any work), two training iterations from that YAML, and
`eval --benchmark` of the source, the transferred and the fine-tuned models on a tiny generated set."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paragonsr.archs import build_arch
from paragonsr.checkpoint import load_state_dict
from paragonsr.cli import main
from paragonsr.weights import ALLOW_DOWNLOAD_ENV

CFG = Path(__file__).resolve().parents[1] / "configs" / "4x_realesrgan_compact_transfer_finetune.yml"
FIDELITY = ["model_type=RealESRNetModel", "network_d=null", "train.gan_opt=null", "train.perceptual_opt=null"]


def _images(folder: Path, n: int, size: int, seed: int) -> list[str]:
    """Smooth random colour images with a hard edge; returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        img: np.ndarray = cv2.resize(rng.random((size // 8, size // 8, 3)).astype(np.float32), (size, size))
        img[size // 3 :, size // 2 :] *= 0.4
        names.append(f"img{seed}_{i}.png")
        cv2.imwrite(str(folder / names[-1]), (img * 255).round().astype(np.uint8))
    return names


@pytest.fixture
def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A random-init 64/16 x4 source (BasicSR .pth, key `params`), its 32/32 transfer, and a photo folder with
    train/val meta_info lists. Runs in tmp_path with an empty weights folder and downloads off."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(tmp_path / "weights_dir"))
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    torch.manual_seed(0)
    src = build_arch("srvggnetcompact", num_feat=64, num_conv=16, upscale=4)
    torch.save({"params": src.state_dict()}, tmp_path / "compact64_x4.pth")
    dst = tmp_path / "compact32_x4.safetensors"
    assert main(["transfer", "-i", str(tmp_path / "compact64_x4.pth"), "-o", str(dst), "--samples"]) == 0
    photos = tmp_path / "photos"
    (tmp_path / "train.txt").write_text("\n".join(_images(photos, 3, 96, 1)))
    (tmp_path / "val.txt").write_text("\n".join(_images(photos, 1, 96, 2)))
    return {"root": tmp_path, "src": tmp_path / "compact64_x4.pth", "dst": dst, "photos": photos}


def _data_forces(f: dict[str, Path]) -> list[str]:
    r = f["root"]
    return [
        f"datasets.train.dataroot_gt={f['photos']}", f"datasets.train.meta_info={r / 'train.txt'}",
        f"datasets.val.dataroot_gt={f['photos']}", f"datasets.val.meta_info={r / 'val.txt'}",
    ]  # fmt: skip


def test_config_check_reports_missing_pretrained_and_vgg(flow: dict[str, Path], capsys) -> None:
    # as shipped: the transferred file is not at weights/compact_x4_32f32c.safetensors and no VGG19 file is around
    assert main(["train", "-opt", str(CFG), "--check", "--force", *_data_forces(flow)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: {CFG}:"
    assert err[1] == (
        "  path.pretrain_network_g: file weights/compact_x4_32f32c.safetensors does not exist "
        "(start from random weights with --force path.pretrain_network_g=null)"
    )
    assert err[2].startswith(
        "  train.perceptual_opt: weights 'vgg19' not found: expected the file vgg19-dcbb9e9d.pth in "
        f"{flow['root'] / 'weights_dir'} "
    )
    assert err[2].endswith("Or turn the term off with --force train.perceptual_opt=null.")
    assert len(err) == 3
    # with the transferred file and the perceptual term off, the GAN recipe (UNet discriminator) checks fine
    force = [*_data_forces(flow), f"path.pretrain_network_g={flow['dst']}", "train.perceptual_opt=null"]
    assert main(["train", "-opt", str(CFG), "--check", "--force", *force]) == 0
    assert capsys.readouterr().out.strip() == f"{CFG}: OK (RealESRGANModel, x4, SRVGGNetCompact)"
    # --allow-download lets the run fetch registry weights (VGG16), but VGG19 is a local file only: still a problem
    force = [*_data_forces(flow), f"path.pretrain_network_g={flow['dst']}"]
    assert main(["train", "-opt", str(CFG), "--check", "--allow-download", "--force", *force]) == 2
    assert "not on the package registry" in capsys.readouterr().err
    force += ["train.perceptual_opt.vgg_type=vgg16", "train.perceptual_opt.layer_weights=null"]
    assert main(["train", "-opt", str(CFG), "--check", "--allow-download", "--force", *force]) == 0


def test_transfer_finetune_eval_flow(flow: dict[str, Path]) -> None:
    transferred, _ = load_state_dict(flow["dst"])
    assert sum(t.numel() for t in transferred.values()) == 311_760  # the ~0.30M-parameter 32/32 x4 target
    exp = flow["root"] / "exp"
    small = [
        "gt_size=64", "datasets.train.gt_size=64", "datasets.train.batch_size_per_gpu=2", "queue_size=4",
        "datasets.train.num_worker_per_gpu=0", "train.total_iter=2", "val.val_freq=2", "logger.print_freq=1",
        "logger.save_checkpoint_freq=2", "logger.use_tb_logger=false", f"path.experiments_root={exp}",
    ]  # fmt: skip
    force = [*_data_forces(flow), f"path.pretrain_network_g={flow['dst']}", *FIDELITY, *small]
    assert main(["train", "-opt", str(CFG), "--force", *force]) == 0
    tuned, meta = load_state_dict(exp / "models" / "net_g_2.safetensors")
    assert meta["arch"] == "srvggnetcompact"
    assert meta["arch_kwargs"]["num_feat"] == 32 and meta["arch_kwargs"]["num_conv"] == 32
    assert meta["arch_kwargs"]["upscale"] == 4
    # two Adam steps at lr 1e-4 from the transferred weights: every tensor moved a little, none far
    moved = max((tuned[k] - v).abs().max().item() for k, v in transferred.items())
    assert 0 < moved < 1e-3
    bench = flow["root"] / "bench" / "Tiny"
    _images(bench, 2, 48, 3)
    out = flow["root"] / "eval"
    models = [flow["src"], flow["dst"], exp / "models" / "net_g_ema_2.safetensors"]
    args = ["eval", "--benchmark", str(bench), "--scale", "4", "-o", str(out), "--no-crops"]
    assert main([*args, *(a for m in models for a in ("--model", str(m)))]) == 0
    with (out / "benchmark.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["bicubic", "compact64_x4", "compact32_x4", "net_g_ema_2"]
    assert all(r["set"] == "Tiny" and r["n"] == "2" for r in rows)
    assert all(math.isfinite(float(r["psnr_y"])) and 0 < float(r["ssim_y"]) <= 1 for r in rows)
