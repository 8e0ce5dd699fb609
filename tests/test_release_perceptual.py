"""Releasing the perceptual nano: ``--model perceptual`` where packaged names are accepted, the GAN training record
and release gates of ``scripts/package_default_model.py``, and the LPIPS-bounded INT8 gate that ``paragonsr export``
turns on by itself for a GAN model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from conftest import REAL_WEIGHTS_DIR, REPO, attr_dict, load_script
from paragonsr.cli import main as cli

CONFIG = REPO / "configs" / "2x_ParagonSR2_Nano_perceptual_default.yml"
DEFAULT_UNFUSED = REPO / "src/paragonsr/assets/models/default_unfused.safetensors"
ABSENT = "--model perceptual: this install has no packaged perceptual model"


@pytest.fixture
def no_perceptual(monkeypatch: pytest.MonkeyPatch) -> None:
    """This install without the packaged perceptual files (the lead packages them; a branch may not hold them)."""
    import paragonsr.infer as infer

    real = infer.default_model_path

    def fake(name: str = "default.safetensors") -> Path | None:
        return None if name.startswith("perceptual") else real(name)

    monkeypatch.setattr(infer, "default_model_path", fake)


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["upscale", "IN", "-o", "OUT/x.png", "--model", "perceptual"], 2),
        (["eval", "--gt", "GT", "--model", "perceptual", "-o", "OUT"], 2),
        (["demo", "--model", "perceptual", "--out", "OUT"], 2),
        (["export", "perceptual", "-o", "OUT"], 1),
    ],
)
def test_absent_packaged_perceptual_is_one_line(
    argv: list[str], status: int, no_perceptual: None, tmp_path: Path, photos_dir: Path, capsys
) -> None:
    src = next(photos_dir.glob("*.jpg"))
    argv = [
        a.replace("IN", str(src)).replace("GT", str(photos_dir)).replace("OUT", str(tmp_path / "o"))
        for a in argv
    ]
    assert cli(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(ABSENT), err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.png"))


def test_perceptual_is_a_packaged_name() -> None:
    from paragonsr.infer import PACKAGED_MODELS, PERCEPTUAL_MODELS, packaged_model

    assert PACKAGED_MODELS["perceptual"] == "perceptual.safetensors" and "perceptual" in PERCEPTUAL_MODELS
    assert packaged_model("default", unfused=True).name == "default_unfused.safetensors"


# --------------------------------------------------------------------------------------- the packaging record


def _gan_run(tmp_path: Path) -> tuple[Path, Path]:
    """A finished-looking GAN run of the committed perceptual config, overridden as the lead ran it."""
    from paragonsr.train.option_io import load_options

    run = tmp_path / "experiments" / "perc"
    (run / "training_states").mkdir(parents=True)
    (run / "models").mkdir()
    opt = load_options(CONFIG).model_dump(mode="json", exclude_none=True)
    opt["train"]["total_iter"] = opt["train"]["scheduler"]["T_max"] = 2500  # given on the command line
    opt["path"]["root"] = "/somewhere/runs"
    (run / "options.yml").write_text(yaml.safe_dump(opt), encoding="utf-8")
    precision = {"precision_dtype": "bf16", "precision_hardware": "CPU AVX512 + AMX"}
    history = [{"iter": 2500, "val/psnr": 38.1, "val/lpips": 0.05}]
    state = {"iter": 2500, "val_history": history, "precision": precision}
    torch.save(state, run / "training_states" / "2500.state")
    ckpt = run / "models" / "net_g_ema_2500.safetensors"
    shutil.copyfile(DEFAULT_UNFUSED, ckpt)  # any unfused nano stands in for the trained generator
    return run, ckpt


def test_gan_run_record_summary_and_overrides(tmp_path: Path) -> None:
    mod = load_script(REPO / "scripts" / "package_default_model.py")
    run, ckpt = _gan_run(tmp_path)
    rec = mod.run_record(run, "perceptual", ckpt, CONFIG)
    s = rec["summary"]
    assert s["model_type"] == "GANModel"
    assert [(g["type"], g["weight"]) for g in s["generator_losses"]] == [
        ("L1Loss", 1.0),
        ("MSSSIMLoss", 0.2),
        ("LPIPSLoss", 1.0),
        ("FocalFrequencyLoss", 1.0),
        ("ConsistencyLoss", 0.5),
    ]
    assert s["generator_losses"][2]["kwargs"]["net"] == "vgg"
    assert s["adversarial"]["type"] == "R3GANLoss" and s["adversarial"]["weight"] == 0.02
    assert s["adversarial"]["kwargs"] == {"r1_gamma": 1.0, "lazy_interval": 16}
    assert s["discriminator"]["type"] == "MUNet" and s["discriminator"]["num_feat"] == 32
    assert s["start_model"] == "src/paragonsr/assets/models/default_unfused.safetensors"
    assert s["data"]["train"]["meta_info"] == [
        "configs/meta_info/photos_train.txt",
        "configs/meta_info/photos2_train.txt",
    ]
    assert s["data"]["val_photos2"]["meta_info"] == "configs/meta_info/photos2_val.txt"
    committed = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["train"]
    assert s["total_iter"] == 2500 != committed["total_iter"]  # as run, not as committed
    assert s["precision"]["asked"] == {"use_amp": True, "amp_bf16": True, "use_channels_last": True}
    assert s["precision"]["used"] == {"dtype": "bf16", "hardware": "CPU AVX512 + AMX"}
    assert rec["overrides"] == {"train.scheduler.T_max": 2500, "train.total_iter": 2500}  # path.root left out
    assert (
        rec["options"]["train"]["total_iter"] == committed["total_iter"]
        and "root" not in rec["options"]["path"]
    )
    assert rec["final"] == {"iter": 2500, "val": {"iter": 2500, "val/psnr": 38.1, "val/lpips": 0.05}}


def test_sr_run_summary_has_no_adversarial_part(tmp_path: Path) -> None:
    from paragonsr.deploy.packaging import training_summary
    from paragonsr.train.option_io import load_options

    opt = load_options(REPO / "configs" / "2x_ParagonSR2_Nano_default.yml").model_dump(mode="json")
    s = training_summary(opt)
    assert s["model_type"] == "SRModel" and s["adversarial"] is None and s["discriminator"] is None
    assert [g["type"] for g in s["generator_losses"]] == ["L1Loss", "MSSSIMLoss"]
    assert s["precision"]["used"] is None


def _package(mod: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["package_default_model.py", *argv])
    return int(mod.main())


def test_package_gan_run_gates_and_metadata(tmp_path: Path, photos_dir: Path, monkeypatch, capsys) -> None:
    """Packaged as `perceptual`: the record, the metadata eval and export read, every gate in the manifest; the
    tests' weights folder is empty, so the LPIPS-bounded INT8 gate cannot run and INT8 is not shipped."""
    from paragonsr.checkpoint import load_model
    from paragonsr.deploy.model_kind import perceptual_reason
    from paragonsr.evaluate import model_method, shares_net

    mod = load_script(REPO / "scripts" / "package_default_model.py")
    run, ckpt = _gan_run(tmp_path)
    out = tmp_path / "models"
    base = [str(ckpt), "--name", "perceptual", "--run", str(run), "--config", str(CONFIG), "--out", str(out)]
    assert _package(mod, monkeypatch, base) == 2  # a GAN model only through the FP16/INT8 gates
    assert "--verify-images" in capsys.readouterr().err and not out.exists()

    out.mkdir()  # an INT8 file of an earlier packaging: made from the model this one replaces, so removed
    (out / "perceptual_int8.onnx").write_bytes(b"older")
    older = {"source": "post-training quantisation of perceptual.safetensors (min/max on the gate's images)"}
    (out / "manifest.json").write_text(json.dumps({"perceptual_int8.onnx": older}))
    gates = ["--verify-images", str(photos_dir), "--max-images", "1", "--crop", "48"]
    assert _package(mod, monkeypatch, [*base, *gates]) == 0
    printed = capsys.readouterr().out
    assert "perceptual_int8.onnx not shipped" in printed and "LPIPS" in printed
    assert "removed" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["perceptual.safetensors"]
    assert (
        entry["model_type"] == "GANModel"
        and manifest["perceptual_unfused.safetensors"]["model_type"] == "GANModel"
    )
    names = {g["name"]: g["passed"] for g in entry["release_gates"]["gates"]}
    assert names["fused_vs_unfused"] and names["fp32_parity"] and names["fp16_vs_fp32"]
    assert "perceptual_int8.onnx" not in manifest and not (out / "perceptual_int8.onnx").exists()
    assert any("LPIPS" in r for r in entry["release_gates"]["refused"])
    assert manifest["training"][-1]["summary"]["adversarial"]["type"] == "R3GANLoss"

    fused = out / "perceptual.safetensors"
    meta = attr_dict(load_model(fused), "checkpoint_meta")
    assert meta["fused"] and meta["extra"]["model_type"] == "GANModel"
    assert perceptual_reason(fused, meta) == "its metadata records model_type GANModel"
    method = model_method(fused, 2, tile=0)  # eval marks the metric on the training loss's network
    assert shares_net(method, "lpips_vgg") == "†" and shares_net(method, "lpips_alex") == ""
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        assert (load_model(fused)(x) - load_model(ckpt)(x)).abs().max().item() <= 1e-4


