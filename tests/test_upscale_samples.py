"""8/16-bit images through ``Upscaler`` tile by tile into integer samples (no full-size float image): the same
numbers as the float path rounded afterwards (the previous path), tiled and untiled, torch and ONNX Runtime;
the decoder's integer mode, integer writes, and the row bands that make it possible."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import conv_stack
from paragonsr.infer.backends import Backend, TorchBackend
from paragonsr.infer.upscale import Upscaler, upscale_file
from paragonsr.io.image_io import encode_image, read_image, to_dtype, write_image
from paragonsr.tiling import tiled_forward
from paragonsr.tiling.stitch import IntImage, RowBands
from paragonsr.tiling.tiler import tiled_rows


class _Detail(torch.nn.Module):
    """Nearest x2 plus a small conv stack (receptive-field radius 3 LR px): values near the input, some of them
    pushed past 0 and 1 so the clamp has work to do."""

    scale, in_ch, out_ch = 2, 3, 3

    def __init__(self) -> None:
        super().__init__()
        self.body = conv_stack(seed=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return up * 1.1 - 0.05 + 0.5 * self.body(x)


def _image(h: int, w: int, c: int, dtype: type, seed: int = 0) -> np.ndarray:
    peak = np.iinfo(dtype).max
    rng = np.random.default_rng(seed)
    smooth = cv2.resize(rng.random((h // 4 + 1, w // 4 + 1, c)).astype(np.float32), (w, h))
    return np.round(smooth.reshape(h, w, c) * peak).astype(dtype)


def _float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)


def _onnx_backend(tmp_path: Path) -> Backend:
    from paragonsr.infer.onnx_backend import OnnxBackend

    path = tmp_path / "detail.onnx"
    torch.onnx.export(
        _Detail().eval(), (torch.rand(1, 3, 24, 24),), str(path), dynamo=False, opset_version=17,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}},
    )  # fmt: skip
    return OnnxBackend(path, provider="cpu")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic ONNX exporter, chosen on purpose
@pytest.mark.parametrize("kind", ["torch", "onnx"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("tile", [0, 40])
def test_integer_samples_equal_the_float_path_rounded(
    tmp_path: Path, kind: str, dtype: type, tile: int
) -> None:
    backend = TorchBackend(_Detail(), "cpu", "fp32") if kind == "torch" else _onnx_backend(tmp_path)
    img = _image(70, 93, 3, dtype)
    up = Upscaler(
        backend, tile=tile, overlap=12
    )  # margin 3 = the radius: tiled == untiled up to fp32 rounding
    got, info = up(img)
    assert got.dtype == dtype and got.shape == (140, 186, 3)
    depth = 8 if dtype == np.uint8 else 16
    assert info.bit_depth == depth
    old, _ = up(_float(img))  # the previous path: float in, float out, rounded by the writer
    np.testing.assert_array_equal(got, to_dtype(old, depth))
    whole, _ = Upscaler(backend, tile=0)(_float(img))
    levels = np.abs(got.astype(np.int64) - to_dtype(whole, depth).astype(np.int64)).max()
    assert levels <= (1 if depth == 8 else 257)  # tiled vs untiled: within 1/255
    clipped = (old <= 0).any() and (old >= 1).any()
    assert clipped  # the model overshoots both ends: rounding and clamping were exercised


def test_tiled_integer_path_never_holds_a_full_size_float_image() -> None:
    backend = TorchBackend(_Detail(), "cpu", "fp32")
    img = _image(120, 64, 3, np.uint8, seed=3)
    sizes: list[int] = []
    real = RowBands._alloc

    def alloc(self: RowBands, like: torch.Tensor, width: int, channels: int) -> torch.Tensor:
        buf = real(self, like, width, channels)
        sizes.append(buf.numel())
        return buf

    RowBands._alloc = alloc  # type: ignore[method-assign]
    try:
        got, _ = Upscaler(backend, tile=32, overlap=12)(img)
    finally:
        RowBands._alloc = real  # type: ignore[method-assign]
    assert sizes and max(sizes) <= 3 * (32 * 2) * (64 * 2)  # one band: a tile's height × the output width
    assert max(sizes) < got.size / 3
    np.testing.assert_array_equal(got, to_dtype(Upscaler(backend, tile=32, overlap=12)(_float(img))[0], 8))


def test_gray_into_an_rgb_model_and_16_bit_into_8_bit() -> None:
    backend = TorchBackend(_Detail(), "cpu", "fp32")
    gray = _image(50, 61, 1, np.uint16, seed=1)
    up = Upscaler(backend, tile=32, overlap=12)
    old, _ = up(_float(gray))
    got16, _ = up(gray)
    assert got16.shape == (100, 122, 1) and got16.dtype == np.uint16
    np.testing.assert_array_equal(got16, to_dtype(old, 16))
    got8, _ = up(gray, bit_depth=8)  # e.g. a 16-bit PNG written as JPEG: rounded once, from the float output
    assert got8.dtype == np.uint8
    np.testing.assert_array_equal(got8, to_dtype(old, 8))


def test_what_needs_floats_takes_the_float_path() -> None:
    backend = TorchBackend(_Detail(), "cpu", "fp32")
    up = Upscaler(backend, tile=32, overlap=12)
    rgba = _image(40, 44, 4, np.uint8, seed=2)
    rgba[..., 3] = 255
    rgba[:10, :10, 3] = 0
    out, _ = up(rgba)  # alpha is resampled by MKS2021 on floats: a float result, as from a float input
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, up(_float(rgba))[0])
    rgb = _image(40, 44, 3, np.uint8, seed=2)
    out, info = up(rgb, outscale=3)
    assert out.dtype == np.float32 and out.shape == (120, 132, 3) and (info.height, info.width) == (120, 132)


def test_non_finite_output_is_refused_before_anything_is_returned() -> None:
    class Bad(_Detail):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            y[:, :, -3:, -3:] = float("nan")
            return y

    up = Upscaler(TorchBackend(Bad(), "cpu", "fp32"), tile=32, overlap=12)
    with pytest.raises(ValueError, match="the model output holds NaN values; no image written"):
        up(_image(60, 60, 3, np.uint8))


def test_row_bands_hand_out_every_row_once_in_order() -> None:
    model = conv_stack()
    x = torch.rand(1, 3, 101, 41, generator=torch.Generator().manual_seed(5))
    got: list[tuple[int, int]] = []
    parts: list[torch.Tensor] = []

    def sink(rows: torch.Tensor, r0: int) -> None:
        got.append((r0, rows.shape[2]))
        parts.append(rows.clone())

    assert tiled_rows(model, x, 2, 32, sink, overlap=12) is None
    starts = [r0 for r0, _ in got]
    assert starts[0] == 0 and all(a + n == b for (a, n), b in zip(got, starts[1:], strict=False))
    assert got[-1][0] + got[-1][1] == 202 and len(got) > 2 and max(n for _, n in got) <= 64
    with torch.no_grad():
        np.testing.assert_array_equal(torch.cat(parts, 2).numpy(), tiled_forward(model, x, 2, 32, 12).numpy())
        assert float((torch.cat(parts, 2) - model(x)).abs().max()) <= 1e-5


def test_int_image_reads_like_the_decoder() -> None:
    img = _image(9, 7, 1, np.uint8)
    t = IntImage(img, channels=3).crop(2, 6, 1, 5)
    assert t.shape == (1, 3, 4, 4) and t.dtype == torch.float32
    np.testing.assert_array_equal(t[0, 2].numpy(), _float(img)[2:6, 1:5, 0])
    with pytest.raises(ValueError, match="uint8/uint16"):
        IntImage(img.astype(np.float32))


@pytest.mark.parametrize(
    ("channels", "dtype"), [(3, np.uint8), (4, np.uint8), (1, np.uint16), (3, np.uint16)]
)
def test_integer_read_is_the_float_read_before_scaling(tmp_path: Path, channels: int, dtype: type) -> None:
    img = _image(13, 17, channels, dtype, seed=channels)
    path = tmp_path / "a.png"
    write_image(path, img, bit_depth=8 if dtype == np.uint8 else 16)
    raw, info = read_image(path, integer=True)
    flt, finfo = read_image(path)
    assert raw.dtype == dtype and info == finfo
    np.testing.assert_array_equal(raw, img)  # RGB(A) order, as written
    np.testing.assert_array_equal(_float(raw), flt)


def test_integer_writes_equal_float_writes_and_leave_the_array_alone(tmp_path: Path) -> None:
    img = _image(20, 30, 3, np.uint8)
    before = img.copy()
    for fmt in ("png", "jpeg", "webp", "bmp", "tiff"):
        assert encode_image(img, fmt) == encode_image(_float(img), fmt), fmt
        np.testing.assert_array_equal(img, before)  # not consumed: never reordered in place
    assert encode_image(img.copy(), "png", consume=True) == encode_image(img, "png")
    img16 = _image(20, 30, 3, np.uint16)
    assert encode_image(img16, "png", 16) == encode_image(_float(img16), "png", 16)
    assert encode_image(img16, "jpeg", 16) == encode_image(to_dtype(img16, 8), "jpeg")


def test_to_dtype_converts_samples_with_rounding() -> None:
    v = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(to_dtype(v, 8), np.floor(v.astype(np.float64) * 255 / 65535 + 0.5))
    u = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_dtype(u, 16), u.astype(np.uint16) * 257)
    assert to_dtype(u, 8) is u
    np.testing.assert_array_equal(to_dtype(u, 32), u.astype(np.float32) / np.float32(255))


def test_upscale_file_writes_what_the_float_path_wrote(tmp_path: Path) -> None:
    backend = TorchBackend(_Detail(), "cpu", "fp32")
    up = Upscaler(backend, tile=32, overlap=12)
    for name, dtype in (("a.png", np.uint8), ("b.png", np.uint16)):
        src = tmp_path / name
        write_image(src, _image(45, 38, 3, dtype), bit_depth=8 if dtype == np.uint8 else 16)
        upscale_file(src, tmp_path / f"new_{name}", up)
        img, info = read_image(src)  # the previous path: float in, float out, rounded by the writer
        old, out_info = up(img, info)
        write_image(tmp_path / f"old_{name}", old, out_info)
        assert (tmp_path / f"new_{name}").read_bytes() == (tmp_path / f"old_{name}").read_bytes()
