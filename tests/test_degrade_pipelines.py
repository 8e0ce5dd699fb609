"""Pipelines: sizes, determinism, the Real-ESRGAN option-file keys, p_clean, probability validation, alignment, torch path, pool."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import load_photo_crop
from paragonsr.degrade import PairPool, apply_manifest, build_degradation, collect_realesrgan_opt, ops
from paragonsr.degrade.presets import PRESETS
from paragonsr.degrade.realesrgan import RealESRGANDegradation
from paragonsr.degrade.realesrgan_torch import filter2d_batch, usm_sharpen_t
from paragonsr.degrade.workflows import WorkflowDegradation
from paragonsr.ops import filters

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "degradations"

# The degradation part of a Real-ESRGAN x2 Compact fine-tune option file, verbatim (top level + datasets.train).
REALESRGAN_OPT = """
scale: 2
l1_gt_usm: True
percep_gt_usm: True
gan_gt_usm: False
resize_prob: [0.2, 0.7, 0.1]  # up, down, keep
resize_range: [0.15, 1.5]
gaussian_noise_prob: 0.5
noise_range: [1, 30]
poisson_scale_range: [0.05, 3]
gray_noise_prob: 0.4
jpeg_range: [30, 95]
second_blur_prob: 0.8
resize_prob2: [0.3, 0.4, 0.3]  # up, down, keep
resize_range2: [0.3, 1.2]
gaussian_noise_prob2: 0.5
noise_range2: [1, 25]
poisson_scale_range2: [0.05, 2.5]
gray_noise_prob2: 0.4
jpeg_range2: [30, 95]
gt_size: 256
queue_size: 180
datasets:
  train:
    name: DF2K
    type: RealESRGANDataset
    dataroot_gt: datasets/DF2K
    meta_info: datasets/DF2K/meta_info/meta_info_DF2K.txt
    io_backend:
      type: disk
    blur_kernel_size: 21
    kernel_list: ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']
    kernel_prob: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
    sinc_prob: 0.1
    blur_sigma: [0.2, 3]
    betag_range: [0.5, 4]
    betap_range: [1, 2]
    blur_kernel_size2: 21
    kernel_list2: ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']
    kernel_prob2: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
    sinc_prob2: 0.1
    blur_sigma2: [0.2, 1.5]
    betag_range2: [0.5, 4]
    betap_range2: [1, 2]
    final_sinc_prob: 0.8
    gt_size: 256
    use_hflip: True
    use_rot: False
    use_shuffle: true
    num_worker_per_gpu: 5
    batch_size_per_gpu: 16
    dataset_enlarge_ratio: 1
    prefetch_mode: ~
