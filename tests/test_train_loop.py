"""End-to-end training on tiny crops of the shared photos: SR + GAN models, EMA, validation, resume
equivalence, pretrain from params_ema, the non-finite guard, schedules and the CLI."""

from __future__ import annotations

import copy
import math
from collections.abc import Sized
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import imread, load_photo_crop
from paragonsr.checkpoint import load_state_dict
from paragonsr.tiling import plan_axis
from paragonsr.train.optim import lr_at
from paragonsr.train.option_io import parse_options
from paragonsr.train.options import CosineAnnealingLROpt, MultiStepLROpt, ValOpt
from paragonsr.train.sr_model import NonFiniteError
from paragonsr.train.trainer import Trainer
from paragonsr.train.validation import val_tiler


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, photo_paths: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    for sub in ("gt", "lq"):
        (root / sub).mkdir()
    for p in photo_paths[:6]:
        h, w = imread(str(p)).shape[:2]
        gt = (load_photo_crop(p, 48, h // 2 - 24, w // 2 - 24) * 255).round().astype(np.uint8)
        lq = cv2.resize(gt, (24, 24), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "gt" / f"{p.stem}.png"), gt[:, :, ::-1])
        cv2.imwrite(str(root / "lq" / f"{p.stem}.png"), lq[:, :, ::-1])
    return root


def options(data: Path, out: Path, **train: Any) -> dict[str, Any]:
    paired = {"type": "PairedImageDataset", "dataroot_gt": str(data / "gt"), "dataroot_lq": str(data / "lq")}
    return {
        "name": "t",
        "scale": 2,
        "manual_seed": 1,
        "datasets": {
            "train": {**paired, "gt_size": 32, "batch_size_per_gpu": 2},
            "val": {**paired, "name": "v"},
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 2},
        "path": {"experiments_root": str(out)},
        "train": {
            "total_iter": 6,
            "optim_g": {"type": "Adam", "lr": 2e-3},
            "pixel_opt": {"type": "L1Loss"},
            "ema_decay": 0.9,
            **train,
        },
        "val": {
            "val_freq": 3,
            "save_img": True,
            "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2}},
        },
        "logger": {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": False},
    }


def run(data: dict[str, Any], auto_resume: bool = False) -> Any:
    return Trainer(parse_options(copy.deepcopy(data)), auto_resume=auto_resume).train()


def test_sr_training_layout_ema_and_validation(data_root: Path, tmp_path: Path) -> None:
    opt = options(data_root, tmp_path / "exp")
    opt["logger"]["use_tb_logger"] = True
    res = run(opt)
    root = tmp_path / "exp"
    assert res.iters == 6 and len(res.losses) == 6 and all(math.isfinite(lo["l_pixel"]) for lo in res.losses)
    for sub in ("models", "training_states", "visualization", "tb_logger"):
        assert (root / sub).is_dir(), sub
    assert list(root.glob("train_t_*.log")) and (root / "options.yml").is_file()
    assert imread(str(root / "training_curves.png")) is not None
    assert sorted(p.name for p in (root / "training_states").iterdir()) == ["3.state", "6.state"]
    g, meta = load_state_dict(root / "models" / "net_g_6.safetensors")
    ema, meta_e = load_state_dict(root / "models" / "net_g_ema_6.safetensors")
    assert meta["arch"] == "srvggnetcompact" and meta_e["extra"]["param_key"] == "params_ema"
    assert any(not torch.equal(g[k], ema[k]) for k in g)  # EMA lags the live weights
    assert (root / "models" / "net_g_ema_latest.safetensors").is_file()
    # the logged PSNR is the mean of BasicSR PSNRs of the saved images (independent numpy recomputation)
    psnrs = []
    for gt_path in sorted((data_root / "gt").iterdir()):
        sr = imread(str(root / "visualization" / gt_path.stem / f"{gt_path.stem}_6.png")).astype(np.float64)
        gt = imread(str(gt_path)).astype(np.float64)
        mse = np.mean((sr[2:-2, 2:-2] - gt[2:-2, 2:-2]) ** 2)
        psnrs.append(10 * np.log10(255.0**2 / mse))
    assert res.metrics["v"]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(root / "tb_logger"))
    ea.Reload()
    assert {"losses/l_pixel", "train/lr", "metrics/v/psnr"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("metrics/v/psnr")] == [3, 6]
    assert any(t.startswith("val_v/") for t in ea.Tags()["images"])


def test_killed_and_resumed_run_reproduces_uninterrupted(
    data_root: Path, tmp_path: Path, monkeypatch
) -> None:
    # ParagonSR2 nano (tracked-kernel buffers), EMA, warm-up + MultiStepLR, accumulation and clipping
    extra = {"accum_iter": 2, "grad_clip": 0.5, "warmup_iter": 2,
             "scheduler": {"type": "MultiStepLR", "milestones": [4], "gamma": 0.5}}  # fmt: skip
    base = options(data_root, tmp_path / "a", **extra)
    base["network_g"] = {"type": "paragonsr2_nano"}
    base["datasets"]["train"]["gt_size"] = 24
    full = run(base)

    resumed = copy.deepcopy(base)
    resumed["path"]["experiments_root"] = str(tmp_path / "b")
    real_save = Trainer.save

    def save_then_die(self: Trainer, it: int) -> None:
        real_save(self, it)
        if it == 3:
            raise KeyboardInterrupt  # killed right after the iteration-3 checkpoint

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(resumed)
    monkeypatch.setattr(Trainer, "save", real_save)
    second = run(resumed, auto_resume=True)
    assert second.iters == 6 and len(second.losses) == 3
    for a, b in zip(full.losses[3:], second.losses):
        assert a["l_pixel"] == pytest.approx(b["l_pixel"], rel=1e-5, abs=1e-7)
    for name in ("net_g_6", "net_g_ema_6"):
        wa, _ = load_state_dict(tmp_path / "a" / "models" / f"{name}.safetensors")
        wb, _ = load_state_dict(tmp_path / "b" / "models" / f"{name}.safetensors")
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=f"{name}.{k}")
    st = torch.load(tmp_path / "b" / "training_states" / "6.state", weights_only=True)
    st_full = torch.load(tmp_path / "a" / "training_states" / "6.state", weights_only=True)
    assert st["best"] == st_full["best"] and set(st["best"]) == {
        "v/psnr"
    }  # best tracking survived the restart
    assert st["model"]["schedulers"]["g"]["last_iter"] == 6


