"""The INT8 gate: numbers of the checks, refusal of a broken calibration, --force-int8."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from paragonsr.archs import build_arch
from paragonsr.deploy.release import ExportOptions, export_release
from paragonsr.deploy.verify import check_fp16, check_int8, load_image, psnr

OPTS = ExportOptions(lr_crop=24, sizes=((24, 20),), latency_size=0, calib_per_image=2)


def test_psnr_known_values():
    a = np.full((8, 8, 3), 0.5, np.float32)
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-3)  # mse 1e-4
    assert psnr(a, a) == 100.0  # capped, JSON-safe
    b = a.copy()
    b[0, :, :] = 1.0  # only the border row differs
    assert psnr(a, b, shave=1) == 100.0 and psnr(a, b) < 30
    b[1, 1, 1] = np.nan  # an fp16 overflow must fail the gates
    assert psnr(a, b) == 0.0


def test_parity_gate_fails_on_nan_and_shape():
    from paragonsr.deploy.verify import check_parity

    def ref(x):
        return np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)

    def nan(x):
        y = ref(x)
        y[0, 0, 0, 0] = np.nan
        return y

    assert check_parity(ref, ref, 3, 2, ((5, 7),)).value == 0.0
    bad = check_parity(ref, nan, 3, 2, ((5, 7),))
    assert not bad.passed and bad.to_dict()["value"] is None
    wrong = check_parity(ref, lambda x: x, 3, 2, ((5, 7),))
    assert not wrong.passed and "shape mismatch at 5x7" in wrong.detail


def test_parity_limit_is_absolute_in_image_range_and_relative_beyond():
    from paragonsr.deploy.verify import check_parity

    def ref(x, gain=1.0):
        return np.repeat(np.repeat(x, 2, axis=2), 2, axis=3) * gain

    # image-range outputs: the plain 1e-4 absolute gate
    assert check_parity(ref, lambda x: ref(x) + 9e-5, 3, 2, ((5, 7),)).passed
    assert not check_parity(ref, lambda x: ref(x) + 2e-4, 3, 2, ((5, 7),)).passed
    # outputs up to ~50 (a random-init XL): fp32 rounding of 1e-3 is 2e-5 relative and passes; 1e-2 does not
    big = lambda x: ref(x, 50.0)  # noqa: E731
    ok = check_parity(big, lambda x: big(x) + 1e-3, 3, 2, ((5, 7),))
    assert ok.passed and "max|y|" in ok.detail and ok.threshold > 4e-3
    assert not check_parity(big, lambda x: big(x) + 1e-2, 3, 2, ((5, 7),)).passed


def test_int8_gate_numbers():
    hr = [np.full((12, 12, 3), 0.5, np.float32)]
    chw = hr[0].transpose(2, 0, 1)
    fp32, good, bad = [chw + 0.01], [chw + 0.0101], [chw + 0.02]
    ok = check_int8(hr, fp32, good, scale=2)
    assert ok.passed and ok.value == pytest.approx(20 * math.log10(1.01), abs=1e-3)
    no = check_int8(hr, fp32, bad, scale=2)
    assert not no.passed
    assert no.extra["drop_db"] == pytest.approx(20 * math.log10(2), abs=1e-3)  # 6.02 dB
    assert no.extra["psnr_vs_fp32_db"] == pytest.approx(
        40.0, abs=1e-3
    )  # exactly at the limit: not the reason
    assert "drops 6.02 dB" in no.detail and "vs FP32 output" not in no.detail
    f16 = check_fp16(fp32, [chw + 0.0199])
    assert not f16.passed and f16.value == pytest.approx(20 * math.log10(1 / 0.0099), abs=1e-2)


@pytest.fixture(scope="module")
def images(photo_paths):
    return [(p.name, load_image(p)[:128, :128].copy()) for p in photo_paths[:2]]


def _model():
    torch.manual_seed(0)
    return build_arch("compact", num_feat=8, num_conv=2, upscale=2)


def test_broken_calibration_is_refused_then_forced(tmp_path, images):
    # Calibrating on black frames gives zero activation ranges: real images then clip to garbage.
    black = [("black.png", np.zeros((128, 128, 3), np.float32))]
    out = tmp_path / "refused"
    res = export_release(
        _model(),
        out,
        "m",
        images,
        calib_images=black,
        options=replace(OPTS, int8=True),
        log=lambda s: None,
    )
    assert not (out / "m_int8.onnx").exists() and "int8" not in res.artifacts
    assert (out / "m_fp32.onnx").exists()
    assert not res.ok and len(res.refused) == 1 and "--force-int8" in res.refused[0]
    gate = next(g for g in res.gates if g.name == "int8")
    assert not gate.passed and gate.extra["drop_db"] > 0.3 and gate.extra["psnr_vs_fp32_db"] < 40
    card = json.loads((out / "model_card.json").read_text())
    assert card["refused"] == res.refused and "int8" not in {a["kind"] for a in card["artifacts"]}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]

    forced = export_release(
        _model(),
        tmp_path / "forced",
        "m",
        images,
        calib_images=black,
        options=replace(OPTS, int8=True, force_int8=True),
        log=lambda s: None,
    )
    assert (tmp_path / "forced" / "m_int8.onnx").exists() and forced.ok
    assert not next(g for g in forced.gates if g.name == "int8").passed  # recorded as failed in the card


def test_int8_without_images_is_refused_and_fp16_uses_the_test_card(tmp_path):
    res = export_release(
        _model(), tmp_path, "m", (), options=replace(OPTS, fp16=True, int8=True), log=lambda s: None
    )
    assert "fp16" in res.artifacts and "int8" not in res.artifacts
    assert "needs calibration images" in res.refused[0]
    assert (
        json.loads((tmp_path / "model_card.json").read_text())["quality"]["source"] == "synthetic test card"
    )


def test_refused_int8_removes_a_stale_file_from_an_earlier_export(tmp_path: Path) -> None:
    """Re-exporting into the same folder: a refused INT8 used to leave the previous run's m_int8.onnx in place,
    next to a model card saying INT8 was refused."""
    import torch

    from paragonsr.archs import build_arch
    from paragonsr.deploy.release import ExportOptions, export_release

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2)
    stale = tmp_path / "m_int8.onnx"
    stale.write_bytes(b"int8 model of an earlier export")
    black = [("black.png", np.zeros((96, 96, 3), np.float32))]
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.random((12, 12, 3), dtype=np.float32), 8, 0), 8, 1)
    opts = ExportOptions(int8=True, lr_crop=24, sizes=((24, 20),), latency_size=0, calib_per_image=1)
    res = export_release(
        model, tmp_path, "m", [("img", smooth)], calib_images=black, options=opts, log=lambda s: None
    )
    assert res.refused and "int8" not in res.artifacts
    assert not stale.exists()
