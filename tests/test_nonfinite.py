"""Non-finite safety: a NaN/inf forward pass leaves weights, buffers, optimizer and EMA untouched; no checkpoint,
image or export artifact is ever written from non-finite numbers; loading refuses non-finite weights.

All inputs are generated here: random textures, a float32 TIFF with one NaN pixel, a diverging learning rate, and
a model whose (finite) weights overflow to inf/NaN on anything but a black image."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import imread, narrow
from paragonsr.archs.compact import SRVGGNetCompact
from paragonsr.checkpoint import CheckpointError, load_model, load_state_dict, save_model
from paragonsr.cli import main
from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import NonFiniteError, SRModel
from paragonsr.train.state import find_latest_state
from paragonsr.train.trainer import Trainer


def _pairs(root: Path, n: int = 4, nan_lq: int | None = None) -> dict[str, str]:
    """n textured 32x32 GT / 16x16 LQ pairs; LQ ``nan_lq`` is a float32 TIFF with one NaN pixel."""
    rng = np.random.default_rng(0)
    for sub in ("gt", "lq"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        gt = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), (0, 0), 1.0)
        lq = cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "gt" / f"{i}.png"), gt)
        if i == nan_lq:
            lq = lq.astype(np.float32) / 255.0
            lq[5, 7, 1] = np.nan
            assert cv2.imwrite(str(root / "lq" / f"{i}.tif"), lq)
        else:
            cv2.imwrite(str(root / "lq" / f"{i}.png"), lq)
    return {"type": "PairedImageDataset", "dataroot_gt": str(root / "gt"), "dataroot_lq": str(root / "lq")}


def _options(root: Path, paired: dict[str, str], **train: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "scale": 2,
        "manual_seed": 1,
        "datasets": {"train": {**paired, "gt_size": 24, "batch_size_per_gpu": 2, "use_shuffle": False}},
        # a small ParagonSR2: tracked-kernel buffers, updated by the forward pass
        "network_g": {"type": "paragonsr2_nano", "num_feat": 8, "num_groups": 1, "num_blocks": 2, "hr_blocks": 1},
        "path": {"experiments_root": str(root / "exp")},
        "train": {"total_iter": 4, "optim_g": {"type": "Adam", "lr": 2e-3}, "pixel_opt": {"type": "L1Loss"},
                  "ema_decay": 0.9, **train},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }  # fmt: skip


def _finite_files(models: Path) -> list[str]:
    names = sorted(p.name for p in models.glob("*.safetensors"))
    for name in names:
        load_state_dict(models / name)  # raises on any NaN/inf tensor
    return names


def _snapshot(model: SRModel) -> dict[str, Any]:
    assert model.ema is not None
    return copy.deepcopy(
        {
            "net": model.net_g.state_dict(),
            "ema": model.ema.state_dict(),
            "opt": model.optimizer_g.state_dict()["state"],
            "lq": len(model.recent_lq),
        }
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_nan_lq_pixel_leaves_weights_buffers_optimizer_and_ema_untouched(tmp_path: Path) -> None:
    torch.manual_seed(0)
    opt = parse_options(_options(tmp_path, _pairs(tmp_path)))
    model = SRModel(opt, torch.device("cpu"))
    gt = torch.rand(2, 3, 24, 24)
    batch = {"gt": gt, "lq": torch.nn.functional.avg_pool2d(gt, 2)}
    model.optimize_parameters([batch], 1)  # a real step first: optimizer moments and kernels exist
    before = _snapshot(model)
    bad = {"gt": gt, "lq": batch["lq"].clone()}
    bad["lq"][1, 2, 3, 4] = float("nan")
    model.optimize_parameters([bad], 2)
    after = _snapshot(model)
    assert model.skipped_steps == 1
    for part in ("net", "ema", "opt", "lq"):
        assert _same(before[part], after[part]), part
    kernels = [k for k in before["net"] if k.endswith("tracked_kernel")]
    assert kernels and all(torch.isfinite(after["net"][k]).all() for k in kernels)
    # a finite step afterwards moves the kernels, the weights and the EMA again
    model.optimize_parameters([batch], 3)
    again = _snapshot(model)
    assert model.skipped_steps == 1 and again["lq"] == before["lq"] + 1
    assert not torch.equal(again["net"][kernels[0]], before["net"][kernels[0]])
    assert not _same(again["ema"], before["ema"])


def test_training_past_a_nan_pixel_keeps_every_checkpoint_finite(tmp_path: Path) -> None:
    # batches of 2 without shuffling: the NaN LQ (image 3) poisons the second batch of every epoch
    data = _options(tmp_path, _pairs(tmp_path, nan_lq=3))
    (tmp_path / "o.yml").write_text(yaml.safe_dump(data))
    assert main(["train", "-opt", str(tmp_path / "o.yml")]) == 0
    exp = tmp_path / "exp"
    log = next(exp.glob("train_t_*.log")).read_text()
    assert "iter 2: non-finite generator loss/gradients, step skipped" in log
    assert "end of training: 4 iterations, 2 non-finite steps skipped" in log
    assert _finite_files(exp / "models") == [
        "net_g_2.safetensors", "net_g_4.safetensors", "net_g_ema_2.safetensors", "net_g_ema_4.safetensors",
        "net_g_ema_latest.safetensors", "net_g_latest.safetensors",
    ]  # fmt: skip


def test_diverging_run_stops_non_zero_and_writes_no_nan_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the reported command: a learning rate that blows the weights up on the first step
    data = _options(tmp_path, _pairs(tmp_path))
    (tmp_path / "o.yml").write_text(yaml.safe_dump(data))
    assert main(["train", "-opt", str(tmp_path / "o.yml"), "--force", "train.optim_g.lr=1e6"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stopping at iter 2: net_g_ema holds NaN values"), err
    assert err[0].endswith("checkpoint 2 not written. The last good checkpoint (none in this experiment) "
                           "stays the --auto_resume point")  # fmt: skip
    assert not list((tmp_path / "exp" / "models").iterdir())


def test_last_good_checkpoint_stays_the_resume_point(tmp_path: Path) -> None:
    data = _options(tmp_path, _pairs(tmp_path), total_iter=2)
    Trainer(parse_options(copy.deepcopy(data))).train()
    exp = tmp_path / "exp"
    good = exp / "training_states" / "2.state"
    data["train"]["total_iter"] = 6
    trainer = Trainer(parse_options(copy.deepcopy(data)), auto_resume=True)
    trainer.model.sched_g.base_lrs = [1e6]  # diverge from here on
    trainer.model.sched_g._apply()
    with pytest.raises(
        NonFiniteError, match=rf"checkpoint 4 not written\. The last good checkpoint \({good}\)"
    ):
        trainer.train()
    assert find_latest_state(exp) == good
    assert _finite_files(exp / "models") == [
        "net_g_2.safetensors", "net_g_ema_2.safetensors", "net_g_ema_latest.safetensors", "net_g_latest.safetensors"
    ]  # fmt: skip
    # it resumes (its networks load) and, at the normal learning rate, finishes
    res = Trainer(parse_options(copy.deepcopy(data)), auto_resume=True).train()
    assert res.iters == 6 and find_latest_state(exp) == exp / "training_states" / "6.state"
    _finite_files(exp / "models")


def test_resume_refuses_a_nan_checkpoint_naming_file_and_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file, save_file

    data = _options(tmp_path, _pairs(tmp_path), total_iter=2)
    (tmp_path / "o.yml").write_text(yaml.safe_dump(data))
    assert main(["train", "-opt", str(tmp_path / "o.yml")]) == 0
    path = tmp_path / "exp" / "models" / "net_g_2.safetensors"
    sd = load_file(str(path))
    key = next(k for k in sd if k.endswith("tracked_kernel"))
    sd[key][0, 0, 1, 1] = float("inf")
    save_file(sd, str(path))  # as an older version (or another tool) could have written it
    capsys.readouterr()
    assert (
        main(["train", "-opt", str(tmp_path / "o.yml"), "--auto_resume", "--force", "train.total_iter=4"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {path}: tensor '{key}' holds +inf values; refusing to load non-finite weights "
                   "(a diverged training run?)"]  # fmt: skip


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
def test_save_and_load_refuse_non_finite_weights(tmp_path: Path, ext: str) -> None:
    from paragonsr.archs import build_arch

    net = narrow(SRVGGNetCompact, build_arch("srvggnetcompact", num_feat=4, num_conv=1, upscale=2))
    good = save_model(tmp_path / f"good{ext}", net)
    with torch.no_grad():
        narrow(torch.nn.Conv2d, net.body[2]).weight[0, 0, 1, 1] = float("nan")
    with pytest.raises(CheckpointError, match=r"tensor 'body\.2\.weight' holds NaN values; refusing to save"):
        save_model(tmp_path / f"bad{ext}", net)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # nothing written, no temp file left
    # a file written by other means is refused on load, by every loader
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    bad = tmp_path / f"other{ext}"
    if ext == ".pth":
        torch.save({"params": sd}, bad)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(bad))
    msg = rf"{bad.name}: tensor 'body\.2\.weight' holds NaN values; refusing to load"
    with pytest.raises(CheckpointError, match=msg):
        load_state_dict(bad)
    with pytest.raises(CheckpointError, match=msg):
        load_model(bad, arch="srvggnetcompact", num_feat=4, num_conv=1, upscale=2)
    load_model(good)  # the finite one still loads


def _overflowing_model(path: Path) -> Path:
    """A Compact model with finite weights whose output is finite (the nearest-upscaled input) on dark images and
    +inf wherever a 3x3 neighbourhood averages above 0.5: a ReLU gate, then layers of 1e30 weights."""
    from paragonsr.archs import build_arch

    net = narrow(SRVGGNetCompact, build_arch("srvggnetcompact", num_feat=4, num_conv=2, upscale=2))
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for m in net.body:
            if isinstance(m, torch.nn.PReLU):
                m.weight.zero_()  # ReLU
        biases = [narrow(torch.Tensor, conv.bias) for conv in convs]  # Compact's convs have biases
        convs[0].weight.fill_(1.0)
        biases[0].fill_(-13.5)  # 27 inputs: positive only where their mean exceeds 0.5
        for conv, bias in zip(convs[1:], biases[1:]):
            conv.weight.fill_(1e30)
            bias.zero_()
    return save_model(path, net)


def test_upscale_writes_no_image_from_non_finite_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _overflowing_model(tmp_path / "huge.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    dark = np.random.default_rng(1).integers(0, 100, (12, 10, 3), np.uint8)
    cv2.imwrite(str(src / "a_dark.png"), dark)
    cv2.imwrite(str(src / "b_bright.png"), dark + 150)
    out = tmp_path / "out"
    rc = main(["upscale", str(src), "-o", str(out), "-m", str(model), "-t", "0", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith(
        f"error: {src / 'b_bright.png'}: the model output holds +inf values"
    ), err
    assert "; no image written" in err[0]
    # the batch went on: the dark image (finite output: its nearest upscale) was written, nothing else
    assert sorted(p.name for p in out.iterdir()) == ["a_dark.png"]
    assert np.array_equal(imread(str(out / "a_dark.png")), dark.repeat(2, 0).repeat(2, 1))


def test_export_writes_no_artifact_from_non_finite_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _overflowing_model(tmp_path / "huge.safetensors")
    out = tmp_path / "release"
    assert main(["export", str(model), "-o", str(out), "--latency-size", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: export failed: huge: the model's output holds "), err
    assert "nothing exported" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_eval_scores_no_image_from_non_finite_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _overflowing_model(tmp_path / "huge.safetensors")
    gt = tmp_path / "gt"
    gt.mkdir()
    dark = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 100, (64, 64, 3), np.uint8), (0, 0), 1.0)
    cv2.imwrite(str(gt / "a_dark.png"), dark)
    cv2.imwrite(str(gt / "b_bright.png"), dark + 150)
    out = tmp_path / "report"
    assert (
        main(["eval", "--gt", str(gt), "--scale", "2", "-o", str(out), "--model", str(model), "--no-crops"])
        == 1
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [
        f"error: {gt / 'b_bright.png'}: the output of {model} holds +inf values; image not scored",
        "error: 1 image(s) could not be scored (listed in the report)",
    ]
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[:2] for r in rows) == [["a_dark.png", "bicubic"], ["a_dark.png", "huge"]]
    assert (
        f"- {gt / 'b_bright.png'}: the output of {model} holds +inf values" in (out / "report.md").read_text()
    )


def test_validation_writes_and_tracks_nothing_from_non_finite_output(tmp_path: Path) -> None:
    from paragonsr.train.options import ValOpt
    from paragonsr.train.validation import BestTracker, validate

    class NanWhenBright(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            return y * float("nan") if x.mean() > 0.5 else y

    lqs = [torch.full((1, 3, 8, 8), 0.25), torch.full((1, 3, 8, 8), 0.75)]
    loader = [
        {"lq": lq, "gt": torch.full((1, 3, 16, 16), 0.3), "gt_path": [f"img{i}.png"]}
        for i, lq in enumerate(lqs)
    ]
    val = ValOpt(val_freq=1, save_img=True, metrics={"psnr": {"type": "calculate_psnr", "crop_border": 0}})
    tracker = BestTracker()
    res = validate(NanWhenBright(), loader, "v", val, 2, 5, torch.device("cpu"), tmp_path, tracker)
    assert np.isnan(res["psnr"]) and tracker.best == {}
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == ["img0/img0_5.png"]
    # all finite: scored and tracked as before (0.25 vs 0.3 in 8 bit: 64 vs 76 -> 20*log10(255/12))
    res = validate(NanWhenBright(), loader[:1], "v", val, 2, 6, torch.device("cpu"), tmp_path, tracker)
    assert res["psnr"] == pytest.approx(20 * np.log10(255 / 12)) and tracker.best["v/psnr"]["iter"] == 6


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
