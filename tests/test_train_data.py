"""Datasets, crops/augmentation, the resumable rank-aware sampler and too-small images."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import imread, load_photo_crop
from paragonsr.data.datasets import OTFDataset, PairedImageDataset, ResumableSampler, gt_paths
from paragonsr.data.transforms import (
    augment,
    imread_rgb,
    paired_random_crop,
    random_crop,
    texture_score,
    textured_crop,
)


def _write(path: Path, img01: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (img01[:, :, ::-1] * 255).round().astype(np.uint8))


@pytest.fixture(scope="module")
def pair_root(tmp_path_factory: pytest.TempPathFactory, photo_paths: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    for i, p in enumerate(photo_paths[4:]):  # waterfall, grass, dandelion, sunlit grass
        h, w = imread(str(p)).shape[:2]
        gt = load_photo_crop(p, 64, h // 2 - 32, w // 2 - 32)  # textured centre
        lq = cv2.resize(gt, (32, 32), interpolation=cv2.INTER_AREA)
        sub = "a" if i < 2 else "b"
        _write(root / f"gt_{sub}" / f"img{i}.png", gt)
        _write(root / f"lq_{sub}" / f"img{i}x2.png", lq)
    return root


def test_paired_crop_is_aligned(pair_root: Path) -> None:
    ds = PairedImageDataset([str(pair_root / "gt_a"), str(pair_root / "gt_b")],
                            [str(pair_root / "lq_a"), str(pair_root / "lq_b")], scale=2, gt_size=32,
                            filename_tmpl="{}x2", seed=3)  # fmt: skip
    assert len(ds) == 4 and ds.lq_paths[2].name == "img2x2.png"
    item = ds[(0, 1)]
    assert item["gt"].shape == (3, 32, 32) and item["lq"].shape == (3, 16, 16)
    # the LQ crop is the area-downscale of the GT crop (up to 8-bit rounding): pairs stay aligned under
    # crops, flips and transposes
    down = torch.nn.functional.avg_pool2d(item["gt"][None], 2)[0]
    assert (down - item["lq"]).abs().mean() < 0.01
    shifted = torch.nn.functional.avg_pool2d(torch.roll(item["gt"], 2, dims=2)[None], 2)[0]
    assert (shifted - item["lq"]).abs().mean() > 0.02
    # a sample is a pure function of (seed, epoch, index)
    assert torch.equal(ds[(0, 1)]["gt"], item["gt"]) and not torch.equal(ds[(1, 1)]["gt"], item["gt"])


def test_paired_validation_and_missing_lq(pair_root: Path, tmp_path: Path) -> None:
    ds = PairedImageDataset(str(pair_root / "gt_a"), str(pair_root / "lq_a"), scale=2, phase="val",
                            filename_tmpl="{}x2")  # fmt: skip
    item = ds[0]
    assert item["gt"].shape == (3, 64, 64) and item["lq"].shape == (3, 32, 32)
    with pytest.raises(FileNotFoundError, match=r"no LQ image for .*img0\.png"):
        PairedImageDataset(str(pair_root / "gt_a"), str(pair_root / "lq_a"), scale=2)
    with pytest.raises(ValueError, match="2 roots but dataroot_lq has 1"):
        PairedImageDataset(
            [str(pair_root / "gt_a"), str(pair_root / "gt_b")], str(pair_root / "lq_a"), scale=2
        )


def test_meta_info_and_several_roots(pair_root: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.txt"
    meta.write_text("img1.png (64,64,3)\n\n# comment\n")
    paths = gt_paths([str(pair_root / "gt_a"), str(pair_root / "gt_b")], [str(meta), str(meta)])
    assert [p.name for p in paths] == ["img1.png", "img1.png"]
    assert len(gt_paths([str(pair_root / "gt_a"), str(pair_root / "gt_b")])) == 4
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        gt_paths(str(tmp_path / "nope"))


def test_augment_and_crop_helpers() -> None:
    rng = np.random.default_rng(0)
    img = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    views = {augment([img], np.random.default_rng(s))[0].tobytes() for s in range(64)}
    assert len(views) == 8  # the 8 dihedral views, nothing else
    gt = np.zeros((40, 40, 3), np.float32)
    with pytest.raises(ValueError, match="multiple of scale"):
        paired_random_crop(gt, gt[:20, :20], 15, 2, rng)
    with pytest.raises(ValueError, match="wrong scale or pair"):
        paired_random_crop(gt[:30, :30], gt[:20, :20], 16, 2, rng)


def test_textured_crop_favours_texture_and_keeps_uniform_draws_at_one() -> None:
    img = np.full((64, 128, 3), 0.5, np.float32)  # left half flat, right half noise
    img[:, 64:] = np.random.default_rng(1).random((64, 64, 3))
    for seed in range(5):  # candidates=1 is random_crop itself: same draws, same crop, same following draws
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        assert np.array_equal(textured_crop(img, 32, r1, 1), random_crop(img, 32, r2))
        assert r1.integers(1 << 30) == r2.integers(1 << 30)

    def flat_share(candidates: int) -> float:
        crops = [textured_crop(img, 32, np.random.default_rng(s), candidates) for s in range(200)]
        return float(np.mean([texture_score(c) == 0.0 for c in crops]))

    assert 0.2 < flat_share(1) < 0.5  # uniform: a crop starting at x <= 32 of 0..96 lies in the flat half
    assert flat_share(8) == 0.0  # all 8 candidates flat: p = 0.34**8
    assert texture_score(img[:, :64]) == 0.0 and texture_score(img[:, 64:]) > 0.1
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        textured_crop(img, 32, np.random.default_rng(0), 0)


def test_crop_candidates_option_reaches_the_dataset(tmp_path: Path, photo_crop: np.ndarray) -> None:
    from paragonsr.data.build import build_dataset
    from paragonsr.train.option_io import parse_options

    _write(tmp_path / "gt" / "x.png", photo_crop)

    def opt(n: int) -> object:
        train = {"type": "OTFDataset", "degradation": "bicubic", "dataroot_gt": str(tmp_path / "gt"), "gt_size": 32,
                 "batch_size_per_gpu": 1, "crop_candidates": n}  # fmt: skip
        return parse_options({"name": "c", "scale": 2, "datasets": {"train": train},
                              "network_g": {"type": "paragonsr2_nano"},
                              "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}}})  # fmt: skip

    ds = build_dataset(opt(4), "train", 0)  # type: ignore[arg-type]
    assert isinstance(ds, OTFDataset) and ds.crop_candidates == 4
    with pytest.raises(ValueError, match="crop_candidates"):
        opt(0)


def test_small_images_pad_or_skip(tmp_path: Path, photo_crop: np.ndarray) -> None:
    _write(tmp_path / "gt" / "a_small.png", photo_crop[:20, :24])
    _write(tmp_path / "gt" / "b_big.png", photo_crop[:64, :64])

    def down(gt: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"lq": cv2.resize(gt, (gt.shape[1] // 2, gt.shape[0] // 2), interpolation=cv2.INTER_AREA)}

    pad = OTFDataset(str(tmp_path / "gt"), 2, down, gt_size=32, small_image="pad")
    with pytest.warns(
        UserWarning, match=r"a_small\.png: 24x20 is smaller than the 32px crop; reflect-padded"
    ):
        item = pad[0]
    assert item["gt"].shape == (3, 32, 32) and item["gt_path"].endswith("a_small.png")
    skip = OTFDataset(str(tmp_path / "gt"), 2, down, gt_size=32, small_image="skip")
    with pytest.warns(UserWarning, match="skipped"):
        item = skip[0]
    assert item["gt_path"].endswith("b_big.png") and item["lq"].shape == (3, 16, 16)


def test_otf_with_registered_pipeline(tmp_path: Path, photo_crop: np.ndarray) -> None:
    from paragonsr.degrade import build_degradation

    _write(tmp_path / "gt" / "x.png", photo_crop)
    ds = OTFDataset(str(tmp_path / "gt"), 2, build_degradation("realesrgan", {}, 2), gt_size=48, seed=1)
    a, b = ds[(0, 0)], ds[(0, 0)]
    assert a["lq"].shape == (3, 24, 24) and a["gt_usm"].shape == (3, 48, 48)
    assert torch.equal(a["lq"], b["lq"])  # per-sample generator: identical bytes on every call
    assert not torch.equal(ds[(1, 0)]["lq"], a["lq"])


def test_sampler_ranks_and_resume() -> None:
    full = list(ResumableSampler(10, 1, 0, True, seed=5, ratio=2))
    assert sorted(i for _, i in full) == sorted(list(range(10)) * 2)
    r0, r1 = list(ResumableSampler(10, 2, 0, seed=5)), list(ResumableSampler(10, 2, 1, seed=5))
    assert len(r0) == len(r1) == 5 and not set(r0) & set(r1)
    s = ResumableSampler(10, 1, 0, seed=5)
    s.set_epoch(3)
    epoch3 = list(s)
    s.set_epoch(3, skip=4)
    assert list(s) == epoch3[4:] and len(s) == 6 and all(e == 3 for e, _ in epoch3)
    s.set_epoch(4)
    assert list(s) != epoch3


def test_imread_gray_alpha_16bit(tmp_path: Path) -> None:
    gray = np.full((8, 8), 128, np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGR(A)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    deep = np.full((8, 8, 3), 200, np.uint16)  # a dark 16-bit image (max < 256) is still 16-bit
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    assert imread_rgb(tmp_path / "g.png").shape == (8, 8, 3)
    assert np.allclose(imread_rgb(tmp_path / "a.png")[0, 0], [1, 0, 0])
    assert np.allclose(imread_rgb(tmp_path / "d.png"), 200 / 65535)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"bad\.png"):
        imread_rgb(tmp_path / "bad.png")
    warnings.simplefilter("ignore")


def test_enlarged_epoch_draws_distinct_samples_for_repeats() -> None:
    from paragonsr.data.datasets import ResumableSampler

    s = ResumableSampler(10, 1, 0, True, seed=5, ratio=3)
    keys = list(s)
    assert len(keys) == 30 and len(set(keys)) == 30  # each repeat has its own per-sample RNG key
    s.set_epoch(1)
    assert not set(keys) & set(s)  # and no key is reused by the next epoch


@pytest.mark.parametrize("phase", ["train", "val"])
def test_paired_dataset_rejects_wrong_scale_pairs(tmp_path: Path, phase: str) -> None:
    from paragonsr.data.datasets import PairedImageDataset

    for d in ("gt", "lq"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), (rng.random((40, 40, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "lq" / "a.png"), (rng.random((10, 10, 3)) * 255).astype(np.uint8))  # a x4 LQ
    gt_size = 16 if phase == "train" else None
    ds = PairedImageDataset(str(tmp_path / "gt"), str(tmp_path / "lq"), 2, gt_size=gt_size, phase=phase)
    with pytest.raises(ValueError, match=r"a\.png: GT 40x40 is not x2 of LQ 10x10 \(expected 20x20\)"):
        ds[0]
    # an odd GT whose LQ was floor-downscaled (41 -> 20) is still a valid pair
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), (rng.random((41, 41, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "lq" / "a.png"), (rng.random((20, 20, 3)) * 255).astype(np.uint8))
    item = ds[0]
    assert item["gt"].shape[-1] == 2 * item["lq"].shape[-1]


def test_training_reader_applies_exif_orientation_like_degrade(tmp_path: Path) -> None:
    from PIL import Image

    from paragonsr.data.transforms import imread_rgb
    from paragonsr.io.image_io import read_image

    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :8] = 255  # white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, quality=100, exif=exif)
    img = imread_rgb(path)
    assert img.shape == (32, 16, 3)  # displayed orientation, as paragonsr degrade/upscale read it
    np.testing.assert_array_equal(img, read_image(path)[0])
    assert img[:8].mean() > 0.9 and img[-8:].mean() < 0.1  # the band is now on top
