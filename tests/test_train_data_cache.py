"""The decoded-image cache: samples bit-identical to decoding every image to float32 first, LRU byte budget,
re-read of changed files, and the same batches whatever the loader worker count."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from conftest import imread
from paragonsr.data.cache import ImageCache, imread_raw, to_float
from paragonsr.data.channels import imread_channels
from paragonsr.data.datasets import OTFDataset, PairedImageDataset, ResumableSampler, sample_rng
from paragonsr.data.transforms import augment, ensure_size, imread_rgb, paired_random_crop, random_crop


def _down(gt: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    # a degradation that also draws from the sample generator (noise), so the RNG stream must line up too
    lq: np.ndarray = cv2.resize(gt, (gt.shape[1] // 2, gt.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return {"lq": lq + rng.normal(0, 0.01, lq.shape).astype(np.float32)}


def _reference_otf(path: Path, key: tuple[int, int], seed: int, size: int) -> dict[str, torch.Tensor]:
    """The sample as computed without a cache: whole image to float32, then crop, flips, degradation."""
    rng, _ = sample_rng(seed, key)
    gt = ensure_size(imread_rgb(path), size, "pad", str(path))
    assert gt is not None  # "pad" never skips
    gt = augment([random_crop(gt, size, rng)], rng)[0]
    lq = np.clip(_down(gt, rng)["lq"], 0, 1).astype(np.float32)
    return {
        "gt": torch.from_numpy(gt.transpose(2, 0, 1).copy()),
        "lq": torch.from_numpy(lq.transpose(2, 0, 1).copy()),
    }


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory, photo_paths: list[Path]) -> Path:
    """8-bit JPEG (a real photo), EXIF-rotated JPEG, 16-bit PNG, gray PNG, RGBA PNG and a too-small image."""
    root = tmp_path_factory.mktemp("cache")
    photo = imread(str(photo_paths[0]))[:300, :400]
    cv2.imwrite(str(root / "a_photo.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(photo[:200, :120, ::-1]).save(root / "b_exif.jpg", exif=exif, quality=90)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "c_deep.png"), rng.integers(0, 65536, (90, 70, 3), dtype=np.uint16))
    cv2.imwrite(str(root / "d_gray.png"), photo[:80, :96, 1])
    rgba = np.concatenate([photo[:64, :64], rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)], axis=2)
    cv2.imwrite(str(root / "e_rgba.png"), rgba)
    cv2.imwrite(str(root / "f_small.png"), photo[:20, :30])
    return root


def test_imread_raw_matches_the_float_read(image_root: Path) -> None:
    for p in sorted(image_root.iterdir()):
        raw = imread_raw(p)
        assert raw.dtype == (np.uint16 if p.stem == "c_deep" else np.uint8), p.name
        assert np.array_equal(to_float(raw), imread_rgb(p)), p.name
        rgba = imread_raw(p, alpha=True)
        assert rgba.shape[2] == 4 and np.array_equal(to_float(rgba), imread_channels(p, alpha=True)), p.name
    assert imread_raw(image_root / "b_exif.jpg").shape == (120, 200, 3)  # orientation applied


@pytest.mark.parametrize("cache", [True, False])
def test_otf_samples_are_bit_identical_to_the_float_path(image_root: Path, cache: bool) -> None:
    ds = OTFDataset(str(image_root), 2, _down, gt_size=32, seed=7, cache_images=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small image warns that it is padded
        for key in [(e, i) for e in range(3) for i in range(len(ds))]:
            got, ref = ds[key], _reference_otf(ds.paths[key[1]], key, 7, 32)
            assert torch.equal(got["gt"], ref["gt"]) and torch.equal(got["lq"], ref["lq"]), key
    assert (len(ds.cache), ds.cache.misses) == ((6, 6) if cache else (0, 0))


@pytest.mark.parametrize("channels", [(1, 1), (4, 4), (3, 4)])
def test_otf_other_channel_counts_match_the_uncached_path(
    image_root: Path, channels: tuple[int, int]
) -> None:
    on = OTFDataset(str(image_root), 2, _down, gt_size=32, seed=5, channels=channels)
    off = OTFDataset(str(image_root), 2, _down, gt_size=32, seed=5, channels=channels, cache_images=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in [(e, i) for e in range(2) for i in range(len(on))]:
            a, b = on[key], off[key]
            assert a["lq"].shape[0] == channels[0] and a["gt"].shape[0] == channels[1]
            assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"]), key


def test_paired_samples_are_bit_identical_to_the_float_path(image_root: Path, tmp_path: Path) -> None:
    gt = imread_rgb(image_root / "a_photo.jpg")
    (tmp_path / "gt").mkdir()
    (tmp_path / "lq").mkdir()
    cv2.imwrite(str(tmp_path / "gt" / "x.png"), (gt[:, :, ::-1] * 255).round().astype(np.uint8))
    lq = cv2.resize(gt, (gt.shape[1] // 2, gt.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "lq" / "x.png"), (lq[:, :, ::-1] * 255).round().astype(np.uint8))
    ds = PairedImageDataset(str(tmp_path / "gt"), str(tmp_path / "lq"), 2, gt_size=48, seed=3)
    g, q = imread_rgb(tmp_path / "gt" / "x.png"), imread_rgb(tmp_path / "lq" / "x.png")
    for key in [(0, 0), (1, 0), (5, 0)]:
        rng, _ = sample_rng(3, key)
        rg, rq = augment(list(paired_random_crop(g, q, 48, 2, rng)), rng)
        item = ds[key]
        assert np.array_equal(item["gt"].numpy().transpose(1, 2, 0), rg)
        assert np.array_equal(item["lq"].numpy().transpose(1, 2, 0), rq)
    val = PairedImageDataset(str(tmp_path / "gt"), str(tmp_path / "lq"), 2, phase="val")[0]
    assert np.array_equal(val["gt"].numpy().transpose(1, 2, 0), g) and len(ds.cache) == 2


def test_cache_budget_lru_and_changed_files(image_root: Path, tmp_path: Path) -> None:
    a, b, c = (image_root / n for n in ("d_gray.png", "e_rgba.png", "f_small.png"))
    sizes = {p: imread_raw(p).nbytes for p in (a, b, c)}  # 80*96*3, 64*64*3, 20*30*3 bytes
    cache = ImageCache(sizes[a] + sizes[b])
    x = cache.get(a)
    assert not x.flags.writeable and cache.get(a) is x and (cache.hits, cache.misses) == (1, 1)
    cache.get(b)
    cache.get(a)  # a is now the most recently used
    cache.get(c)  # over budget: b (least recently used) goes
    assert a in cache and c in cache and b not in cache and cache.nbytes == sizes[a] + sizes[c]
    assert ImageCache(sizes[c] - 1).get(c).shape == (20, 30, 3)  # larger than the budget: read, not kept
    # a file rewritten on disk is read again
    p = tmp_path / "w.png"
    cv2.imwrite(str(p), np.zeros((8, 8, 3), np.uint8))
    assert cache.get(p).max() == 0
    cv2.imwrite(str(p), np.full((8, 9, 3), 255, np.uint8))
    assert cache.get(p).shape == (8, 9, 3) and cache.get(p).min() == 255
    # fill() stops at the budget without evicting
    filler = ImageCache(sizes[a] + sizes[b])
    assert filler.fill([a, b, c]) == 2 and c not in filler


def test_same_batches_whatever_the_worker_count(image_root: Path) -> None:
    ds = OTFDataset(str(image_root), 2, _down, gt_size=16, seed=11)
    ds.fill_cache()  # as the trainer does before forking the workers

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = ResumableSampler(len(ds), seed=11, ratio=2)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers, drop_last=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [torch.cat([b["gt"].flatten(), b["lq"].flatten()]) for b in loader]

    one, two = batches(0), batches(2)
    assert len(one) == 3 and all(torch.equal(x, y) for x, y in zip(one, two, strict=True))


def test_trainer_fills_the_cache_before_forking_workers(image_root: Path) -> None:
    from paragonsr.data.build import build_dataset, build_train_loader
    from paragonsr.train.option_io import parse_options

    def opt(workers: int, cache: bool) -> Any:
        train = {"type": "OTFDataset", "degradation": "bicubic", "dataroot_gt": str(image_root), "gt_size": 16,
                 "batch_size_per_gpu": 2, "num_worker_per_gpu": workers, "cache_images": cache}  # fmt: skip
        return parse_options({"name": "c", "scale": 2, "datasets": {"train": train},
                              "network_g": {"type": "paragonsr2_nano"},
                              "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}}})  # fmt: skip

    for workers, cache, cached in ((1, True, 6), (0, True, 0), (1, False, 0)):
        o = opt(workers, cache)
        ds = build_dataset(o, "train", 0)
        build_train_loader(o, ds, 0)
        assert len(ds.cache) == cached, (workers, cache)
