"""``train --check`` finds what would fail once training starts (folders, scale/channel support, option ranges),
and 1-channel (Y) and 4-channel (RGBA) networks train on datasets that deliver those channels."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from conftest import imread
from paragonsr.cli import main
from paragonsr.train.option_check import check_run
from paragonsr.train.option_io import OptionError, parse_options


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chk")
    for sub in ("gt", "lq", "empty"):
        (root / sub).mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        base = (rng.random((12, 12, 4)) * 255).astype(np.uint8)
        gt = cv2.resize(base, (32, 32), interpolation=cv2.INTER_CUBIC)  # BGRA: the files carry an alpha
        cv2.imwrite(str(root / "gt" / f"{i}.png"), gt)
        cv2.imwrite(str(root / "lq" / f"{i}.png"), cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA))
    return root


def options(data: Path, out: Path) -> dict[str, Any]:
    paired = {"type": "PairedImageDataset", "dataroot_gt": str(data / "gt"), "dataroot_lq": str(data / "lq")}
    return {
        "name": "c",
        "scale": 2,
        "datasets": {
            "train": {**paired, "gt_size": 16, "batch_size_per_gpu": 2},
            "val": {**paired, "name": "v"},
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
        "path": {"experiments_root": str(out)},
        "train": {"total_iter": 1, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "val": {
            "val_freq": 1,
            "save_img": True,
            "metrics": {"psnr": {"type": "calculate_psnr", "test_y_channel": True}},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 1, "use_tb_logger": False},
    }


def _with(opt: dict[str, Any], **changes: Any) -> dict[str, Any]:
    opt = copy.deepcopy(opt)
    for path, value in changes.items():
        node = opt
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return opt


def test_check_finds_missing_and_empty_folders_scale_and_channels(data: Path, tmp_path: Path) -> None:
    base = options(data, tmp_path)
    assert check_run(parse_options(copy.deepcopy(base))) == []
    missing = data / "nope"
    assert check_run(parse_options(_with(base, datasets__train__dataroot_gt=str(missing)))) == [
        f"datasets.train.dataroot_gt: folder {missing} does not exist"
    ]
    problems = check_run(parse_options(_with(base, datasets__val__dataroot_lq=str(data / "empty"))))
    assert problems == [f"datasets.val.dataroot_lq: folder {data / 'empty'} holds no images (.png, .jpg, .jpeg, "
                        ".jpe, .jfif, .webp, .tif, .tiff, .bmp, .dib, .ppm, .pgm, .pnm, .gif, .avif)"]  # fmt: skip
    rrdb = _with(
        base, scale=3, network_g={"type": "rrdbnet", "num_feat": 4, "num_block": 1, "num_grow_ch": 4}
    )
    rrdb["datasets"]["train"]["gt_size"] = 18
    assert check_run(parse_options(rrdb)) == [
        "network_g (rrdbnet, scale 3): RRDBNet supports scale (1, 2, 4, 8), got 3"
    ]
    two = _with(base, network_g__num_in_ch=2)
    assert check_run(parse_options(two)) == [
        "network_g: 2 channels (num_in_ch) cannot be trained: datasets deliver 1 (Y), 3 (RGB) or 4 (RGBA)"
    ]


def test_numeric_ranges_are_refused_with_the_key(data: Path, tmp_path: Path) -> None:
    base = options(data, tmp_path)
    with pytest.raises(OptionError) as exc:
        parse_options(_with(base, jpeg_range=[30, 195], gray_noise_prob=1.5, resize_range=[1.5, 0.2]))
    text = str(exc.value)
    assert "jpeg_range: Value error, must be [low, high] with 0 <= low <= high <= 100" in text
    assert "gray_noise_prob: Value error, must be a probability in [0, 1]" in text
    assert "resize_range: Value error, must be [low, high]" in text
    # the pipeline itself bounds what reaches it by other routes (degradation_opt, degrade --config)
    from paragonsr.degrade import build_degradation

    with pytest.raises(ValueError, match=r"realesrgan: jpeg_range2 must be \[low, high\] .* got \[95, 30\]"):
        build_degradation("realesrgan", {"jpeg_range2": [95, 30]}, 2)
    with pytest.raises(
        ValueError, match=r"realesrgan: final_sinc_prob must be a probability in \[0, 1\], got 2"
    ):
        build_degradation("realesrgan", {"final_sinc_prob": 2}, 2)


def test_cli_check_and_train_without_dataset_folder(data: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "o.yml"
    cfg.write_text(
        yaml.safe_dump(_with(options(data, tmp_path / "e"), datasets__train__dataroot_gt="no/such"))
    )
    for extra in (["--check"], []):
        assert main(["train", "-opt", str(cfg), *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "datasets.train.dataroot_gt: folder no/such does not exist" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("channels", [1, 4])
def test_one_and_four_channel_networks_train(data: Path, tmp_path: Path, channels: int) -> None:
    from paragonsr.checkpoint import load_state_dict
    from paragonsr.train.trainer import Trainer, build_dataset

    opt = parse_options(
        _with(options(data, tmp_path), network_g__num_in_ch=channels, network_g__num_out_ch=channels)
    )
    assert check_run(opt) == []
    item = build_dataset(opt, "val", 0)[0]
    assert item["lq"].shape == (channels, 16, 16) and item["gt"].shape == (channels, 32, 32)
    gt = imread(str(data / "gt" / "0.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255  # BGRA
    if channels == 1:  # BT.601 luma, the one `upscale --gray-mode y` feeds a 1-channel model
        want = gt[..., 2] * 0.299 + gt[..., 1] * 0.587 + gt[..., 0] * 0.114
        np.testing.assert_allclose(item["gt"][0].numpy(), want, atol=1e-6)
    else:  # RGBA with the file's own alpha
        np.testing.assert_allclose(item["gt"].numpy(), gt[..., [2, 1, 0, 3]].transpose(2, 0, 1), atol=1e-6)
    Trainer(opt).train()
    state, _ = load_state_dict(tmp_path / "models" / "net_g_1.safetensors")
    assert state["body.0.weight"].shape[1] == channels
    saved = imread(str(next((tmp_path / "visualization").rglob("*.png"))), cv2.IMREAD_UNCHANGED)
    assert saved.shape[:2] == (32, 32) and (saved.ndim == 2 if channels == 1 else saved.shape[2] == 4)
