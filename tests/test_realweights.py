"""Real pretrained files from other projects: the official SPAN x2 (48 channels) and Real-ESRGAN's original
realesr-animevideov3 (Compact 64f/16c x4, tensors saved on CUDA). Each loads with no flags, matches the output of an
independent implementation (spandrel 0.4.2) on a given input to 1e-4 in fp32, and exports to ONNX through the
parity gate. The files live beside the repository in ``../shared/realweights`` and are never committed: without
that folder these tests are skipped.

Channel order of the reference arrays, found by measurement: the model input is the PNG as stored (what any PNG
reader returns as RGB, ours included) and the stored ``ref_output_*.npy`` holds the output's channels reversed.
With that reading both references match to ~2e-7; every other combination is 0.04-0.38 off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import attr_dict
from paragonsr.checkpoint import load_model

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realweights"
INPUT = "ref_input_96x128.png"
# file stem -> (arch, scale, expected detected kwargs)
CASES = {
    "span_x2_ch48": (
        "span",
        2,
        {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 48, "scale": 2, "norm": True},
    ),
    "realesr-animevideov3_x4": (
        "srvggnetcompact",
        4,
        {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"},
    ),
}


def _require(*names: str) -> list[Path]:
    paths = [REAL / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        pytest.skip(
            f"real weights not available ({REAL} lacks {', '.join(missing)}); they are never committed"
        )
    return paths


def _reference(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(input NCHW float32 in [0, 1] read by our image reader, reference output NCHW in the same channel order)."""
    from paragonsr.io.image_io import read_image

    img_path, ref_path = _require(INPUT, f"ref_output_{stem}.npy")
    img, _ = read_image(img_path)  # float32 HWC RGB in [0, 1]
    x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
    ref = np.load(ref_path)[..., ::-1]  # see the module docstring
    return x, np.ascontiguousarray(ref.transpose(2, 0, 1)[None])


@pytest.mark.parametrize("stem", sorted(CASES))
def test_loads_with_no_flags_and_matches_reference(stem: str) -> None:
    (path,) = _require(f"{stem}.pth")
    arch, scale, kwargs = CASES[stem]
    model = load_model(path)  # no arch, no scale, no param key: everything from the file
    assert model.arch_name == arch and model.scale == scale and model.arch_kwargs == kwargs
    meta = attr_dict(model, "checkpoint_meta")
    assert meta["detected"] and meta["param_key"] == "params"
    assert all(p.device.type == "cpu" for p in model.parameters())  # the Compact file was saved on CUDA
    x, ref = _reference(stem)
    with torch.inference_mode():
        out = model(torch.from_numpy(x)).numpy()
        assert out.shape == ref.shape == (1, 3, 96 * scale, 128 * scale)
        assert float(np.abs(out - ref).max()) <= 1e-4
        fuse = getattr(model, "fuse_for_release", None)
        if fuse is not None:
            fused = fuse()(torch.from_numpy(x)).numpy()
            assert float(np.abs(fused - ref).max()) <= 1e-4


def test_span_eval_conv_in_the_file_equals_its_branches() -> None:
    """The file holds both layouts; the branches fold exactly into the stored eval_conv (either one is usable)."""
    (path,) = _require("span_x2_ch48.pth")
    from paragonsr.archs.span import Conv3XC
    from paragonsr.checkpoint import load_state_dict

    state, _ = load_state_dict(path)
    model = load_model(path)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, Conv3XC)}
    assert len(convs) == 20
    for name, conv in convs.items():
        w, b = conv.folded()
        torch.testing.assert_close(w.detach(), state[f"{name}.eval_conv.weight"], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(b.detach(), state[f"{name}.eval_conv.bias"], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("stem", sorted(CASES))
def test_exports_to_onnx_through_the_parity_gate(stem: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from paragonsr.deploy.fuse import prepare_for_release
    from paragonsr.deploy.onnx_export import export_onnx
    from paragonsr.deploy.verify import check_parity, onnx_runner, torch_runner

    (path,) = _require(f"{stem}.pth")
    model = load_model(path)
    fused, rep = prepare_for_release(model, sizes=((20, 17),))  # raises if fusing changed the output
    onnx_path = export_onnx(fused, tmp_path / f"{stem}.onnx")
    run = onnx_runner(onnx_path)
    gate = check_parity(
        torch_runner(fused),
        run,
        3,
        rep.scale,
        ((20, 17),),
        inputs=getattr(fused, "parity_inputs", "uniform"),
    )
    assert gate.passed, gate.detail
    x, ref = _reference(stem)
    assert float(np.abs(run(x) - ref).max()) <= 1e-4
