"""SPAN: official/spandrel key layout, Conv3XC folding, fuse_for_release, save/load round trips, detection of
scale/width/norm from state dicts, and training from an option file (generated weights, no shared data)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import attr_dict, imread, narrow
from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.detect import detect_arch
from paragonsr.archs.span import SPAN, Conv3XC, span_kwargs_from_state_dict
from paragonsr.checkpoint import load_model, save_model
from paragonsr.cli import main
from paragonsr.deploy.verify import parity_inputs


def _model(scale: int = 2, feat: int = 8, norm: bool = True, in_ch: int = 3, seed: int = 0) -> SPAN:
    torch.manual_seed(seed)
    m = build_arch("span", feature_channels=feat, scale=scale, norm=norm, num_in_ch=in_ch, num_out_ch=in_ch)
    return narrow(SPAN, m).eval()


def _image(h: int = 14, w: int = 11, c: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(parity_inputs(np.random.default_rng(seed), (1, c, h, w), "image"))


def test_key_layout_matches_the_official_release() -> None:
    m = build_arch("span_s", scale=2, norm=True)
    keys = list(m.state_dict())
    conv3xc = ["eval_conv.weight", "eval_conv.bias", "sk.weight", "sk.bias"] + [
        f"conv.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    ]
    assert sorted(keys[:10]) == sorted(f"conv_1.{k}" for k in conv3xc)
    assert len(keys) == 20 * 10 + 4  # 20 Conv3XC (conv_1, 6 x 3, conv_2) + conv_cat + upsampler.0
    assert {"conv_cat.weight", "conv_cat.bias", "upsampler.0.weight", "upsampler.0.bias"} <= set(keys)
    sd = m.state_dict()
    assert sd["block_1.c1_r.conv.1.weight"].shape == (96, 96, 3, 3)  # gain 2
    assert sd["upsampler.0.weight"].shape == (12, 48, 3, 3)
    # traiNNer-redux defaults: span 52 channels, span_s 48, both without input normalisation (a no_norm buffer)
    assert build_arch("span").state_dict()["conv_cat.weight"].shape == (52, 208, 1, 1)
    assert "no_norm" in build_arch("span_s").state_dict() and "no_norm" not in sd
    assert {"span", "span_s"} <= set(ARCH_REGISTRY.names()) and ARCH_REGISTRY.canonical("SPAN") == "span"


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_shapes_and_channels(scale: int) -> None:
    m = _model(scale=scale, feat=4)
    assert m(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)
    assert (m.scale, m.in_ch, m.out_ch, m.fused) == (scale, 3, 3, False)
    gray = _model(scale=scale, feat=4, in_ch=1)
    assert gray(torch.rand(1, 1, 5, 6)).shape == (1, 1, 5 * scale, 6 * scale)


def test_conv3xc_fold_is_exact_including_borders() -> None:
    torch.manual_seed(3)
    conv = Conv3XC(5, 7)
    x = torch.randn(2, 5, 6, 9)
    with torch.no_grad():
        branches = conv.train()(x)  # 1x1 -> 3x3 -> 1x1 on the padded input, plus the 1x1 skip
        folded = conv.eval()(x)
        conv.fuse()
        fused = conv(x)
    assert not hasattr(conv, "sk") and not hasattr(conv, "conv")
    torch.testing.assert_close(folded, branches, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused, folded, atol=0, rtol=0)


@pytest.mark.parametrize("norm", [True, False])
def test_fused_equals_unfused(norm: bool) -> None:
    m = _model(scale=3, norm=norm)
    x = _image()
    with torch.no_grad():
        branches = copy.deepcopy(m).train()(x)
        unfused = m(x)
        fused_model = copy.deepcopy(m).fuse_for_release()
        fused = fused_model(x)
    assert fused_model.fused and not fused_model.training
    assert float((fused - unfused).abs().max()) <= 1e-4
    assert float((fused - branches).abs().max()) <= 1e-4 * max(1.0, float(branches.abs().max()))
    keys = set(fused_model.state_dict())
    assert not any(".sk." in k or ".conv." in k for k in keys) and "conv_1.eval_conv.weight" in keys
    assert ("no_norm" in keys) is (not norm)


def test_saved_eval_conv_follows_the_trained_branches() -> None:
    m = _model().train()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    m(_image()).mean().backward()
    opt.step()
    sd = m.state_dict()
    w, b = narrow(Conv3XC, m.get_submodule("block_3.c2_r")).folded()
    torch.testing.assert_close(sd["block_3.c2_r.eval_conv.weight"], w.detach())
    torch.testing.assert_close(sd["block_3.c2_r.eval_conv.bias"], b.detach())
    assert not m.conv_1.eval_conv.weight.requires_grad  # derived, never an optimiser parameter


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
@pytest.mark.parametrize("fused", [False, True])
def test_save_load_round_trip(tmp_path: Path, ext: str, fused: bool) -> None:
    m = _model(scale=2)
    if fused:
        m.fuse_for_release()
    x = _image()
    with torch.no_grad():
        ref = m(x)
    path = save_model(tmp_path / f"m{ext}", m)
    back = load_model(path)
    assert (
        back.arch_name == "span"
        and back.fused is fused
        and attr_dict(back, "checkpoint_meta")["fused"] is fused
    )
    with torch.no_grad():
        torch.testing.assert_close(back(x), ref, atol=0, rtol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("layout", ["both", "eval_conv_only"])
def test_detection_from_plain_state_dicts(tmp_path: Path, scale: int, layout: str) -> None:
    m = _model(scale=scale, feat=12)
    state = m.state_dict()
    if layout == "eval_conv_only":
        state = copy.deepcopy(m).fuse_for_release().state_dict()
    want = {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 12, "scale": scale, "norm": True}
    assert span_kwargs_from_state_dict(state) == want
    assert detect_arch(state) == ("span", want)
    # a third-party file: BasicSR's params key, no metadata -> rebuilt and loaded with no flags
    path = tmp_path / "third_party.pth"
    torch.save({"params": {k: v.clone() for k, v in state.items()}}, path)
    back = load_model(path)
    assert attr_dict(back, "checkpoint_meta")["detected"] and back.fused is (layout == "eval_conv_only")
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x), atol=1e-5, rtol=1e-5)


def test_detection_of_no_norm_gray_and_foreign_layouts() -> None:
    gray = _model(scale=2, feat=6, norm=False, in_ch=1).state_dict()
    assert span_kwargs_from_state_dict(gray) == {
        "num_in_ch": 1,
        "num_out_ch": 1,
        "feature_channels": 6,
        "scale": 2,
        "norm": False,
    }
    compact = build_arch("compact", num_feat=4, num_conv=1, upscale=2).state_dict()
    found = detect_arch(compact)
    assert found is not None and found[0] == "srvggnetcompact"  # not mistaken for SPAN
    broken = dict(_model().state_dict())
    broken["upsampler.0.weight"] = torch.zeros(13, 8, 3, 3)
    assert detect_arch(broken) is None  # 13 outputs: no channels x scale^2 split
    with pytest.raises(KeyError, match="cannot infer the SPAN scale"):
        span_kwargs_from_state_dict(broken)
    with pytest.raises(KeyError, match=r"missing .*conv_cat\.weight"):
        span_kwargs_from_state_dict({k: v for k, v in broken.items() if not k.startswith("conv_cat")})


def test_cli_upscale_third_party_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = _model(scale=2, feat=8)
    torch.save({"params_ema": m.state_dict()}, tmp_path / "2x_span.pth")
    img = (
        parity_inputs(np.random.default_rng(0), (1, 3, 12, 10), "image")[0].transpose(1, 2, 0) * 255
    ).round()
    cv2.imwrite(str(tmp_path / "in.png"), img.astype(np.uint8))
    rc = main(
        ["upscale", "-m", str(tmp_path / "2x_span.pth"), str(tmp_path / "in.png"), "-o", str(tmp_path / "o")]
    )
    assert rc in (0, None)
    out = imread(str(tmp_path / "o" / "in.png"))
    assert out is not None and out.shape == (24, 20, 3)
    assert "span, x2" in capsys.readouterr().out


def test_trains_from_an_option_file(tmp_path: Path) -> None:
    from paragonsr.checkpoint import load_state_dict
    from paragonsr.train.option_io import parse_options
    from paragonsr.train.trainer import Trainer

    rng = np.random.default_rng(0)
    for sub in ("gt", "lq"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(3):
        gt = (
            (parity_inputs(rng, (1, 3, 32, 32), "image")[0].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        )
        cv2.imwrite(str(tmp_path / "data" / "gt" / f"{i}.png"), gt)
        cv2.imwrite(
            str(tmp_path / "data" / "lq" / f"{i}.png"), cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)
        )
    data = {"dataroot_gt": str(tmp_path / "data" / "gt"), "dataroot_lq": str(tmp_path / "data" / "lq")}
    opt = {
        "name": "span",
        "scale": 2,
        "manual_seed": 0,
        "datasets": {"train": {"type": "PairedImageDataset", **data, "gt_size": 32, "batch_size_per_gpu": 2}},
        "network_g": {"type": "span", "feature_channels": 8},  # traiNNer-redux spelling; scale from the top
        "path": {"experiments_root": str(tmp_path / "exp")},
        "train": {"total_iter": 2, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }
    res = Trainer(parse_options(opt)).train()
    assert res.iters == 2 and all(math.isfinite(lo["l_pixel"]) for lo in res.losses)
    path = tmp_path / "exp" / "models" / "net_g_2.safetensors"
    state, meta = load_state_dict(path)
    assert meta["arch"] == "span" and meta["scale"] == 2 and meta["arch_kwargs"]["feature_channels"] == 8
    assert "no_norm" in state  # traiNNer-redux's training default
    back = load_model(path)
    w, _ = narrow(Conv3XC, back.get_submodule("block_6.c3_r")).folded()
    torch.testing.assert_close(state["block_6.c3_r.eval_conv.weight"], w.detach())
    with pytest.raises(Exception, match=r"feature_channel.*did you mean 'feature_channels'"):
        parse_options({**opt, "network_g": {"type": "span", "feature_channel": 8}})


def test_parity_inputs_kinds() -> None:
    rng = np.random.default_rng(0)
    img = parity_inputs(rng, (2, 3, 9, 7), "image")
    assert img.shape == (2, 3, 9, 7) and img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
    # smooth: neighbouring pixels differ far less than in white noise
    white = parity_inputs(rng, (2, 3, 9, 7))
    assert np.abs(np.diff(img, axis=-1)).mean() < 0.5 * np.abs(np.diff(white, axis=-1)).mean()
    with pytest.raises(ValueError, match="'uniform' or 'image'"):
        parity_inputs(rng, (1, 3, 4, 4), "photo")


def test_generated_span_exports_through_the_gates(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from paragonsr.deploy.fuse import prepare_for_release
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.deploy.verify import check_parity, onnx_runner, torch_runner

    fused, rep = prepare_for_release(_model(scale=2, feat=6), sizes=((13, 10),))
    assert rep.fusable and rep.parity is not None and rep.parity.passed and "image-like" in rep.parity.detail
    path = export_onnx(fused, tmp_path / "span.onnx")
    gate = check_parity(torch_runner(fused), onnx_runner(path), 3, 2, ((13, 10), (8, 17)), inputs="image")
    assert gate.passed and gate.value <= 1e-4, gate.detail


def test_cli_export_of_a_third_party_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    import json

    m = _model(scale=2, feat=6)
    torch.save({"params": m.state_dict()}, tmp_path / "2x_span.pth")
    fast = ["--crop", "24", "--latency-size", "24", "--latency-runs", "1"]
    rc = main(["export", str(tmp_path / "2x_span.pth"), "-o", str(tmp_path / "rel"), *fast])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "rel" / "model_card.json").read_text())
    gates = {g["name"]: g for g in card["verification"]}
    assert card["model"]["variant"] == "span" and {"fused_vs_unfused", "fp32_parity"} <= set(gates)
    assert all(g["passed"] for g in gates.values()) and gates["fp32_parity"]["value"] <= 1e-4
    fused = load_model(tmp_path / "rel" / "2x_span_fused.safetensors")
    assert fused.fused and not any(".sk." in k for k in fused.state_dict())
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), m(x), atol=1e-5, rtol=1e-5)
