"""Gray + alpha (PNG colour type 4) stays gray + alpha: read, upscale, write, and through the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from conftest import imdecode
from paragonsr.archs import build_arch
from paragonsr.cli import main
from paragonsr.infer.backends import TorchBackend
from paragonsr.infer.upscale import Upscaler
from paragonsr.io.image_io import decode_image, encode_image, read_image, to_rgb, write_image
from paragonsr.ops.resample import resize


def _la(h: int = 12, w: int = 17, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 2), dtype=np.uint8)


def test_pillow_la_png_reads_as_two_channels(tmp_path: Path) -> None:
    la = _la()
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img, info = read_image(tmp_path / "la.png")
    assert img.shape == (12, 17, 2) and info.channels == 2 and info.is_gray and info.has_alpha
    assert np.array_equal(np.round(img * 255).astype(np.uint8), la)
    # an RGBA file whose colours happen to be grey stays RGBA: only the PNG colour type decides
    Image.fromarray(la[..., [0, 0, 0, 1]], "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png")[0].shape == (12, 17, 4)


def test_gray_alpha_png_written_at_8_and_16_bits_round_trips_exactly(tmp_path: Path) -> None:
    la8 = _la(seed=1)
    data = encode_image(la8.astype(np.float32) / 255, "png", bit_depth=8)
    assert data[25] == 4 and data[24] == 8  # IHDR: colour type 4 (gray + alpha), 8 bits
    with Image.open(io.BytesIO(data)) as im:  # an independent decoder agrees
        assert im.mode == "LA" and np.array_equal(np.asarray(im), la8)

    la16 = np.random.default_rng(2).integers(0, 65536, (9, 13, 2), dtype=np.uint16)
    write_image(tmp_path / "deep.png", la16.astype(np.float32) / 65535, bit_depth=16)
    raw = (tmp_path / "deep.png").read_bytes()
    assert raw[24:26] == bytes([16, 4])
    back, info = decode_image(raw)
    assert info.bit_depth == 16 and back.shape == (9, 13, 2)
    assert np.array_equal(np.round(back * 65535).astype(np.uint16), la16)
    bgra = imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)  # and so does OpenCV
    assert np.array_equal(bgra[..., 0], la16[..., 0]) and np.array_equal(bgra[..., 3], la16[..., 1])


def test_other_formats_get_rgba_or_composited_gray() -> None:
    la = np.dstack([np.full((8, 8), 0.2, np.float32), np.full((8, 8), 0.5, np.float32)])
    jpg = imdecode(np.frombuffer(encode_image(la, "jpeg"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert jpg.shape == (8, 8)  # a gray JPEG, composited over white
    assert abs(int(jpg[4, 4]) - round(255 * (0.2 * 0.5 + 0.5))) <= 1
    tif = imdecode(np.frombuffer(encode_image(la, "tiff"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert tif.shape == (8, 8, 4) and tif[0, 0, 3] == round(0.5 * 255)
    assert to_rgb(la).shape == (8, 8, 3) and np.allclose(to_rgb(la), 0.2)


def test_upscaler_treats_gray_alpha_like_rgba() -> None:
    rng = np.random.default_rng(3)
    gray = rng.random((20, 24, 1), dtype=np.float32)
    alpha = np.clip(rng.random((20, 24, 1), dtype=np.float32) + 0.2, 0, 1)  # all visible: no colour filling
    torch.manual_seed(0)
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2).eval()
    up = Upscaler(TorchBackend(model, device="cpu", precision="fp32"))
    out, _ = up(np.dstack([gray, alpha]))
    assert out.shape == (40, 48, 2)
    gray_only, _ = up(gray)
    assert np.allclose(
        out[..., :1], gray_only, atol=1e-6
    )  # the colour goes through the model like a gray image
    a = resize(torch.from_numpy(alpha).permute(2, 0, 1)[None], size=(40, 48), kernel="magic_sharp_2021")
    assert np.allclose(out[..., 1], a[0, 0].clamp(0, 1).numpy(), atol=1e-6)  # alpha by MKS2021, not the model


def test_cli_keeps_a_gray_alpha_png_gray_alpha(tmp_path: Path) -> None:
    Image.fromarray(_la(16, 20, seed=4), "LA").save(tmp_path / "in.png")
    rc = main(
        ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--resampler", "mks2021", "-q"]
    )
    assert rc == 0
    (result,) = (tmp_path / "out").glob("*.png")
    with Image.open(result) as im:
        assert im.mode == "LA" and im.size == (40, 32)
