"""Export + verification for Compact and ParagonSR2 nano: artifacts, parity, dynamic shapes, model card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import imread
from paragonsr.archs import build_arch
from paragonsr.deploy.fuse import macs_per_output_mp, prepare_for_release
from paragonsr.deploy.onnx_export import convert_fp16, export_onnx
from paragonsr.deploy.release import ExportOptions, export_release
from paragonsr.deploy.verify import check_parity, load_image, onnx_runner, psnr, torch_runner
from paragonsr.infer.onnx_backend import OnnxBackend

SIZES = ((24, 20), (33, 17))
OPTS = ExportOptions(lr_crop=24, sizes=SIZES, latency_size=32, latency_runs=1, calib_per_image=2)


@pytest.fixture(scope="module")
def images(photo_paths):
    return [(p.name, load_image(p)[:256, :256].copy()) for p in photo_paths[:2]]


def _compact() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_arch("compact", num_feat=8, num_conv=2, upscale=2)


@pytest.fixture(scope="module")
def compact_export(tmp_path_factory, images):
    model = _compact()
    out = tmp_path_factory.mktemp("compact")
    opts = replace(OPTS, fp16=True, int8=True)
    res = export_release(model, out, "2xCompactNano", images, options=opts, log=lambda s: None)
    return model, res


def test_compact_all_artifacts_pass_their_gates(compact_export):
    _, res = compact_export
    assert set(res.artifacts) == {"fused", "fp32", "fp16", "int8"}
    assert res.ok and not res.refused
    gates = {g.name: g for g in res.gates}
    assert set(gates) == {"fp32_parity", "fp16_vs_fp32", "int8"}  # Compact has nothing to fuse
    assert all(g.passed for g in gates.values())
    assert gates["fp32_parity"].value <= 1e-4
    assert gates["fp16_vs_fp32"].value >= 45
    assert gates["int8"].extra["psnr_vs_fp32_db"] >= 40
    # nothing half-written or unverified left behind
    assert not [p.name for p in res.out_dir.iterdir() if p.name.startswith(".")]


def test_one_onnx_file_serves_two_sizes_and_batches(compact_export):
    model, res = compact_export
    backend = OnnxBackend(res.artifacts["fp32"])
    assert (backend.scale, backend.in_ch, backend.out_ch, backend.precision) == (2, 3, 3, "fp32")
    for shape in ((1, 3, 24, 20), (2, 3, 33, 17)):
        x = torch.rand(shape)
        with torch.no_grad():
            ref = model.eval()(x)
        out = backend(x)
        assert out.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        assert torch.max(torch.abs(out - ref)).item() <= 1e-4


def test_fp16_with_float16_io(compact_export, tmp_path):
    _, res = compact_export
    half = convert_fp16(res.artifacts["fp32"], tmp_path / "io16.onnx", keep_io_types=False)
    b16, b32 = OnnxBackend(half), OnnxBackend(res.artifacts["fp32"])
    assert b16.input_dtype == np.float16 and b16.metadata["io_dtype"] == "float16"
    x = torch.rand(1, 3, 21, 19)
    out16, out32 = b16(x), b32(x)
    assert out16.dtype == torch.float32 and out16.shape == out32.shape
    assert psnr(out16[0].numpy().transpose(1, 2, 0), out32[0].numpy().transpose(1, 2, 0)) >= 45


def test_model_card_fields_are_true(compact_export):
    model, res = compact_export
    card = json.loads((res.out_dir / "model_card.json").read_text())
    m = card["model"]
    assert (m["arch"], m["variant"], m["scale"], m["in_ch"], m["out_ch"]) == (
        "SRVGGNetCompact",
        "srvggnetcompact",
        2,
        3,
        3,
    )
    assert m["params_trainable"] == m["params_fused"] == sum(p.numel() for p in model.parameters())
    # Compact MACs per LR pixel: 3->8 conv, 2x 8->8 convs, 8->3*s^2 conv (all 3x3); output has s^2 pixels each.
    per_lr = 9 * (3 * 8 + 2 * 8 * 8 + 8 * 12)
    assert m["macs_per_output_mp"] == pytest.approx(per_lr / 4 * 1e6, rel=1e-6)
    md = (res.out_dir / "MODEL_CARD.md").read_text()
    assert {a["kind"] for a in card["artifacts"]} == {"fused", "fp32", "fp16", "int8"}
    for a in card["artifacts"]:
        path = res.out_dir / a["file"]
        assert a["bytes"] == path.stat().st_size
        assert a["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert a["file"] in md
        if a["kind"] == "fused":
            assert a["ort_cpu_latency_ms"] is None
        else:
            assert a["ort_cpu_latency_ms"] > 0 and a["latency_input"] == "1x3x32x32"
    assert card["int8_settings"]["calibration_crops"] == 4 and card["fp16_io"] == "float32"
    assert card["int8_settings"]["kept_float"] == []  # Compact declares no float-only parts
    assert [g["name"] for g in card["verification"]] == ["fp32_parity", "fp16_vs_fp32", "int8"]
    assert card["quality"]["images"] == 2 and card["quality"]["psnr_bicubic_db"] > 20
    assert "psnr_dynamic_db" not in card["quality"]  # Compact has no dynamic layers
    img = imread(str(res.out_dir / card["comparison_image"]))
    # three labelled panels (bicubic, model, ground truth) of 48 px enlarged 2x, 4 px gaps
    assert img.shape == (96, 3 * 96 + 2 * 4, 3)


def test_fused_checkpoint_round_trip(compact_export):
    from paragonsr.checkpoint import load_model

    model, res = compact_export
    loaded = load_model(res.artifacts["fused"])
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)


def test_paragonsr2_nano_fused_export_matches_unfused(tmp_path, images):
    torch.manual_seed(1)
    model = build_arch("paragonsr2_nano", scale=2)
    res = export_release(model, tmp_path, "2xNano", images, options=OPTS, log=lambda s: None)
    gates = {g.name: g for g in res.gates}
    assert gates["fused_vs_unfused"].passed and gates["fp32_parity"].passed
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["model"]["variant"] == "paragonsr2_nano" and card["model"]["fusable"]
    assert card["model"]["params_fused"] < card["model"]["params_trainable"]
    q = card["quality"]  # dynamic-vs-static gap is reported for archs with tracked kernels
    assert q["static_minus_dynamic_db"] == pytest.approx(q["psnr_model_db"] - q["psnr_dynamic_db"])
    # the exported graph reproduces the *unfused* training-graph model in eval mode
    gate = check_parity(torch_runner(model), onnx_runner(res.artifacts["fp32"]), 3, 2, SIZES)
    assert gate.passed, gate.detail


def test_calibration_changes_tracked_kernels_on_a_copy(images):
    from paragonsr.deploy.verify import make_calib_inputs

    torch.manual_seed(2)
    # LayerScale 1 (not 1e-5) so the tracked kernels visibly reach the output
    kw = dict(scale=2, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0, layer_scale_init=1.0)
    model = build_arch("paragonsr2", **kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calib = make_calib_inputs([im for _, im in images], 2, 3, lr_size=16, per_image=1)
    plain, _ = prepare_for_release(model, sizes=SIZES)
    calibrated, rep = prepare_for_release(model, calib_inputs=calib, calibrate_steps=3, sizes=SIZES)
    assert rep.calibrated_steps == 3 and rep.parity is not None and rep.parity.passed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input model untouched
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (plain(x) - calibrated(x)).abs().max() > 1e-6  # exactly 0 if calibration did nothing
    with pytest.raises(ValueError, match="no DynamicTransformer"):
        prepare_for_release(_compact(), calib_inputs=calib, calibrate_steps=1)


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("compact", {"num_feat": 4, "num_conv": 1, "upscale": 1}),
        ("compact", {"num_feat": 4, "num_conv": 1, "upscale": 3}),
        ("paragonsr2", {"scale": 1, "num_feat": 8, "num_groups": 1, "num_blocks": 1, "hr_blocks": 0}),
        ("paragonsr2", {"scale": 3, "num_feat": 8, "num_groups": 1, "num_blocks": 1, "hr_blocks": 1}),
        ("paragonsr2", {"scale": 4, "num_feat": 8, "num_groups": 1, "num_blocks": 1, "hr_blocks": 0}),
    ],
)
def test_every_scale_exports_with_odd_sizes(tmp_path, arch, kwargs):
    torch.manual_seed(0)
    fused, rep = prepare_for_release(build_arch(arch, **kwargs), sizes=SIZES)
    path = export_onnx(fused, tmp_path / "m.onnx", opset=18)
    gate = check_parity(torch_runner(fused), onnx_runner(path), 3, rep.scale, SIZES)
    assert gate.passed, gate.detail
    assert OnnxBackend(path).scale == rep.scale
    assert macs_per_output_mp(fused) > 0


def test_old_opset_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="opset 13 is too old"):
        export_onnx(_compact(), tmp_path / "m.onnx", opset=13)


def test_unrequested_files_of_an_earlier_export_are_kept_but_flagged(tmp_path: Path) -> None:
    """An export without --fp16 into a folder holding m_fp16.onnx from an earlier run leaves the file alone (it is
    the user's) but says it is not part of this release, in the log and in the card."""
    import torch

    from paragonsr.archs import build_arch
    from paragonsr.deploy.release import ExportOptions, export_release

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2)
    old = tmp_path / "m_fp16.onnx"
    old.write_bytes(b"fp16 model of an earlier export")
    lines: list[str] = []
    opts = ExportOptions(lr_crop=24, sizes=((24, 20),), latency_size=0)
    img = [("img", np.random.default_rng(0).random((48, 48, 3), dtype=np.float32))]
    res = export_release(model, tmp_path, "m", img, options=opts, log=lines.append)
    assert old.read_bytes() == b"fp16 model of an earlier export"
    assert res.stale == ["m_fp16.onnx"] and res.card["stale_files"] == ["m_fp16.onnx"]
    assert any("m_fp16.onnx" in line and "NOT part of this release" in line for line in lines)


