"""Embedded ICC profiles: wide-gamut images are converted to sRGB on read, at full precision."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import imread
from icc_helpers import expected_srgb, gray_profile, png_with_iccp, rgb_profile, rgb_to_xyz
from paragonsr.io.color import srgb_profile_bytes, to_srgb
from paragonsr.io.image_io import ImageReadError, decode_image, read_image

COLOURS = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.3, 0.2], [0.5, 0.5, 0.5], [0.2, 0.7, 0.9]]])


def test_pure_p3_red_is_out_of_srgb_gamut_and_clips():
    # Independently of the code under test: P3 red in linear sRGB has R > 1 and negative G, B.
    lin = np.linalg.solve(rgb_to_xyz("srgb"), rgb_to_xyz("p3")) @ [1.0, 0.0, 0.0]
    assert lin[0] == pytest.approx(1.2249, abs=1e-3) and lin[1] < -0.04 and lin[2] < -0.019
    out, name = to_srgb(np.array([[[1.0, 0.0, 0.0]]], np.float32), rgb_profile("p3"))
    assert name == "test p3"
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(("space", "gamma"), [("p3", None), ("adobe", 563 / 256)])
def test_matrix_trc_conversion_matches_primaries_maths_and_littlecms(space: str, gamma: float | None):
    icc = rgb_profile(space, gamma)  # para (sRGB curve) for P3, curv gamma for Adobe RGB
    out, _ = to_srgb(COLOURS.astype(np.float32), icc)
    np.testing.assert_allclose(out, expected_srgb(COLOURS, space, gamma), atol=5e-4)
    assert out[0, 3].tolist() != pytest.approx(COLOURS[0, 3].tolist(), abs=0.01)  # it did change the colour
    # LittleCMS (8-bit) on the same profile agrees within half an 8-bit step.
    u8 = (COLOURS * 255 + 0.5).astype(np.uint8)
    src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    lcms = ImageCms.profileToProfile(Image.fromarray(u8), src, ImageCms.createProfile("sRGB"))
    ours, _ = to_srgb(u8.astype(np.float32) / 255, icc)
    assert np.abs(np.asarray(lcms) / 255.0 - ours).max() <= 0.5 / 255 + 1e-6


def test_sixteen_bit_png_keeps_sixteen_bit_precision(tmp_path: Path):
    ramp = np.linspace(0.0, 1.0, 4096)
    rgb = np.stack([ramp, ramp[::-1], np.full_like(ramp, 0.4)], axis=-1)[None]  # 1 x 4096 x 3
    u16 = np.round(rgb * 65535).astype(np.uint16)
    _, png = cv2.imencode(".png", np.ascontiguousarray(u16[..., ::-1]))
    path = tmp_path / "p3_16bit.png"
    path.write_bytes(png_with_iccp(png.tobytes(), rgb_profile("p3")))
    img, info = read_image(path)
    assert info.bit_depth == 16 and info.color_profile == "test p3"
    np.testing.assert_allclose(img, expected_srgb(u16 / 65535.0, "p3"), atol=5e-4)
    # An 8-bit step anywhere would leave at most 256 levels; the float path keeps thousands.
    assert len(np.unique(img[0, :, 1])) > 3000


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_profile_read_from_every_format(tmp_path: Path, fmt: str):
    patch = np.zeros((16, 16, 3), np.uint8)
    patch[:8], patch[8:] = (153, 77, 51), (51, 179, 230)
    path = tmp_path / f"p3.{fmt.lower()}"
    extra = {"quality": 100} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(patch).save(path, fmt, icc_profile=rgb_profile("p3"), **extra)
    img, info = read_image(path)
    plain = imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1] / 255.0  # decoded without the profile
    assert info.color_profile == "test p3"
    np.testing.assert_allclose(img, expected_srgb(plain, "p3"), atol=5e-4)


def test_srgb_profile_leaves_pixels_alone_and_alpha_untouched():
    rgba = np.random.default_rng(0).random((4, 5, 4)).astype(np.float32)
    same, name = to_srgb(rgba, srgb_profile_bytes())
    assert name is None and same is rgba
    out, name = to_srgb(rgba, rgb_profile("adobe", 563 / 256))
    assert name == "test adobe" and np.array_equal(out[..., 3], rgba[..., 3])


def test_gray_profile_keeps_gray():
    out, _ = to_srgb(np.full((2, 2, 1), 0.5, np.float32), gray_profile(1.0))  # linear gray -> sRGB curve
    assert out.shape == (2, 2, 1)
    np.testing.assert_allclose(out, 1.055 * 0.5 ** (1 / 2.4) - 0.055, atol=1e-6)


def test_damaged_profile_is_one_line_naming_the_file():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buf, "PNG", icc_profile=b"not a profile at all" * 10)
    with pytest.raises(ImageReadError, match=r"^bad\.png: embedded ICC colour profile: not an ICC profile"):
        decode_image(buf.getvalue(), "bad.png")


def test_upscale_writes_converted_untagged_srgb(tmp_path: Path):
    from paragonsr.cli import main

    src = tmp_path / "in" / "wide.png"
    src.parent.mkdir()
    u8 = np.repeat((COLOURS * 255 + 0.5).astype(np.uint8), 3, axis=0)  # 6 x 3 px
    Image.fromarray(u8).save(src, icc_profile=rgb_profile("p3"))
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--resampler", "nearest", "--scale", "2", "-q"]) == 0
    with Image.open(out) as im:
        assert "icc_profile" not in im.info  # untagged = sRGB for every viewer
        got = np.asarray(im)
    want = np.round(expected_srgb(u8 / 255.0, "p3") * 255).astype(np.uint8)
    assert np.abs(got[::2, ::2].astype(int) - want).max() <= 1


def test_profile_of_another_colour_space_is_ignored_like_viewers_do():
    rgb = np.full((2, 2, 3), 0.5, np.float32)
    same, name = to_srgb(rgb, gray_profile(1.0))  # a gray profile on RGB pixels
    assert name is None and same is rgb
    cmyk_header = bytearray(rgb_profile("p3"))
    cmyk_header[16:20] = b"CMYK"  # the decoder already turned CMYK into RGB
    same, name = to_srgb(rgb, bytes(cmyk_header))
    assert name is None and same is rgb
