"""The realesrgan options model: one declaration feeds the pipeline, the degrade CLI and the training schema."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from paragonsr.commands.degrade import load_options
from paragonsr.degrade import build_degradation
from paragonsr.degrade.realesrgan import RealESRGANDegradation
from paragonsr.degrade.realesrgan_opts import (
    DATASET_KEYS,
    DEFAULTS,
    KEYS,
    STAGE_KEYS,
    TOP_KEYS,
    RealESRGANOpt,
)
from paragonsr.train.option_io import OptionError, parse_options, read_yaml
from paragonsr.train.options import Options, OTFDatasetOpt

COMPACT_YML = Path(__file__).parent / "fixtures" / "realesrgan_compact_x2_finetune.yml"
# one non-default value per key of a Real-ESRGAN training file, at the place BasicSR's layout puts it
TOP = {
    "resize_prob": [0.1, 0.8, 0.1], "resize_range": [0.2, 1.4], "gaussian_noise_prob": 0.3, "noise_range": [2, 20],
    "poisson_scale_range": [0.1, 2], "gray_noise_prob": 0.2, "jpeg_range": [40, 90], "second_blur_prob": 0.6,
    "resize_prob2": [0.2, 0.5, 0.3], "resize_range2": [0.4, 1.1], "gaussian_noise_prob2": 0.7,
    "noise_range2": [3, 15], "poisson_scale_range2": [0.1, 1.5], "gray_noise_prob2": 0.1, "jpeg_range2": [50, 85],
    "l1_gt_usm": False, "percep_gt_usm": False, "gan_gt_usm": True,
}  # fmt: skip
DATASET = {
    "blur_kernel_size": 15, "kernel_list": ["iso", "aniso"], "kernel_prob": [1, 2], "sinc_prob": 0.2,
    "blur_sigma": [0.3, 2.5], "betag_range": [0.6, 3], "betap_range": [1, 1.5], "blur_kernel_size2": 11,
    "kernel_list2": ["plateau_iso"], "kernel_prob2": [1], "sinc_prob2": 0.05, "blur_sigma2": [0.3, 1.0],
    "betag_range2": [0.7, 2], "betap_range2": [1.2, 2], "final_sinc_prob": 0.5,
}  # fmt: skip


def basicsr_file() -> dict:
    d = read_yaml(COMPACT_YML)
    d.pop("val", None)
    d["datasets"].pop("val", None)
    d.update(TOP)
    d["datasets"]["train"].update(DATASET)
    return d


def test_defaults_are_real_esrgan_released_values_and_every_key_is_described() -> None:
    assert DEFAULTS["noise_range"] == [1, 30] and DEFAULTS["noise_range2"] == [1, 25]
    assert DEFAULTS["blur_sigma2"] == [0.2, 1.5] and DEFAULTS["final_sinc_prob"] == 0.8
    assert DEFAULTS["resize_prob2"] == [0.3, 0.4, 0.3] and DEFAULTS["queue_size"] == 0
    assert len(KEYS) == 38 and len(STAGE_KEYS) == 14 and ("kernel_prob", "kernel_prob2") in STAGE_KEYS
    assert all(k.description for k in KEYS.values())
    deg = build_degradation("realesrgan", {}, 2)
    assert isinstance(deg, RealESRGANDegradation)
    assert RealESRGANOpt().model_dump() == DEFAULTS == deg.opt
    # the training schema holds every top-level / datasets key, nowhere else declared
    assert set(TOP_KEYS) <= set(Options.model_fields) and set(DATASET_KEYS) <= set(OTFDatasetOpt.model_fields)
    assert set(TOP) | set(DATASET) | {"gt_size", "queue_size"} == set(TOP_KEYS) | set(DATASET_KEYS)


def test_training_and_degrade_cli_hand_the_pipeline_the_same_options(tmp_path: Path) -> None:
    from paragonsr.data.build import build_degradation_for as _degradation

    d = basicsr_file()
    opt = parse_options(copy.deepcopy(d))
    trained = _degradation(opt, opt.datasets["train"]).opt
    # `paragonsr degrade --config <the same file>` (gt_size / queue_size are the trainer's business in training)
    cfg = tmp_path / "train.yml"
    cfg.write_text(yaml.safe_dump(d), encoding="utf-8")
    name, cli_opt, scale = load_options(None, cfg)
    cli_deg = build_degradation(name, cli_opt, scale)
    assert isinstance(cli_deg, RealESRGANDegradation)
    cli = cli_deg.opt
    assert {**cli, "gt_size": None, "queue_size": 0} == trained
    assert trained == {**DEFAULTS, **TOP, **DATASET}
    assert cli["gt_size"] == 256 and cli["queue_size"] == 180


@pytest.mark.parametrize(
    ("key", "value", "msg"),
    [
        ("blur_kernel_size", 4, "must be an odd integer >= 3"),
        ("sinc_prob2", 1.5, "must be a probability in [0, 1]"),
        ("blur_sigma", [0, 1], "must be [low, high] with 0 < low <= high"),
        ("kernel_prob", [1, -1, 0, 0, 0, 0], "must be one or more non-negative weights, not all 0"),
        ("noise_range", [1, 300], "must be [low, high] with 0 <= low <= high <= 255"),
        ("final_sinc_prob", True, "must be a number, not true/false"),
    ],
)
def test_pipeline_and_training_schema_refuse_the_same_values(key: str, value: object, msg: str) -> None:
    with pytest.raises(ValueError) as exc:
        build_degradation("realesrgan", {key: value}, 2)
    assert str(exc.value) == f"realesrgan: {key} {msg}, got {value!r}"
    d = basicsr_file()
    (d if key in TOP_KEYS else d["datasets"]["train"])[key] = value
    with pytest.raises(OptionError) as err:
        parse_options(d)
    where = key if key in TOP_KEYS else f"datasets.train.{key}"
    assert f"{where}: Value error, {msg}" in str(err.value)


def test_unset_training_keys_keep_the_pipeline_defaults_and_aliases_work() -> None:
    d = read_yaml(COMPACT_YML)
    for k in [*TOP, "gt_size"]:
        d.pop(k, None)
    for k in DATASET:
        d["datasets"]["train"].pop(k)
    d["datasets"]["train"]["gt_size"] = 64
    opt = parse_options(d)
    assert opt.degradation_opt() == {} and opt.resize_prob is None and opt.datasets["train"].sinc_prob is None
    assert opt.queue_size == 180 and opt.l1_gt_usm is True and opt.gan_gt_usm is False
    deg = build_degradation("realesrgan", {"blur_prob2": 0.25}, 2)  # traiNNer-redux's name
    assert isinstance(deg, RealESRGANDegradation)
    assert deg.opt["second_blur_prob"] == 0.25 and "blur_prob2" not in deg.opt
    with pytest.raises(KeyError, match=r"unknown option 'sinc_prb'\. Did you mean 'sinc_prob'"):
        build_degradation("realesrgan", {"sinc_prb": 0.1}, 2)