def test_gan_from_params_ema_with_d_init_iters(data_root: Path, tmp_path: Path) -> None:
    fid = options(data_root, tmp_path / "fid", total_iter=2)
    fid["val"] = None
    run(fid)
    ema, _ = load_state_dict(tmp_path / "fid" / "models" / "net_g_ema_2.safetensors")
    gan = options(data_root, tmp_path / "gan", total_iter=2, net_d_init_iters=1, use_amp=True,
                  use_channels_last=True, optim_d={"type": "AdamW", "lr": 1e-4},
                  gan_opt={"type": "R3GANLoss", "loss_weight": 0.1, "r1_gamma": 1.0})  # fmt: skip
    gan.update(model_type="RealESRGANModel", network_d={"type": "MUNet", "num_feat": 8}, val=None)
    gan["path"].update(pretrain_network_g=str(tmp_path / "fid" / "models" / "net_g_2.safetensors"),
                       param_key_g="params_ema")  # fmt: skip
    trainer = Trainer(parse_options(gan))
    for k, v in trainer.model.net_g.state_dict().items():
        assert torch.equal(v, ema[k]), k  # params_ema followed to the sibling EMA file
    d0 = copy.deepcopy(trainer.model.net_d.state_dict())
    res = trainer.train()
    assert "l_g_gan" not in res.losses[0] and "l_g_gan" in res.losses[1]  # iter 1: D only (net_d_init_iters)
    assert {"l_d_adv", "r1", "r2"} <= set(res.losses[0]) and all(
        math.isfinite(v) for v in res.losses[1].values()
    )
    assert any(not torch.equal(v, trainer.model.net_d.state_dict()[k]) for k, v in d0.items())
    assert (tmp_path / "gan" / "models" / "net_d_2.safetensors").is_file()


