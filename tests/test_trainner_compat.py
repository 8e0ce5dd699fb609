"""traiNNer-redux option files: its templates validate and train with only paths changed; every key of its
vocabulary is mapped, ignored with one warning, or refused; typos still get a did-you-mean."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

from conftest import load_script
from paragonsr.cli import main
from paragonsr.train.option_io import OptionError, parse_options, read_yaml
from paragonsr.train.options import (
    LoggerOpt,
    Options,
    OTFDatasetOpt,
    PairedDatasetOpt,
    PathOpt,
    TrainOpt,
    ValOpt,
)
from paragonsr.train.trainner_compat import SAME, SECTIONS, translate

DATA = Path(__file__).parent / "data" / "trainner"
COMPACT = DATA / "Compact_fromscratch.yml"
SPAN = DATA / "SPAN_OTF_bicubic_ms_ssim_l1_fromscratch.yml"
ROOT = Path(__file__).resolve().parents[1]


def _has_span() -> bool:
    import paragonsr.archs  # noqa: F401
    from paragonsr.registry import ARCH_REGISTRY

    return "span" in ARCH_REGISTRY


needs_span = pytest.mark.skipif(
    not _has_span(), reason="the SPAN architecture is not registered in this checkout"
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smooth random 64x64 HR images and their x4 area-downscaled LR (generated, no shared data)."""
    import cv2

    root = tmp_path_factory.mktemp("trainner_data")
    rng = np.random.default_rng(0)
    for sub in ("hr", "lr"):
        (root / sub).mkdir()
    for i in range(4):
        hr = cv2.resize(
            rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC
        )
        cv2.imwrite(str(root / "hr" / f"{i}.png"), hr)
        cv2.imwrite(str(root / "lr" / f"{i}.png"), cv2.resize(hr, (16, 16), interpolation=cv2.INTER_AREA))
    return root


def _paths(images: Path, out: Path, paired: bool = True) -> list[str]:
    force = [f"datasets.train.dataroot_gt=[{images / 'hr'}]", f"path.experiments_root={out}"]
    return force + ([f"datasets.train.dataroot_lq=[{images / 'lr'}]"] if paired else [])


# A tiny CPU run: length, crop, batch and workers only (AMP off: CPU autocast would just be slower).
_TINY = ["train.total_iter=2", "datasets.train.lq_size=8", "datasets.train.batch_size_per_gpu=2",
         "datasets.train.num_worker_per_gpu=0", "logger.use_tb_logger=false", "num_gpu=0", "use_amp=false"]  # fmt: skip


def test_compact_template_checks_with_only_paths_changed(images: Path, tmp_path: Path, capsys) -> None:
    force = _paths(images, tmp_path)
    assert main(["train", "-opt", str(COMPACT), "--check", "--force", *force]) == 0
    assert "OK (SRModel, x4, SRVGGNetCompact)" in capsys.readouterr().out
    raw = read_yaml(COMPACT)
    opt = parse_options(copy.deepcopy(raw), force=force)
    t = opt.train
    assert (t.use_amp, t.amp_bf16, t.use_channels_last, t.accum_iter) == (True, False, True, 1)
    assert [(lo.type, lo.loss_weight, lo.kwargs()) for lo in t.losses] == [
        ("MSSSIML1Loss", 1.0, {"alpha": 0.1})
    ]
    assert opt.val is None and list(opt.datasets) == ["train"]  # val_enabled: false: val set never opened
    ds = opt.datasets["train"]
    assert isinstance(ds, PairedDatasetOpt) and ds.lq_size == 96 and ds.dataset_enlarge_ratio == 1
    assert opt.network_g.type == "SRVGGNetCompact" and opt.num_gpu == "auto"


def test_compact_template_trains_a_few_iterations(images: Path, tmp_path: Path) -> None:
    force = _paths(images, tmp_path) + _TINY
    assert main(["train", "-opt", str(COMPACT), "--force", *force]) == 0
    from paragonsr.checkpoint import load_state_dict

    sd, _ = load_state_dict(tmp_path / "models" / "net_g_2.safetensors")
    assert sd and all(np.isfinite(v.float().numpy()).all() for v in sd.values())
    assert sd["body.0.weight"].shape == (64, 3, 3, 3)  # compact = 64 features