"""


@pytest.fixture(scope="module")
def odd_img(photo_paths: list[Path]) -> np.ndarray:
    return load_photo_crop(photo_paths[4], 80, 150, 150)[:67, :45]  # a textured crop (waterfall)


@pytest.mark.parametrize("name", ["realesrgan", "workflows", "lrgen", "bicubic", "resize"])
def test_sizes_determinism_and_dtypes(name: str, odd_img: np.ndarray) -> None:
    for scale in (1, 2, 3, 4):
        deg = build_degradation(name, None, scale)
        out = deg(odd_img, np.random.default_rng(7))
        lh, lw = 67 // scale, 45 // scale
        assert out["lq"].shape == (lh, lw, 3) and out["gt"].shape == (lh * scale, lw * scale, 3)
        for v in out.values():
            assert v.dtype == np.float32 and v.min() >= 0 and v.max() <= 1
        again = deg(odd_img, np.random.default_rng(7))
        assert all(out[k].tobytes() == again[k].tobytes() for k in out)
    # 8-bit, 16-bit and gray inputs
    deg = build_degradation(name, None, 2)
    u8 = deg((odd_img * 255).round().astype(np.uint8), np.random.default_rng(1))["lq"]
    u16 = deg((odd_img * 65535).round().astype(np.uint16), np.random.default_rng(1))["lq"]
    assert u8.shape == u16.shape == (33, 22, 3)
    gray = deg(odd_img[:, :, 1], np.random.default_rng(1))
    assert gray["lq"].shape == (33, 22, 1) and gray["gt"].shape == (66, 44, 1)


def test_different_seeds_differ(odd_img: np.ndarray) -> None:
    for name in ("realesrgan", "workflows"):
        deg = build_degradation(name, {"p_clean": 0.0} if name == "workflows" else None, 2)
        a, b = deg(odd_img, np.random.default_rng(1))["lq"], deg(odd_img, np.random.default_rng(2))["lq"]
        assert not np.array_equal(a, b)


def test_realesrgan_option_keys_all_accepted_and_used(photo_paths: list[Path]) -> None:
    full = yaml.safe_load(REALESRGAN_OPT)
    opt = collect_realesrgan_opt(full)
    deg = build_degradation("realesrgan", opt, full["scale"])
    assert isinstance(deg, RealESRGANDegradation)
    train = full["datasets"]["train"]
    for key, value in [*full.items(), *train.items()]:
        if key in deg.opt:
            assert deg.opt[key] == value, key
    assert deg.queue_size == 180 and deg.gt_usm_for == {"l1": True, "percep": True, "gan": False}
    # the dataset section with its loader keys is accepted as is; a typo is not
    build_degradation("realesrgan", {k: v for k, v in train.items()}, 2)
    with pytest.raises(KeyError, match=r"unknown option 'jpeg_rang'\. Did you mean 'jpeg_range'"):
        build_degradation("realesrgan", {"jpeg_rang": [30, 95]}, 2)
    # the shipped config is the same settings
    cfg = yaml.safe_load((CONFIGS / "realesrgan_x2_compact.yml").read_text())
    same = build_degradation("realesrgan", cfg, 2)
    assert isinstance(same, RealESRGANDegradation) and same.opt == deg.opt
    # gt_size crop, the USM'd GT, and the record in Real-ESRGAN's order
    gt = load_photo_crop(photo_paths[4], 300, 42, 42)
    out, rec = apply_manifest(deg, gt, np.random.default_rng(3))
    assert out["lq"].shape == (128, 128, 3) and out["gt"].shape == out["gt_usm"].shape == (256, 256, 3)
    assert np.abs(out["gt_usm"] - out["gt"]).max() > 0.01
    ops_seen = [r["op"] for r in rec]
    assert ops_seen[:4] == ["blur1", "resize1", "noise1", "jpeg"] and ops_seen[-1] == "crop"
    assert ops_seen.index("resize2") < ops_seen.index("noise2") < ops_seen.index("final")
    assert np.array_equal(out["lq"], ops.round8(out["lq"]))  # 8-bit values


@pytest.mark.parametrize("scale", [2, 4])
def test_p_clean_is_a_clean_downscale(scale: int, odd_img: np.ndarray) -> None:
    deg = build_degradation("workflows", {"p_clean": 1.0, "clean_kernel": "lanczos3"}, scale)
    out, rec = apply_manifest(deg, odd_img, np.random.default_rng(0))
    gt = odd_img[: 67 - 67 % scale, : 45 - 45 % scale]
    assert rec == [{"op": "clean", "kernel": "lanczos3"}]
    assert np.array_equal(out["gt"], gt)
    np.testing.assert_array_equal(
        out["lq"], ops.round8(ops.resize(gt, (67 // scale, 45 // scale), "lanczos3"))
    )


def test_workflow_probability_and_op_validation() -> None:
    seq = {"steps": [{"op": "downscale"}]}
    with pytest.raises(ValueError, match=r"sequence 'bad'.*non-negative"):
        build_degradation("workflows", {"predefined_sequences": {"bad": {**seq, "probability": -0.1}}}, 2)
    with pytest.raises(
        KeyError, match=r"sequence 'mine' step 1: unknown op 'jpg'.*Did you mean 'jpeg'.*Valid ops:.*webp"
    ):
        build_degradation(
            "workflows",
            {"predefined_sequences": {"mine": {"steps": [{"op": "downscale"}, {"op": "jpg"}]}}},
            2,
        )
    with pytest.raises(
        KeyError,
        match=r"sequence 'mine' step 0 \(jpeg\): unknown option 'qualty'.*Valid options: quality, subsampling",
    ):
        build_degradation(
            "workflows", {"predefined_sequences": {"mine": {"steps": [{"op": "jpeg", "qualty": 50}]}}}, 2
        )
    with pytest.raises(ValueError, match=r"sequence 'mine' step 0 \(downscale.kernel\).*valid: area"):
        build_degradation(
            "workflows",
            {"predefined_sequences": {"mine": {"steps": [{"op": "downscale", "kernel": "cubicc"}]}}},
            2,
        )
    with pytest.raises(ValueError, match="sum to 0"):
        zero = {n: {"probability": 0} for n in PRESETS}
        build_degradation("workflows", {"predefined_sequences": zero}, 2)
    with pytest.raises(KeyError, match="no steps and is not a preset"):
        build_degradation("workflows", {"predefined_sequences": {"new_one": {"probability": 0.2}}}, 2)
    with pytest.warns(UserWarning, match="sum to 2; normalising"):
        deg = build_degradation(
            "workflows",
            {
                "use_presets": False,
                "predefined_sequences": {"a": {**seq, "probability": 1.5}, "b": {**seq, "probability": 0.5}},
            },
            2,
        )
    assert isinstance(deg, WorkflowDegradation)
    assert deg.sequences["a"]["probability"] == pytest.approx(0.75)
    with warnings.catch_warnings():  # the presets sum to 1 exactly: no warning
        warnings.simplefilter("error")
        build_degradation("workflows", None, 2)
    with pytest.warns(UserWarning, match="misaligns"):
        build_degradation(
            "workflows",
            {
                "use_presets": False,
                "predefined_sequences": {"x": {"steps": [{"op": "lens_distortion", "on": "lq"}]}},
            },
            2,
        )


def test_scene_warps_keep_the_pair_aligned(odd_img: np.ndarray) -> None:
    steps = [{"op": "lens_distortion", "k1": 0.15}, {"op": "downscale", "kernel": "area"}]
    deg = build_degradation(
        "workflows",
        {"p_clean": 0.0, "use_presets": False, "predefined_sequences": {"w": {"steps": steps}}},
        2,
    )
    out = deg(odd_img, np.random.default_rng(0))
    gt = odd_img[:66, :44]
    assert np.abs(out["gt"] - gt).max() > 0.05  # the target carries the warp ...
    aligned = ops.round8(ops.resize(out["gt"], (33, 22), "area"))
    np.testing.assert_array_equal(out["lq"], aligned)  # ... and the LQ is exactly its downscale
    assert np.abs(out["lq"] - ops.resize(gt, (33, 22), "area")).mean() > 0.005


def test_presets_yaml_matches_builtin_and_every_preset_runs(odd_img: np.ndarray) -> None:
    cfg = yaml.safe_load((CONFIGS / "workflows_presets.yml").read_text())
    assert cfg["predefined_sequences"] == PRESETS and cfg["p_clean"] == 0.1
    assert sum(s["probability"] for s in PRESETS.values()) == pytest.approx(1.0)
    for name in PRESETS:
        opt = {
            "p_clean": 0.0,
            "use_presets": False,
            "predefined_sequences": {name: {**PRESETS[name], "probability": 1}},
        }
        out, rec = apply_manifest(build_degradation("workflows", opt, 4), odd_img, np.random.default_rng(1))
        assert rec[0] == {"op": "sequence", "name": name} and out["lq"].shape == (16, 11, 3)


def test_lrgen_validation_pattern_is_deterministic(odd_img: np.ndarray) -> None:
    deg = build_degradation("lrgen", {"validation": True}, 2)
    gt = odd_img[:66, :44]
    for index, kernel in enumerate(
        ["magic_sharp_2021", "bicubic", "lanczos3", "bilinear", "magic_sharp_2021"]
    ):
        out, rec = apply_manifest(deg, odd_img, np.random.default_rng(index * 13), index=index)
        assert rec[0]["kernel"] == kernel
        np.testing.assert_array_equal(
            out["lq"], ops.round8(ops.resize(filters.gaussian_blur(gt, 0.4), (33, 22), kernel))
        )
    train = build_degradation("lrgen", {"chain_prob": 1.0, "chain_steps": [3, 3]}, 2)
    _, rec = apply_manifest(train, odd_img, np.random.default_rng(0))
    assert [r.get("chain_step") for r in rec if r["op"] == "resize"] == [0, 1, 2]


def test_lrgen_clean_prob_mixes_in_the_plain_benchmark_lr(odd_img: np.ndarray) -> None:
    gt = odd_img[:66, :44]
    clean = build_degradation("lrgen", {"clean_prob": 1.0}, 2)
    out, rec = apply_manifest(clean, odd_img, np.random.default_rng(3))
    assert rec == [{"op": "resize", "kernel": "bicubic", "size": [33, 22], "clean": True}]
    np.testing.assert_array_equal(out["lq"], ops.round8(ops.resize(gt, (33, 22), "bicubic", True)))
    # clean_prob 0 (the default) draws nothing extra: the random stream, hence every LQ, is unchanged
    a, _ = apply_manifest(build_degradation("lrgen", {}, 2), odd_img, np.random.default_rng(7))
    b, _ = apply_manifest(
        build_degradation("lrgen", {"clean_prob": 0.0}, 2), odd_img, np.random.default_rng(7)
    )
    np.testing.assert_array_equal(a["lq"], b["lq"])
    kinds = [
        apply_manifest(build_degradation("lrgen", {"clean_prob": 0.5}, 2), odd_img, np.random.default_rng(s))[
            1
        ][0].get("clean", False)
        for s in range(40)
    ]
    assert 10 < sum(kinds) < 30  # both branches drawn
    with pytest.raises(ValueError, match="clean_prob must be in"):
        build_degradation("lrgen", {"clean_prob": 1.5}, 2)


def test_torch_batch_path_matches_numpy_filters_and_is_deterministic(odd_img: np.ndarray) -> None:
    from paragonsr.degrade.kernels import gaussian_kernel, sinc_kernel

    x = np.stack([odd_img[:40, :36], odd_img[20:60, 5:41]])
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    ks = [gaussian_kernel(21, 2.0, 0.8, 0.4), sinc_kernel(21, 1.1)]
    y = filter2d_batch(t, torch.from_numpy(np.stack(ks)))
    u = usm_sharpen_t(t)
    for i in range(2):
        np.testing.assert_allclose(y[i].permute(1, 2, 0).numpy(), filters.filter2d(x[i], ks[i]), atol=1e-5)
        np.testing.assert_allclose(u[i].permute(1, 2, 0).numpy(), filters.usm_sharpen(x[i]), atol=1e-5)
    deg = build_degradation("realesrgan", {"gt_size": 32}, 2)
    assert isinstance(deg, RealESRGANDegradation)
    a, b = deg.degrade_batch(t, 5), deg.degrade_batch(t, np.random.default_rng(5))
    assert a["lq"].shape == (2, 3, 16, 16) and a["gt"].shape == a["gt_usm"].shape == (2, 3, 32, 32)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["lq"], (a["lq"] * 255).round() / 255)


def test_pair_pool_mixes_batches() -> None:
    pool = PairPool(4, generator=torch.Generator().manual_seed(0))
    batch = lambda v: {"lq": torch.full((2, 1, 2, 2), float(v)), "gt": torch.full((2, 1, 4, 4), float(v))}  # noqa: E731
    assert torch.equal(pool(batch(1))["lq"], batch(1)["lq"])  # filling: passthrough
    assert torch.equal(pool(batch(2))["lq"], batch(2)["lq"])
    out = pool(batch(3))  # full: two stored pairs out, the new ones in
    assert set(out["lq"].flatten().tolist()) <= {1.0, 2.0}
    assert torch.equal(
        out["lq"][:, :, :1, :1].flatten(), out["gt"][:, :, :1, :1].flatten()
    )  # pairs stay paired
    assert sorted(pool.pool["lq"][:, 0, 0, 0].tolist()).count(3.0) == 2
    state = pool.state_dict()
    clone = PairPool(4)
    clone.load_state_dict(state)
    assert torch.equal(clone.pool["gt"], pool.pool["gt"])
    with pytest.raises(ValueError, match="exceeds queue_size"):
        pool({"lq": torch.zeros(5, 1, 2, 2), "gt": torch.zeros(5, 1, 4, 4)})


def test_realesrgan_keys_drive_the_draws(odd_img: np.ndarray) -> None:
    """Each stage reads its own keys: ranges of the record stay inside what the options allow."""
    opt = {
        "resize_prob": [1, 0, 0], "resize_range": [0.5, 1.25], "resize_prob2": [0, 1, 0], "resize_range2": [0.6, 0.7],
        "gaussian_noise_prob": 1.0, "noise_range": [3, 4], "gaussian_noise_prob2": 0.0, "poisson_scale_range2": [0.2, 0.3],
        "jpeg_range": [40, 41], "jpeg_range2": [80, 81], "second_blur_prob": 0.0, "final_sinc_prob": 1.0,
        "kernel_list": ["aniso"], "kernel_prob": [1], "sinc_prob": 0.0, "blur_sigma": [0.5, 0.6], "blur_kernel_size": 9,
    }  # fmt: skip
    deg = build_degradation("realesrgan", opt, 2)
    for seed in range(12):
        _, rec = apply_manifest(deg, odd_img[:32, :32], np.random.default_rng(seed))
        r = {e["op"]: e for e in rec}
        # up draws from [1, hi], down from [lo, 1] (Real-ESRGAN)
        assert 1.0 <= r["resize1"]["scale"] <= 1.25 and 0.6 <= r["resize2"]["scale"] <= 1.0
        assert r["noise1"]["kind"] == "gaussian" and 3 <= r["noise1"]["sigma"] <= 4
        assert r["noise2"]["kind"] == "poisson" and 0.2 <= r["noise2"]["scale"] <= 0.3
        assert r["jpeg"]["quality"] in (40, 41) and r["jpeg2"]["quality"] in (80, 81)
        assert "blur2" not in r and r["final"]["sinc"]["size"] in (7, 9)
        assert (
            r["blur1"]["kernel"] == "aniso"
            and r["blur1"]["size"] in (7, 9)
            and 0.5 <= r["blur1"]["sigma_y"] <= 0.6
        )