def test_nonfinite_guard_skips_then_stops(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    opt = options(data_root, tmp_path / "nan", max_nonfinite_steps=3, total_iter=10)
    trainer = Trainer(parse_options(opt))
    w0 = copy.deepcopy(trainer.model.net_g.state_dict())
    name, loss, target = trainer.model.losses[0]
    trainer.model.losses[0] = (name, lambda sr, gt, **kw: loss(sr, gt) * float("nan"), target)
    with pytest.raises(NonFiniteError, match="3 consecutive non-finite steps at iter 3"):
        trainer.train()
    assert trainer.model.skipped_steps == 3
    for k, v in trainer.model.net_g.state_dict().items():
        assert torch.equal(v, w0[k]), k  # no poisoned update reached the weights


def test_lr_schedules() -> None:
    ms = MultiStepLROpt(milestones=[10, 20], gamma=0.5)
    assert [lr_at(i, 1.0, ms, 30, 0) for i in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_at(0, 1.0, ms, 30, 4) == 0.25 and lr_at(3, 1.0, ms, 30, 4) == 1.0
    cos = CosineAnnealingLROpt(eta_min=0.0)
    assert lr_at(0, 2.0, cos, 100, 0) == 2.0 and lr_at(50, 2.0, cos, 100, 0) == pytest.approx(1.0)
    assert lr_at(100, 2.0, cos, 100, 0) == pytest.approx(0.0, abs=1e-12)


def test_tiled_validation_matches_whole_image() -> None:
    from paragonsr.archs import build_arch

    torch.manual_seed(0)
    net = build_arch("srvggnetcompact", num_feat=4, num_conv=2, upscale=2).eval()
    x = torch.rand(1, 3, 40, 52)
    whole = net(x)
    tiler = val_tiler(ValOpt(tile_size=16, tile_pad=4))  # receptive radius 4 px: context covers it exactly
    tiled = tiler(net, x, 2)
    assert len(plan_axis(52, 16 + 8, 8)[0]) > 1  # it did tile
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_cli_debug_and_bad_option(data_root: Path, tmp_path: Path, capsys) -> None:
    import yaml

    from paragonsr.cli import main

    cfg = tmp_path / "o.yml"
    opt = options(data_root, tmp_path / "dbg", total_iter=1000)
    opt["path"] = {"root": str(tmp_path)}
    cfg.write_text(yaml.safe_dump(opt))
    assert main(["train", "-opt", str(cfg), "--debug", "--force", "train.total_iter=2"]) == 0
    assert (tmp_path / "experiments" / "debug_t" / "models" / "net_g_2.safetensors").is_file()
    assert main(["train", "-opt", str(cfg), "--force", "train.optim_g.lrr=1"]) == 2
    assert "train.optim_g.lrr: unknown key; did you mean 'lr'?" in capsys.readouterr().err


def test_workflows_template_otf_with_accumulation(data_root: Path, tmp_path: Path) -> None:
    opt = options(data_root, tmp_path / "wf", total_iter=2, accum_iter=2)
    opt["datasets"]["train"] = {
        "type": "OTFDataset", "degradation": "workflows", "lq_size": 12, "batch_size_per_gpu": 2,
        "dataroot_gt": [str(data_root / "gt"), str(data_root / "lq")],  # two roots, concatenated
        "p_clean": 0.5, "predefined_sequences": {"phone_to_social": {"probability": 0.5}},
    }  # fmt: skip
    opt["val"] = None
    trainer = Trainer(parse_options(opt))
    dataset = trainer.loader.dataset
    assert isinstance(dataset, Sized) and len(dataset) == 12
    res = trainer.train()
    assert res.iters == 2 and (trainer.pos.epoch, trainer.pos.batch) == (0, 4)  # 2 iters x 2 micro-batches


def test_auto_resume_skips_incomplete_state(data_root: Path, tmp_path: Path) -> None:
    from paragonsr.train.state import find_latest_state

    run(options(data_root, tmp_path / "inc", total_iter=6))
    (tmp_path / "inc" / "models" / "net_g_ema_6.safetensors").unlink()  # a checkpoint cut short
    assert find_latest_state(tmp_path / "inc") == tmp_path / "inc" / "training_states" / "3.state"
    assert find_latest_state(tmp_path / "nothing") is None


def test_fp16_on_cpu_falls_back_to_bf16(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PARAGONSR_CPU_BF16", "1"
    )  # as on a CPU with native bf16 (tests/test_precision.py: without)
    opt = options(data_root, tmp_path / "amp", use_amp=True, amp_bf16=False)
    trainer = Trainer(parse_options(opt))
    assert trainer.model.amp_dtype == torch.bfloat16 and not trainer.model.scaler.is_enabled()
    assert trainer.model.precision.summary().startswith("precision: asked fp16 autocast, running bf16: fp16 ")


def test_wandb_is_optional_and_lazy() -> None:
    import importlib.util
    import sys

    from paragonsr.train.logger import init_wandb

    assert "wandb" not in sys.modules  # never imported unless logger.wandb.project is set
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(RuntimeError, match="pip install wandb"):
            init_wandb("proj", "name", {}, None, None)


def test_model_ema_maths_and_buffers() -> None:
    from paragonsr.train.ema import ModelEMA

    net = torch.nn.BatchNorm2d(2)
    net.weight.data.fill_(1.0)
    ema = ModelEMA(net, decay=0.9)
    net.weight.data.fill_(3.0)
    assert net.running_mean is not None
    net.running_mean.fill_(5.0)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, torch.full((2,), 1.2))  # 0.9 * 1 + 0.1 * 3
    torch.testing.assert_close(ema.module.running_mean, torch.full((2,), 5.0))  # buffers copied
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(net, decay=1.0)


def test_launcher_needs_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.train.distributed import init_dist

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node=N"):
        init_dist("pytorch")
    with pytest.raises(ValueError, match="unsupported launcher 'slurm'"):
        init_dist("slurm")


def test_net_d_iters_updates_generator_every_other_iteration(data_root: Path, tmp_path: Path) -> None:
    gan = options(data_root, tmp_path / "dit", total_iter=4, net_d_iters=2,
                  gan_opt={"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0.1})  # fmt: skip
    gan.update(model_type="GANModel", network_d={"type": "UNetDiscriminatorSN", "num_feat": 8}, val=None)
    res = Trainer(parse_options(gan)).train()
    assert ["l_g_gan" in lo for lo in res.losses] == [False, True, False, True]
    assert all("l_d_total" in lo for lo in res.losses)


def test_plot_failure_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import sys

    from paragonsr.train.logger import LOGGER_NAME, plot_curves

    history = [{"iter": 1.0, "l_pixel": 0.1}, {"iter": 2.0, "l_pixel": 0.05}]
    val = [{"iter": 2.0, "photos/psnr": 30.0}]
    assert plot_curves(history, val, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ModuleNotFoundError
    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "propagate", True)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        assert not plot_curves(history, val, tmp_path / "again.png")
    assert not (tmp_path / "again.png").exists()
    assert "training curves not plotted" in caplog.text and "ModuleNotFoundError" in caplog.text


def test_failed_plot_write_closes_its_figure(tmp_path: Path) -> None:
    """A plot that fails while writing (here: its folder is a file) leaves no open pyplot figure behind: one
    leaked figure per validation would grow the process for the whole run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paragonsr.train.logger import plot_curves

    plt.close("all")
    (tmp_path / "file").write_text("")
    history = [{"iter": 1.0, "l_pixel": 0.1}]
    assert not plot_curves(history, [{"iter": 1.0, "val/psnr": 30.0}], tmp_path / "file" / "curves.png")
    assert plt.get_fignums() == []
