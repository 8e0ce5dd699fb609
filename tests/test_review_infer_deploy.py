"""Review fixes for the foundation (issue 2) and deployment (issue 5) areas: each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paragonsr.infer.image_io import read_image


@pytest.mark.parametrize("mode", ["L", "I;16"])
@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (3, lambda a: a[::-1, ::-1]),  # rotate 180
        (6, lambda a: np.rot90(a, k=-1)),  # rotate 90 clockwise
        (8, lambda a: np.rot90(a, k=1)),  # rotate 90 counter-clockwise
    ],
)
def test_tiff_orientation_applied_once(tmp_path: Path, mode: str, orientation: int, expected) -> None:
    """OpenCV's TIFF decoder honours the Orientation tag itself; read_image must not rotate a second time."""
    rng = np.random.default_rng(orientation)
    dtype, peak = (np.uint8, 255) if mode == "L" else (np.uint16, 65535)
    raw = rng.integers(0, peak + 1, size=(6, 10), dtype=dtype)
    im = Image.frombytes(mode, (10, 6), raw.tobytes()) if mode == "I;16" else Image.fromarray(raw)
    path = tmp_path / f"o{orientation}.tif"
    im.save(path, tiffinfo={274: orientation})
    img, info = read_image(path)
    assert info.orientation == orientation
    want = np.ascontiguousarray(expected(raw))
    assert img.shape == (*want.shape, 1)
    np.testing.assert_array_equal(np.rint(img[..., 0] * peak).astype(dtype), want)


def _tiny_image(tmp_path: Path) -> Path:
    import cv2

    path = tmp_path / "in.png"
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outscale", "0"], "--outscale must be a positive factor"),  # used to write a 1x1 image, exit 0
        (["--tile", "16"], "--tile 16 is too small"),  # used to fail once per file
        (["--tile-blend", "2"], "--tile-blend must be in [0, 1]"),
        (["--tile-overlap", "-4"], "--tile-overlap must be >= 0"),
    ],
)
def test_upscale_rejects_bad_numbers_up_front(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    from paragonsr.cli import main

    src = _tiny_image(tmp_path)
    out = tmp_path / "out"
    rc = main(["upscale", str(src), "-o", str(out), "--resampler", "bicubic", "-q", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


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
    assert load_backend(path, device="cpu").providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="CUDAExecutionProvider"):
            load_backend(path, device="cuda")
    else:
        assert load_backend(path, device="cuda").providers[0] == "CUDAExecutionProvider"
    with pytest.raises(ValueError, match="--precision bf16 applies to torch models only"):
        load_backend(path, precision="bf16")
    with pytest.raises(ValueError, match="--device mps has no ONNX Runtime equivalent"):
        load_backend(path, device="mps")
    assert load_backend(path, device="cpu", precision="fp32").scale == 2  # what evaluate.py passes


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_inputs_with_one_output_name(tmp_path: Path, capsys, overwrite: bool) -> None:
    """a/x.png and b/x.png both map to out/x.png: the second used to be 'skipped (exists)' with exit 0, or with
    --overwrite to silently replace the first one's result."""
    import cv2

    from paragonsr.cli import main

    for name, value in (("a", 40), ("b", 200)):
        (tmp_path / name).mkdir()
        assert cv2.imwrite(str(tmp_path / name / "x.png"), np.full((6, 8), value, np.uint8))
    out = tmp_path / "out"
    args = ["upscale", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--resampler", "nearest"]
    rc = main([*args, "-q", *(["--overwrite"] if overwrite else [])])
    err = capsys.readouterr().err
    assert rc == 1
    assert "is already the result of" in err and str(tmp_path / "b" / "x.png") in err
    result = cv2.imread(str(out / "x.png"), cv2.IMREAD_UNCHANGED)
    assert result.shape == (12, 16) and (result == 40).all()  # the first input's result survives


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
    res = export_release(model, tmp_path, "m", [("img", smooth)], calib_images=black, options=opts, log=str)
    assert res.refused and "int8" not in res.artifacts
    assert not stale.exists()


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


def test_jpeg_with_trailing_data_is_not_called_truncated(tmp_path: Path) -> None:
    """Motion photos append an MP4 after the JPEG's EOI; its bytes may contain FF DA (start-of-scan). The old
    check (last EOI before last SOS anywhere in the file) rejected such photos as truncated."""
    import cv2

    from paragonsr.infer.image_io import ImageReadError

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    path = tmp_path / "motion.jpg"
    path.write_bytes(jpg + b"\x00\x00\x00\x18ftypmp42" + rng.bytes(64) + b"\xff\xda\x00\x0c" + rng.bytes(32))
    img, info = read_image(path)
    assert img.shape == (16, 24, 3) and info.format == "jpeg"
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) - 40])  # a real truncation is still caught
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_recorded_scale_used_when_the_file_has_no_arch_kwargs(tmp_path: Path) -> None:
    """A ParagonSR2 built directly (no build_arch: no arch name/kwargs in the metadata) records scale 2; loading
    it with --arch used to build the default x4 model, into which the scale-independent weights fit silently."""
    import torch

    from paragonsr.archs.paragonsr2 import ParagonSR2
    from paragonsr.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = ParagonSR2(scale=2, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0)
    path = save_model(tmp_path / "plain.safetensors", model)
    loaded = load_model(path, arch="paragonsr2", num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0)
    assert loaded.scale == 2
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert (
        load_model(
            path, arch="paragonsr2", scale=3, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0
        ).scale
        == 3
    )


@pytest.mark.parametrize("gray_mode", ["per_channel", "y"])
def test_rgb_into_one_to_three_channel_model(gray_mode: str) -> None:
    """RGB(A) into a 1 -> 3 model used to stack three 3-channel outputs (9/10 channels: unwritable)."""
    import torch
    import torch.nn.functional as F

    from paragonsr.infer.backends import TorchBackend
    from paragonsr.infer.upscale import LUMA, upscale_image

    class Colourise(torch.nn.Module):  # known answer: nearest x2 of the luma, times (1, 0.5, 0.25)
        scale, in_ch, out_ch = 2, 1, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            up = F.interpolate(x, scale_factor=2, mode="nearest")
            return up * torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)

    rgba = np.random.default_rng(0).random((6, 5, 4), dtype=np.float32)
    rgba[..., 3] = 1.0
    out, info = upscale_image(rgba, None, TorchBackend(Colourise(), "cpu", "fp32"), gray_mode=gray_mode)
    assert out.shape == (12, 10, 4) and info.channels == 4
    luma = np.kron(rgba[..., :3] @ np.array(LUMA, np.float32), np.ones((2, 2), np.float32))
    np.testing.assert_allclose(out[..., :3], luma[..., None] * np.array([1.0, 0.5, 0.25]), atol=1e-5)


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
    res = export_release(model, tmp_path, "m", [("img", img)], options=opts, log=str)
    assert (
        "fp32" in res.artifacts
        and next(g for g in res.gates if g.name == "int8").extra["psnr_vs_fp32_db"] > 0
    )
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert (card["model"]["in_ch"], card["model"]["out_ch"]) == (in_ch, out_ch)
    assert card["quality"]["psnr_model_db"] > 0 and card["quality"]["psnr_bicubic_db"] > 0
