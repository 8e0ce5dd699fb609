"""Animated GIF / APNG / WebP: every frame upscaled, timing, loop and transparency kept; --first-frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from paragonsr.archs import build_arch
from paragonsr.checkpoint import save_model
from paragonsr.cli import main

DURATIONS = [80, 150, 240]
PALETTE = np.array([[230, 40, 30], [20, 160, 60], [40, 60, 220], [250, 220, 40], [90, 90, 90]], np.uint8)


def _frames(alpha: bool) -> list[np.ndarray]:
    """Three distinct 12x10 RGBA frames from a 5-colour palette (a GIF stores them exactly)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(3):
        f = np.concatenate([PALETTE[rng.integers(0, 5, (12, 10))], np.full((12, 10, 1), 255, np.uint8)], 2)
        f[i * 3 : i * 3 + 4, 2:7, :3] = PALETTE[i]  # a block that moves
        if alpha:
            f[:3, :4, 3] = 0
            f[:3, :4, :3] = 0
        out.append(f)
    return out


def _save(path: Path, frames: list[np.ndarray], loop: int = 3) -> None:
    images = [Image.fromarray(f) for f in frames]
    per_format: dict[str, dict[str, Any]] = {"gif": {"disposal": 2}, "png": {}, "webp": {"lossless": True}}
    opts = per_format[path.suffix[1:]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=DURATIONS, loop=loop, **opts)


def _read(path: Path) -> tuple[list[np.ndarray], list[int], int | None]:
    with Image.open(path) as im:
        frames, durations = [], []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGBA")).copy())  # (WebP: duration known once decoded)
            durations.append(int(im.info.get("duration", 0)))
        return frames, durations, im.info.get("loop")


def _upscale(*args: str) -> int:
    return main(["upscale", *args, "-q"])


@pytest.mark.parametrize("ext", ["gif", "png", "webp"])
def test_every_frame_upscaled_with_timing_loop_and_alpha(tmp_path: Path, ext: str) -> None:
    frames = _frames(alpha=True)
    src = tmp_path / "in" / f"anim.{ext}"
    src.parent.mkdir()
    _save(src, frames)
    out = tmp_path / "out"
    extra = ["--quality", "100"] if ext == "webp" else []  # lossless WebP
    assert _upscale(str(src), "-o", str(out), "--resampler", "nearest", "--scale", "2", *extra) == 0
    got, durations, loop = _read(out / f"anim.{ext}")
    assert len(got) == 3 and durations == DURATIONS and loop == 3
    for f, g in zip(frames, got):
        want = f.repeat(2, axis=0).repeat(2, axis=1)  # nearest x2 of the frame itself
        assert g.shape == (24, 20, 4)
        visible = want[..., 3] > 0
        assert np.array_equal(g[..., 3], want[..., 3]) and np.array_equal(g[visible], want[visible])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    model = build_arch("compact", num_feat=4, num_conv=1, upscale=2)
    return save_model(tmp_path_factory.mktemp("model") / "tiny.safetensors", model)


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_model_frames_equal_single_image_upscales(tmp_path: Path, tiny_model: Path, ext: str) -> None:
    frames = _frames(alpha=False)
    src = tmp_path / "in"
    src.mkdir()
    _save(src / f"anim.{ext}", frames, loop=0)
    for i, f in enumerate(frames):  # the same frames as still PNGs, upscaled one by one
        Image.fromarray(f[..., :3]).save(src / f"still{i}.png")
    out = tmp_path / "out"
    assert _upscale(str(src), "-o", str(out), "-m", str(tiny_model), "--tile", "0") == 0
    got, durations, loop = _read(out / f"anim.{ext}")
    assert len(got) == 3 and durations == DURATIONS and loop == 0 and got[0].shape == (24, 20, 4)
    for i, g in enumerate(got):
        still = np.asarray(Image.open(out / f"still{i}.png").convert("RGBA")).astype(int)
        err = np.abs(g.astype(int) - still)
        if ext == "png":  # APNG is lossless: identical to the still result
            assert err.max() == 0
        else:  # GIF: a 256-colour palette per frame (median cut + dithering)
            assert err.mean() < 4.0 and err[..., 3].max() == 0


def test_first_frame_and_folder_holding_only_a_gif(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = _frames(alpha=False)
    folder = tmp_path / "gifs"
    folder.mkdir()
    _save(folder / "only.gif", frames)
    out = tmp_path / "out"
    rc = _upscale(str(folder), "-o", str(out), "--resampler", "nearest", "--scale", "2", "--first-frame")
    assert rc == 0 and "no images" not in capsys.readouterr().err
    got, _, _ = _read(out / "only.gif")
    assert len(got) == 1 and np.array_equal(got[0], frames[0].repeat(2, 0).repeat(2, 1))


def test_animation_into_a_still_format_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "anim.gif"
    _save(src, _frames(alpha=False))
    rc = _upscale(str(src), "-o", str(tmp_path / "o"), "--resampler", "nearest", "--ext", "jpg")
    assert rc == 1
    assert (
        f"error: {src}: is an animation (3 frames) but .jpg files hold one image" in capsys.readouterr().err
    )
    assert not (tmp_path / "o" / "anim.jpg").exists()


def test_animation_with_a_wide_gamut_profile_is_converted(tmp_path: Path) -> None:
    from icc_helpers import expected_srgb, rgb_profile
    from paragonsr.io.animation import read_animation

    frames = _frames(alpha=False)
    path = tmp_path / "p3.png"
    images = [Image.fromarray(f[..., :3]) for f in frames]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=DURATIONS, icc_profile=rgb_profile("p3")
    )
    anim = read_animation(path)
    assert anim is not None and anim.info.color_profile == "test p3" and len(anim.frames) == 3
    for i, f in enumerate(frames):
        np.testing.assert_allclose(anim.frame(i), expected_srgb(f[..., :3] / 255.0, "p3"), atol=5e-4)
    assert read_animation(tmp_path / "missing.gif") is None  # the still reader reports missing/bad files
