"""``paragonsr export`` end to end: checkpoint in, verified artifacts + model card out, exit codes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import imread
from paragonsr.archs import build_arch
from paragonsr.checkpoint import save_model
from paragonsr.cli import main

FAST = ["--crop", "24", "--latency-size", "32", "--latency-runs", "1", "--max-images", "2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "2xTinyCompact.safetensors"
    save_model(path, build_arch("compact", num_feat=8, num_conv=2, upscale=2))
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory, photo_paths):
    folder = tmp_path_factory.mktemp("calib")
    for p in photo_paths[:2]:
        cv2.imwrite(str(folder / f"{p.stem}.png"), imread(str(p))[:96, :96])
    (folder / "notes.txt").write_text("not an image")  # ignored by extension
    return folder


def test_export_command_writes_verified_artifacts(tmp_path, checkpoint, calib_dir, capsys):
    out = tmp_path / "release"
    rc = main(
        ["export", str(checkpoint), "-o", str(out), "--fp16", "--int8", "--calib", str(calib_dir), *FAST]
    )
    assert rc == 0, capsys.readouterr().err
    stem = "2xTinyCompact"
    for suffix in ("_fused.safetensors", "_fp32.onnx", "_fp16.onnx", "_int8.onnx", "_comparison.png"):
        assert (out / f"{stem}{suffix}").is_file()
    card = json.loads((out / "model_card.json").read_text())
    assert card["name"] == stem and card["model"]["variant"] == "srvggnetcompact"
    assert all(g["passed"] for g in card["verification"]) and card["refused"] == []
    assert "wrote int8" in capsys.readouterr().out


def test_export_command_refuses_int8_from_a_broken_calibration(tmp_path, checkpoint, calib_dir, capsys):
    black = tmp_path / "black"
    black.mkdir()
    cv2.imwrite(str(black / "black.png"), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "release"
    args = ["export", str(checkpoint), "-o", str(out), "--int8", "--calib", str(black)]
    rc = main([*args, "--verify-images", str(calib_dir), *FAST])
    assert rc == 3
    assert not (out / "2xTinyCompact_int8.onnx").exists() and (out / "2xTinyCompact_fp32.onnx").exists()
    err = capsys.readouterr().err
    assert "REFUSED: 2xTinyCompact_int8.onnx not written" in err and "--force-int8" in err


def test_export_command_input_errors(tmp_path, checkpoint, capsys):
    assert main(["export", str(checkpoint), "-o", str(tmp_path), "--int8"]) == 1
    assert "--int8 needs calibration images" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope.safetensors"), "-o", str(tmp_path)]) == 1
    assert "nope.safetensors" in capsys.readouterr().err
    assert (
        main(["export", str(checkpoint), "-o", str(tmp_path), "--fp16", "--calib", str(tmp_path / "x")]) == 1
    )
    assert "folder not found" in capsys.readouterr().err
    assert main(["export", str(checkpoint), "-o", str(tmp_path), "--opset", "11"]) == 1
    assert "opset 11 is too old" in capsys.readouterr().err


def test_upscale_with_onnx_backend_matches_torch(tmp_path, checkpoint, calib_dir):
    """Same tiling / alpha / 16-bit path for both backends: a tiled 16-bit RGBA image comes out the same."""
    out = tmp_path / "release"
    assert main(["export", str(checkpoint), "-o", str(out), "--latency-size", "0", "--crop", "24"]) == 0
    rng = np.random.default_rng(0)
    rgba = (rng.random((72, 67, 4)) * 65535).astype(np.uint16)
    rgba[..., :3] = cv2.GaussianBlur(rgba[..., :3], (5, 5), 0)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), rgba)
    common = ["--tile", "32", "--tile-overlap", "8", "-q"]
    torch_args = ["-m", str(checkpoint), "--device", "cpu", "--precision", "fp32"]
    onnx_args = ["-m", str(out / "2xTinyCompact_fp32.onnx"), "--provider", "cpu"]
    rc_t = main(["upscale", str(src), "-o", str(tmp_path / "t.png"), *torch_args, *common])
    rc_o = main(["upscale", str(src), "-o", str(tmp_path / "o.png"), *onnx_args, *common])
    assert rc_t == 0 and rc_o == 0
    t = imread(str(tmp_path / "t.png"), cv2.IMREAD_UNCHANGED)
    o = imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert o.dtype == np.uint16 and o.shape == (144, 134, 4) == t.shape
    assert np.abs(o.astype(np.int64) - t.astype(np.int64)).max() <= 2  # 16-bit rounding of ~1e-6 differences
