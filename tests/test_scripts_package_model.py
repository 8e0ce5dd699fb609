"""scripts/package_default_model.py: the manifest's training record of a run (options, validation of the
packaged checkpoint's own iteration)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, load_script


def _fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "experiments" / "x"
    (run / "training_states").mkdir(parents=True)
    opt = {
        "name": "x",
        "scale": 2,
        "path": {"root": "/somewhere/else", "pretrain_network_g": "/abs/start.pt"},
    }
    (run / "options.yml").write_text(yaml.safe_dump(opt), encoding="utf-8")
    history = [
        {"iter": 500, "val/psnr": 40.0},
        {"iter": 500, "val_x050/psnr": 37.0},
        {"iter": 1000, "val/psnr": 40.5},
        {"iter": 1000, "val_x050/psnr": 37.4},
    ]
    torch.save({"iter": 1000, "val_history": history}, run / "training_states" / "1000.state")
    torch.save({"iter": 500, "val_history": history[:2]}, run / "training_states" / "500.state")
    return run


def test_record_holds_the_validation_of_the_packaged_iteration(tmp_path: Path) -> None:
    mod = load_script(REPO / "scripts" / "package_default_model.py")
    run = _fake_run(tmp_path)
    assert mod.checkpoint_iter(Path("net_g_ema_500.safetensors")) == 500
    assert mod.checkpoint_iter(Path("net_g_ema_latest.safetensors")) is None

    rec = mod.run_record(run, "classic", Path("net_g_ema_500.safetensors"))
    assert rec["final"] == {"iter": 500, "val": {"iter": 500, "val/psnr": 40.0, "val_x050/psnr": 37.0}}
    assert rec["options"]["path"] == {"pretrain_network_g": "/abs/start.pt"}  # where the run sat is dropped
    assert "config" not in rec

    latest = mod.run_record(run, "classic", Path("net_g_ema_latest.safetensors"))
    assert latest["final"]["iter"] == 1000 and latest["final"]["val"]["val_x050/psnr"] == 37.4


def test_record_takes_the_options_from_the_committed_config(tmp_path: Path) -> None:
    mod = load_script(REPO / "scripts" / "package_default_model.py")
    run = _fake_run(tmp_path)
    config = REPO / "configs" / "2x_ParagonSR2_Nano_classic_multiscale.yml"
    rec = mod.run_record(run, "classic", Path("net_g_ema_1000.safetensors"), config)
    committed = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert rec["config"] == config.as_posix()
    assert rec["options"]["name"] == committed["name"]
    assert rec["options"]["path"]["pretrain_network_g"] == committed["path"]["pretrain_network_g"]
    assert rec["options"]["datasets"]["train"]["dataroot_gt"] == committed["datasets"]["train"]["dataroot_gt"]
    assert rec["final"]["val"]["val/psnr"] == 40.5


def test_bad_record_arguments_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong --config count or a run folder without options fails before any packaged file is written."""
    mod = load_script(REPO / "scripts" / "package_default_model.py")
    ckpt = REPO / "src/paragonsr/assets/models/classic_unfused.safetensors"
    out = tmp_path / "out"
    run = _fake_run(tmp_path)
    argv = ["pkg", str(ckpt), "--name", "classic", "--out", str(out), "--run", str(run)]
    monkeypatch.setattr(sys, "argv", [*argv, "--config", "a.yml", "--config", "b.yml"])
    assert mod.main() == 2
    (run / "options.yml").unlink()
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(FileNotFoundError, match=r"options\.yml"):
        mod.main()
    assert not out.exists()