def test_span_template_translation_is_a_bicubic_otf_run() -> None:
    tr = translate(read_yaml(SPAN))
    assert tr.errors == [] and tr.warnings == []  # every switch in it is off: nothing to warn about
    d = tr.data
    ds = d["datasets"]["train"]
    assert ds["degradation"] == "bicubic" and "blur_kernel_size" not in ds and "kernel_list2" not in ds
    assert not {"resize_prob", "jpeg_range", "blur_prob", "high_order_degradation"} & set(d)
    assert d["train"]["losses"] == [{"type": "MSSSIML1Loss", "alpha": 0.1, "loss_weight": 1.0}]
    assert d["val"] is None and list(d["datasets"]) == ["train"] and d["queue_size"] == 180


@needs_span
def test_span_template_checks_and_trains(images: Path, tmp_path: Path) -> None:
    force = _paths(images, tmp_path, paired=False)
    assert main(["train", "-opt", str(SPAN), "--check", "--force", *force]) == 0
    assert main(["train", "-opt", str(SPAN), "--force", *force, *_TINY]) == 0
    assert (tmp_path / "models" / "net_g_2.safetensors").is_file()


def test_ineffective_keys_warn_once_and_inert_values_stay_quiet(caplog: pytest.LogCaptureFixture) -> None:
    data = read_yaml(COMPACT)
    data.update(fast_matmul=True, use_compile=False, detect_anomaly=False)
    data["datasets"]["val"]["mean"] = [0.5, 0.5, 0.5]
    data["datasets"]["train"]["mean"] = [0.5, 0.5, 0.5]
    data["train"].update(use_moa=True, moa_augs=["none", "mixup"])
    data["logger"]["save_checkpoint_format"] = "pth"
    with caplog.at_level(logging.WARNING, logger="paragonsr.train"):
        parse_options(data, source="x.yml")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "x.yml: traiNNer-redux option fast_matmul: True has no effect here (TF32/reduced-precision matmul is not "
        "switched on here); ignored",
        "x.yml: traiNNer-redux option datasets.train.mean: [0.5, 0.5, 0.5] has no effect here (input "
        "normalisation is part of the network here); ignored",
        "x.yml: traiNNer-redux option logger.save_checkpoint_format: 'pth' has no effect here (networks are always "
        "saved as safetensors); ignored",
        "x.yml: traiNNer-redux option train.use_moa: True has no effect here (mixture of augmentations (MoA) is "
        "not implemented); ignored",
    ]  # datasets.val was dropped (val_enabled: false) before its `mean` was read


def test_refusals_and_typos() -> None:
    def err(data: dict) -> str:
        with pytest.raises(OptionError) as exc:
            parse_options(data)
        return str(exc.value)

    base = read_yaml(COMPACT)
    d = copy.deepcopy(base)
    d["input_pixel_format"] = "y"
    assert "input_pixel_format: 'y' is not supported (only rgb input is supported)" in err(d)
    d = copy.deepcopy(base)
    d["train"]["losses"].append({"type": "ldlloss", "loss_weight": 1.0})
    assert "train.losses.1.type: traiNNer-redux loss 'ldlloss' has no equivalent here" in err(d)
    d["train"]["losses"][1]["loss_weight"] = 0  # disabled, as the templates list them: accepted
    assert len(parse_options(d).train.losses) == 1  # the disabled ldlloss is dropped
    d = copy.deepcopy(base)
    d["fast_matmull"] = True
    assert "fast_matmull: unknown key; did you mean 'fast_matmul'?" in err(d)
    d = copy.deepcopy(base)
    d["val"].update(val_enabled=True, metrics_enabeld=False)
    assert "val.metrics_enabeld: unknown key; did you mean 'metrics_enabled' or 'metrics'?" in err(d)
    d = copy.deepcopy(base)
    d["use_amp"], d["train"]["use_amp"] = True, False
    assert "use_amp: True disagrees with train.use_amp: False; give only one" in err(d)