@pytest.mark.parametrize(("in_ch", "out_ch"), [(1, 3), (3, 1)])
def test_export_models_with_different_in_and_out_channels(tmp_path: Path, in_ch: int, out_ch: int) -> None:
    """ParagonSR2 supports in_ch != out_ch; the export's verification compared a ground truth with the model's
    *input* channels to its output and failed with 'PSNR needs equal shapes'."""
    import json

    import torch

    from paragonsr.archs import build_arch
    from paragonsr.deploy.release import ExportOptions, export_release

    torch.manual_seed(0)
    kw = dict(num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0, in_ch=in_ch, out_ch=out_ch)
    model = build_arch("paragonsr2", scale=2, **kw)
    img = np.random.default_rng(0).random((48, 48, 3), dtype=np.float32)
    opts = ExportOptions(int8=True, lr_crop=16, sizes=((16, 12),), latency_size=0, calib_per_image=1)
    res = export_release(model, tmp_path, "m", [("img", img)], options=opts, log=lambda s: None)
    assert (
        "fp32" in res.artifacts
        and next(g for g in res.gates if g.name == "int8").extra["psnr_vs_fp32_db"] > 0
    )
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert (card["model"]["in_ch"], card["model"]["out_ch"]) == (in_ch, out_ch)
    assert card["quality"]["psnr_model_db"] > 0 and card["quality"]["psnr_bicubic_db"] > 0
