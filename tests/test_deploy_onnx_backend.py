"""OnnxBackend: metadata contract, providers, foreign ONNX files, input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paragonsr.archs import build_arch
from paragonsr.deploy.onnx_export import export_onnx
from paragonsr.infer.onnx_backend import OnnxBackend, resolve_providers


def test_providers_auto_and_override():
    auto = resolve_providers(None)
    assert auto[-1] == "CPUExecutionProvider" and "TensorrtExecutionProvider" not in auto
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert resolve_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match=r"'nope' \(nope\) is not available.*CPUExecutionProvider"):
        resolve_providers("nope")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter, chosen on purpose
def test_foreign_onnx_without_metadata_is_probed(tmp_path):
    torch.manual_seed(0)
    model = build_arch("compact", num_feat=4, num_conv=1, upscale=3, num_out_ch=1).eval()
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}},
    )
    backend = OnnxBackend(path, provider="cpu")
    assert backend.metadata == {} and (backend.scale, backend.in_ch, backend.out_ch) == (3, 3, 1)
    x = torch.rand(1, 3, 11, 7)
    with torch.no_grad():
        assert torch.allclose(backend(x), model(x), atol=1e-5)


def test_metadata_and_input_errors(tmp_path):
    path = export_onnx(
        build_arch(
            "paragonsr2", scale=2, in_ch=1, out_ch=1, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0
        ),
        tmp_path / "g.onnx",
    )
    backend = OnnxBackend(path)
    assert (backend.scale, backend.in_ch, backend.out_ch) == (2, 1, 1)
    assert backend.metadata["arch"] == "paragonsr2" and '"num_feat": 8' in backend.metadata["arch_kwargs"]
    with pytest.raises(ValueError, match=r"expected input of shape \[B, 1, H, W\], got \(1, 3, 8, 8\)"):
        backend(torch.rand(1, 3, 8, 8))
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        OnnxBackend(tmp_path / "missing.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter, chosen on purpose
def test_foreign_fixed_size_onnx_pads_small_inputs_and_tiles_large_ones(tmp_path):
    torch.manual_seed(0)
    model = build_arch("compact", num_feat=4, num_conv=2, upscale=2).eval()
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(
        model, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17, input_names=["x"]
    )
    backend = OnnxBackend(path, provider="cpu")
    assert backend.fixed_hw == (32, 32) and (backend.scale, backend.out_ch) == (2, 3)

    # Smaller than the fixed size: edge-padded, run, cropped - exactly the model on the edge-padded input.
    small = torch.rand(2, 3, 20, 27)
    padded = torch.nn.functional.pad(small, (0, 5, 0, 12), mode="replicate")
    with torch.no_grad():
        want = model(padded)[..., :40, :54]
    assert torch.allclose(backend(small), want, atol=1e-5)

    # Larger: tiles of the fixed size; away from the bottom/right image edges it equals the untiled model.
    big = torch.rand(1, 3, 70, 45)
    got = backend(big)
    assert got.shape == (1, 3, 140, 90)
    with torch.no_grad():
        full = model(big)
    r = 2 * 4  # a few LR pixels of receptive field (3 convs), in output pixels, plus margin
    assert torch.allclose(got[..., : 140 - r, : 90 - r], full[..., : 140 - r, : 90 - r], atol=1e-4)


def _onnx_model(tmp_path: Path) -> Path:
    import torch

    from paragonsr.archs import build_arch
    from paragonsr.deploy.onnx_export import export_onnx

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=1, upscale=2)
    return export_onnx(model, tmp_path / "tiny.onnx")


def test_onnx_backend_honours_device_and_rejects_torch_precision(tmp_path: Path) -> None:
    """--device used to be ignored for .onnx models (ran on whatever provider 'auto' picked), and --precision
    bf16/fp16 was silently dropped."""
    import onnxruntime

    from paragonsr.infer.backends import load_backend

    path = _onnx_model(tmp_path)
    cpu = load_backend(path, device="cpu")
    assert isinstance(cpu, OnnxBackend) and cpu.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="CUDAExecutionProvider"):
            load_backend(path, device="cuda")
    else:
        cuda = load_backend(path, device="cuda")
        assert isinstance(cuda, OnnxBackend) and cuda.providers[0] == "CUDAExecutionProvider"
    with pytest.raises(ValueError, match="--precision bf16 applies to torch models only"):
        load_backend(path, precision="bf16")
    with pytest.raises(ValueError, match="--device mps has no ONNX Runtime equivalent"):
        load_backend(path, device="mps")
    assert load_backend(path, device="cpu", precision="fp32").scale == 2  # what evaluate.py passes