def test_old_style_template_losses_and_discriminator() -> None:
    """The older `*_opt` form: disabled losses (weight 0, perceptual_weight 0) and an idle network_d are dropped;
    a GAN loss with weight makes a GAN run."""
    d = read_yaml(COMPACT)
    del d["train"]["losses"]
    d["network_d"] = {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 64, "skip_connection": True}
    d["train"].update(
        ms_ssim_l1_opt={"type": "MSSSIML1Loss", "alpha": 0.2},
        perceptual_opt={"type": "PerceptualLoss", "criterion": "charbonnier", "perceptual_weight": 0},
        hsluv_opt={"type": "HSLuvLoss", "criterion": "charbonnier", "loss_weight": 0},
        gan_opt={"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0},
        dists_opt={"type": "DISTSLoss", "use_input_norm": True, "loss_weight": 0},
        optim_d={"type": "AdamW", "lr": 1e-4},
    )
    opt = parse_options(copy.deepcopy(d))
    assert opt.kind == "sr" and opt.network_d is None and opt.train.optim_d is None
    assert [(lo.name, lo.type, lo.kwargs()) for lo in opt.train.losses] == [
        ("ms_ssim_l1", "MSSSIML1Loss", {"alpha": 0.2})
    ]
    d["train"]["gan_opt"]["loss_weight"] = 0.1
    opt = parse_options(d)
    assert opt.kind == "gan" and opt.network_d is not None and opt.network_d.type == "UNetDiscriminatorSN"


def test_loss_arguments_and_defaults(caplog: pytest.LogCaptureFixture) -> None:
    d = read_yaml(COMPACT)
    d["train"]["losses"] = [
        {"type": "hsluvloss", "loss_weight": 1.0},
        {"type": "mssimloss", "loss_weight": 0.5, "window_size": 7, "cosim": False},
        {
            "type": "perceptualloss",
            "loss_weight": 0.5,
            "criterion": "pd+l1",
            "w_lambda": 0.01,
            "pretrained": False,
        },
        {"type": "ffloss", "loss_weight": 0.1},
    ]
    with caplog.at_level(logging.WARNING, logger="paragonsr.train"):
        opt = parse_options(d)
    hs, ms, pe, ff = opt.train.losses
    assert hs.kwargs() == {"hue_weight": 1 / 3, "saturation_weight": 1 / 3, "lightness_weight": 1 / 3}
    assert ms.type == "MSSSIMLoss" and ms.kwargs() == {"win_size": 7}
    assert pe.kwargs() == {"criterion": "l1", "pretrained": False}
    assert ff.type == "FocalFrequencyLoss" and ff.kwargs() == {"ave_spectrum": True}
    assert [r.getMessage() for r in caplog.records] == [
        "options: traiNNer-redux option train.losses.2.criterion: 'pd+l1': only its l1 part is available here; "
        "using 'l1'"
    ]


def test_random_otf_settings_go_to_the_realesrgan_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    d = read_yaml(SPAN)
    d["network_g"] = {"type": "compact"}
    d.update(blur_prob=0.5, blur_prob2=0.3, jpeg_prob=1.0, gaussian_noise_prob=0.5, noise_range=[1, 10])
    d["datasets"]["train"]["kernel_range"] = [7, 15]
    with caplog.at_level(logging.WARNING, logger="paragonsr.train"):
        opt = parse_options(d)
    ds = opt.datasets["train"]
    assert isinstance(ds, OTFDatasetOpt) and ds.degradation == "realesrgan"
    assert (ds.blur_kernel_size, ds.blur_kernel_size2) == (15, 17)  # from kernel_range(2) (default 5..17)
    assert opt.second_blur_prob == 0.3 and opt.jpeg_range == [75, 95] and opt.noise_range == [1, 10]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("blur_prob: 0.5 has no effect here (the first blur is always applied here)" in m for m in msgs)
    assert any("resize_mode_list3: ['bicubic'] has no effect here" in m for m in msgs)
    assert not any("jpeg_prob:" in m for m in msgs)  # 1.0 is what the pipeline does


def test_own_and_basicsr_files_pass_through_unchanged() -> None:
    files = [
        ROOT / "tests" / "fixtures" / "realesrgan_compact_x2_finetune.yml",
        *sorted((ROOT / "configs").glob("*.yml")),
    ]
    for f in files:
        data = read_yaml(f)
        tr = translate(data)
        assert tr.warnings == [] and tr.errors == [], f
        assert Options.model_validate(tr.data) == Options.model_validate(data), f  # only `~` defaults dropped


def test_tables_agree_with_the_schema() -> None:
    """'same' keys exist in our schema; mapped/ignored/refused keys do not (they would shadow ours)."""
    from paragonsr.train.option_types import DATASET_OPTS

    models: dict[str, type[BaseModel]] = {
        "": Options,
        "path": PathOpt,
        "train": TrainOpt,
        "val": ValOpt,
        "logger": LoggerOpt,
    }
    for _, where, table in SECTIONS:
        fields = (
            {f for m in DATASET_OPTS.values() for f in m.model_fields}  # every registered dataset type
            if where == "datasets.*"
            else set(models[where].model_fields)
        )
        assert set(SAME[where]) <= fields, (where, set(SAME[where]) - fields)
        for key, rule in table.items():
            shadow = rule.action in ("map", "ignore", "refuse") and key in fields
            assert not shadow, (where, key)


def test_generated_trainner_doc_is_current() -> None:
    mod = load_script(ROOT / "scripts" / "gen_trainner_doc.py")
    text = mod.render()
    assert "| `use_amp` | -> `train.use_amp` |" in text and "| `msssiml1loss` | `MSSSIML1Loss` |" in text
    doc = ROOT / "docs" / "trainner_compat.md"
    assert doc.read_text(encoding="utf-8") == text, (
        "docs/trainner_compat.md is stale: run scripts/gen_trainner_doc.py"
    )


def test_template_yaml_is_the_published_text() -> None:
    # the files keep traiNNer-redux's text: only the header comment is ours
    for f in (COMPACT, SPAN):
        body = f.read_text(encoding="utf-8").split("\n", 3)[3]
        assert body.startswith("# yaml-language-server") and yaml.safe_load(body)["name"]


def test_fork_keys_defaults_and_plain_lanczos(caplog: pytest.LogCaptureFixture) -> None:
    """Keys of the ParagonSR2 fork templates warn once each; `~` and missing keys take traiNNer-redux's meaning."""
    d = read_yaml(COMPACT)
    d["auto_vram_management"] = {"enabled": True, "target_vram_usage": 0.85}
    d["train"].update(ema_power=0.75, training_automations={"enabled": True}, losses=[{"type": "l1loss"}])
    d["path"].update(param_key_g=None, pretrain_network_g=None)
    d["val"] = {"val_enabled": True, "val_freq": 10, "save_img": False, "metrics": {"psnr": {"type": "psnr"}}}
    d["datasets"]["val"] = {"name": "v", "type": "pairedimagedataset", "dataroot_gt": "g", "dataroot_lq": "l"}
    with caplog.at_level(logging.WARNING, logger="paragonsr.train"):
        opt = parse_options(d)
    keys = [r.getMessage().split(" option ")[1].split(":")[0] for r in caplog.records]
    assert keys == ["auto_vram_management", "train.ema_power", "train.training_automations"]
    assert opt.path.param_key_g == "auto" and opt.path.pretrain_network_g is None
    assert opt.val is not None
    assert (
        opt.val.val_freq == 10 and opt.val.metrics == {}
    )  # metrics_enabled defaults to false in traiNNer-redux
    s = read_yaml(SPAN)
    s.update(resize_mode_list3=["lanczos"], network_g={"type": "ultracompact"})
    opt = parse_options(s)
    ds = opt.datasets["train"]
    assert ds.degradation == "resize" and ds.degradation_opt == {"kernel": "lanczos3"}
    assert opt.network_g.kwargs() == {"num_feat": 64, "num_conv": 8}
    s["datasets"]["train"]["accum_itr"] = 2
    with pytest.raises(
        OptionError, match=r"datasets.train.accum_itr: unknown key; did you mean 'accum_iter'\?"
    ):
        parse_options(s)


@pytest.mark.parametrize(
    ("size", "overlap", "ours"),
    [(128, 32, (96, 16)), (128, 33, (96, 16)), (64, 0, (64, 0)), (0, 32, (0, 16))],
)
def test_val_tile_overlap_keeps_the_trainner_tile_windows(size: int, overlap: int, ours: tuple) -> None:
    # traiNNer-redux: windows of tile_size LR px, stepped by tile_size - tile_overlap (neighbours share the
    # overlap). Here: tile_size px + tile_pad context per side; the shared tiler sees window and overlap directly.
    from paragonsr.train.validation import val_tiler

    tr = translate(
        {"val": {"val_enabled": True, "save_img": False, "tile_size": size, "tile_overlap": overlap}}
    )
    assert tr.errors == [] and tr.warnings == []
    assert tr.data["val"] == {"save_img": False, "tile_size": ours[0], "tile_pad": ours[1]}
    tiler = val_tiler(ValOpt(**tr.data["val"]))
    assert (tiler.request, tiler.overlap) == (size, 2 * (overlap // 2))


@pytest.mark.parametrize(
    ("val", "error"),
    [
        ({"tile_size": 128, "tile_overlap": 128}, "val.tile_overlap: 128 must be a number of pixels >= 0 below "
         "val.tile_size 128 (it is the overlap of adjacent tiles: traiNNer-redux steps them by tile_size - "
         "tile_overlap)"),
        ({"tile_overlap": -2}, "val.tile_overlap: -2 must be a number of pixels >= 0 (it is the overlap"),
        ({"tile_overlap": 16, "tile_pad": 4}, "val.tile_overlap: 16 means tile_pad 8, not 4; give one"),
    ],
)  # fmt: skip
def test_val_tile_overlap_refusals(val: dict, error: str) -> None:
    tr = translate({"val": {"val_enabled": True, "save_img": False, **val}})
    assert len(tr.errors) == 1 and tr.errors[0].startswith(error), tr.errors