def test_packaging_ships_int8_only_through_the_lpips_gate(
    tmp_path: Path, photos_dir: Path, monkeypatch, capsys
) -> None:
    """With the real LPIPS weights the INT8 gate measures LPIPS, and the shipped INT8 file records it."""
    from paragonsr.weights import weights_status

    status = {r["name"]: r["status"] for r in weights_status(REAL_WEIGHTS_DIR)}
    if any(status.get(n) != "verified" for n in ("alexnet", "lpips_alex")):
        pytest.skip(f"real weights alexnet, lpips_alex not fetched and verified in {REAL_WEIGHTS_DIR}")
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(REAL_WEIGHTS_DIR))
    mod = load_script(REPO / "scripts" / "package_default_model.py")
    run, ckpt = _gan_run(tmp_path)
    out = tmp_path / "models"
    argv = [str(ckpt), "--name", "perceptual", "--run", str(run), "--out", str(out)]
    argv += ["--verify-images", str(photos_dir), "--max-images", "1", "--crop", "48"]
    assert _package(mod, monkeypatch, argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    gate = next(
        g for g in manifest["perceptual.safetensors"]["release_gates"]["gates"] if g["name"] == "int8"
    )
    assert "lpips_increase" in gate["extra"], gate
    if gate["passed"]:
        entry = manifest["perceptual_int8.onnx"]
        assert entry["fp32_twin"] == "perceptual.safetensors" and entry["gate"] == gate["extra"]
        assert entry["gate"]["lpips_increase"] <= 0.003
        assert (out / "perceptual_int8.onnx").is_file()
    else:
        assert "perceptual_int8.onnx" not in manifest


def test_lpips_metric_of_the_int8_gate_runs_on_real_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's availability probe used a 16 px image, below AlexNet's 32 px: LPIPS was never measured."""
    from paragonsr.deploy import verify as V
    from paragonsr.weights import weights_status

    status = {r["name"]: r["status"] for r in weights_status(REAL_WEIGHTS_DIR)}
    if any(status.get(n) != "verified" for n in ("alexnet", "lpips_alex")):
        pytest.skip(f"real weights alexnet, lpips_alex not fetched and verified in {REAL_WEIGHTS_DIR}")
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(REAL_WEIGHTS_DIR))
    fn, why = V.lpips_metric()
    assert fn is not None, why
    a = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    assert fn(a, a) == pytest.approx(0.0, abs=1e-6) and fn(a, np.clip(a + 0.2, 0, 1)) > 0.01


# ------------------------------------------------------------------------------- export turns the gate on


def test_perceptual_reason_reads_the_training_record(tmp_path: Path) -> None:
    from paragonsr.deploy.model_kind import perceptual_reason, trains_discriminator

    assert trains_discriminator("RealESRGANModel") and not trains_discriminator("SRModel")
    assert not trains_discriminator("NoSuchModel") and not trains_discriminator(None)
    assert perceptual_reason(None, None, "perceptual") == "the packaged 'perceptual' model"
    assert perceptual_reason(None, None, "default") is None
    assert perceptual_reason(None, {"extra": {"model_type": "SRModel"}}) is None
    run, ckpt = _gan_run(tmp_path)
    assert perceptual_reason(ckpt, {"extra": {}}) == "its run's options.yml says model_type GANModel"
    (run / "options.yml").write_text(yaml.safe_dump({"model_type": "SRModel"}), encoding="utf-8")
    assert perceptual_reason(ckpt, {"extra": {}}) is None


def test_export_of_a_gan_checkpoint_bounds_lpips_by_itself(
    tmp_path: Path, photos_dir: Path, monkeypatch, capsys
) -> None:
    import paragonsr.deploy.release as release

    seen: dict[str, Any] = {}

    def fake_export(model, out_dir, name, images, calib_images=None, options=None, **_: Any):
        seen["perceptual"], seen["name"] = options.perceptual, name
        return release.ExportResult(Path(out_dir))

    monkeypatch.setattr(release, "export_release", fake_export)
    _, ckpt = _gan_run(tmp_path)  # in <run>/models/ beside a GANModel options.yml
    argv = [
        "export",
        str(ckpt),
        "-o",
        str(tmp_path / "rel"),
        "--int8",
        "--calib",
        str(photos_dir),
        "--max-images",
        "1",
    ]
    assert cli(argv) == 0
    assert seen == {"perceptual": True, "name": "net_g_ema_2500"}
    assert (
        "is a perceptual (GAN) model (its run's options.yml says model_type GANModel)"
        in capsys.readouterr().out
    )

    plain = tmp_path / "plain.safetensors"
    shutil.copyfile(DEFAULT_UNFUSED, plain)
    assert cli(["export", str(plain), "-o", str(tmp_path / "rel2")]) == 0
    assert seen["perceptual"] is False


# ------------------------------------------------------------------------------ the packaged model, once shipped


def test_packaged_perceptual_loads_offline_and_passed_its_gates() -> None:
    """Skips until the lead packages the model (scripts/package_default_model.py --name perceptual)."""
    from paragonsr.checkpoint import load_model
    from paragonsr.deploy import verify as V
    from paragonsr.infer import default_model_path, packaged_model

    fused_path, unfused_path = (
        default_model_path("perceptual.safetensors"),
        default_model_path("perceptual_unfused.safetensors"),
    )
    if fused_path is None or unfused_path is None:
        pytest.skip("this install has no packaged perceptual model yet")
    assert packaged_model("perceptual") == fused_path  # sha256 checked against the manifest on the way
    manifest = json.loads((fused_path.parent / "manifest.json").read_text())
    entry = manifest["perceptual.safetensors"]
    assert entry["model_type"] == "GANModel"
    gates = {g["name"]: g for g in entry["release_gates"]["gates"]}
    assert (
        gates["fused_vs_unfused"]["passed"]
        and gates["fp32_parity"]["passed"]
        and gates["fp16_vs_fp32"]["passed"]
    )
    if "perceptual_int8.onnx" in manifest:
        gate = manifest["perceptual_int8.onnx"]["gate"]
        assert gate["lpips_increase"] <= V.INT8_MAX_LPIPS_INCREASE and gate["drop_db"] <= V.INT8_MAX_DROP_DB
        assert default_model_path("perceptual_int8.onnx") is not None
    record = next(r for r in reversed(manifest["training"]) if r.get("model") == "perceptual")
    assert record["summary"]["adversarial"] is not None and record["summary"]["start_model"]
    x = torch.rand(1, 3, 21, 17)
    with torch.no_grad():
        assert (load_model(fused_path)(x) - load_model(unfused_path)(x)).abs().max().item() <= 1e-4
