"""Option schema: the Real-ESRGAN Compact and workflow YAMLs load, overrides work, errors name key path, type and a did-you-mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import load_script
from paragonsr.train.option_io import OptionError, apply_force, parse_options, read_yaml
from paragonsr.train.options import AdamOpt, AdamWOpt, CosineAnnealingLROpt, OTFDatasetOpt, PairedDatasetOpt

FIXTURES = Path(__file__).parent / "fixtures"
COMPACT_YML = FIXTURES / "realesrgan_compact_x2_finetune.yml"


def minimal(**over: object) -> dict:
    d = {
        "name": "t",
        "scale": 2,
        "datasets": {
            "train": {"type": "PairedImageDataset", "dataroot_gt": "g", "dataroot_lq": "l", "gt_size": 32}
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 2},
        "train": {"total_iter": 10, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
    }
    d.update(over)
    return d


def error_of(data: dict, **kw: Any) -> str:
    with pytest.raises(OptionError) as exc:
        parse_options(data, **kw)
    return str(exc.value)


def test_realesrgan_compact_yaml_loads_unchanged() -> None:
    opt = parse_options(read_yaml(COMPACT_YML), source=str(COMPACT_YML))
    assert opt.kind == "gan" and opt.scale == 2
    assert (
        isinstance(opt.datasets["train"], OTFDatasetOpt) and opt.datasets["train"].degradation == "realesrgan"
    )
    assert isinstance(opt.datasets["val"], PairedDatasetOpt)
    assert isinstance(opt.train.optim_g, AdamOpt) and opt.val is not None
    assert opt.train.optim_g.lr == 1e-4 and opt.train.optim_g.betas == (0.9, 0.99)
    assert opt.val.val_freq == 5000 and opt.logger.save_checkpoint_freq == 5000  # `!!float 5e3` -> int
    assert [lo.name for lo in opt.train.losses] == ["pixel", "perceptual", "gan"]
    assert opt.train.losses[1].kwargs()["layer_weights"]["conv5_4"] == 1
    assert opt.degradation_opt()["resize_prob"] == [0.2, 0.7, 0.1]
    assert opt.path.param_key_g == "params_ema" and opt.path.strict_load_g is False


def test_workflow_template_keys() -> None:
    data = minimal()
    data["datasets"]["train"] = {
        "type": "OTFDataset", "degradation": "workflows", "dataroot_gt": ["a", "b"], "dataroot_lq": ["c", "d"],
        "lq_size": 16, "p_clean": 0.1,
        "predefined_sequences": {"phone_to_social": {"probability": 0.3}},
    }  # fmt: skip
    data["train"]["accum_iter"] = 2
    from paragonsr.train.options import Options

    opt = Options.model_validate(data)  # schema only: the workflows pipeline is another area's registry
    ds = opt.datasets["train"]
    assert ds.p_clean == 0.1 and ds.lq_size == 16 and ds.dataroot_gt == ["a", "b"]
    assert ds.predefined_sequences["phone_to_social"]["probability"] == 0.3
    assert opt.train.accum_iter == 2


def test_unknown_key_did_you_mean_and_path() -> None:
    data = minimal()
    data["train"]["optim_g"]["lrr"] = 1e-3
    msg = error_of(data)
    assert "train.optim_g.lrr: unknown key; did you mean 'lr'?" in msg
    data = minimal()
    data["datasets"]["train"]["gt_sise"] = 64
    assert "datasets.train.gt_sise: unknown key; did you mean 'gt_size'?" in error_of(data)
    data = minimal(val={"val_frq": 10})
    assert "val.val_frq: unknown key; did you mean 'val_freq'?" in error_of(data)


def test_type_error_names_expected_type() -> None:
    data = minimal()
    data["datasets"]["train"]["batch_size_per_gpu"] = "eight"
    msg = error_of(data)
    assert "datasets.train.batch_size_per_gpu:" in msg and "expected int" in msg and "'eight' (str)" in msg
    data = minimal()
    del data["train"]["total_iter"]
    assert "train.total_iter: required key is missing (expected int)" in error_of(data)


def test_union_keys_give_one_line_in_option_file_terms() -> None:
    """A key whose type is a union is one line naming the key (not one per union member, with pydantic's member
    names such as ``json-or-python[...]`` appended to the path), and the expected type reads as written in YAML
    (no ``Annotated[..., FieldInfo(...)]`` or ``Literal[...]``)."""
    data = minimal()
    data["datasets"]["train"]["dataroot_gt"] = 5
    msg = error_of(data)
    assert msg.splitlines()[1:] == ["  datasets.train.dataroot_gt: expected str | list[str], got 5 (int)"]
    data = minimal(num_gpu="many")
    assert error_of(data).splitlines()[1:] == ["  num_gpu: expected int | 'auto', got 'many' (str)"]
    data = minimal(val={"tile_size": -1})
    msg = error_of(data)
    assert "val.tile_size: Value error, val.tile_size must be >= 0 pixels" in msg
    assert msg.endswith("expected int | 'auto', got -1 (int)") and "FieldInfo" not in msg
    data = minimal()
    data["datasets"]["train"]["dataroot_gt"] = ["a", 5]
    assert (
        "datasets.train.dataroot_gt.1: Input should be a valid string; expected str, got 5 (int)"
        in error_of(data)
    )


def test_unknown_discriminated_types() -> None:
    data = minimal()
    data["train"]["optim_g"]["type"] = "AdamX"
    msg = error_of(data)
    assert "train.optim_g.type: unknown type 'AdamX'" in msg and "did you mean 'Adam'" in msg
    data = minimal()
    data["datasets"]["train"]["type"] = "PairedImageDatset"
    assert "did you mean 'PairedImageDataset'" in error_of(data)


def test_registry_and_signature_checks() -> None:
    data = minimal()
    data["network_g"]["num_feats"] = 8
    msg = error_of(data)
    assert "network_g.num_feats: unknown argument; did you mean 'num_feat'?" in msg
    data = minimal()
    data["network_g"]["num_conv"] = "many"
    assert "network_g.num_conv:" in error_of(data) and "expected int" in error_of(data)
    data = minimal()
    data["train"]["pixel_opt"] = {"type": "L1Los"}
    assert "train.pixel_opt.type: unknown loss 'L1Los'" in error_of(data)
    data = minimal()
    data["train"]["pixel_opt"]["reducton"] = "sum"
    assert "train.pixel_opt.reducton: unknown argument; did you mean 'reduction'?" in error_of(data)
    data = minimal(network_g={"type": "paragonsr2_nano", "num_feats": 32})  # factory(**overrides) -> class
    assert "network_g.num_feats: unknown argument; did you mean 'num_feat'?" in error_of(data)
    data = minimal(model_type="GANModel")
    assert "network_d: model_type GANModel needs a discriminator" in error_of(data)


def test_force_overrides_and_yaml_floats(tmp_path: Path) -> None:
    data = minimal()
    apply_force(data, ["train.total_iter=20", "train.optim_g.lr=2e-4", "train.optim_g.betas=[0.5, 0.9]",
                       "logger.print_freq=5"])  # fmt: skip
    opt = parse_options(data)
    assert opt.train.total_iter == 20 and opt.train.optim_g.lr == 2e-4 and opt.logger.print_freq == 5
    assert isinstance(opt.train.optim_g, AdamOpt) and opt.train.optim_g.betas == (0.5, 0.9)
    p = tmp_path / "o.yml"
    p.write_text("name: x\nlr: 1e-4\nother: !!float 5e3\nstr: abc\n")
    got = read_yaml(p)
    assert (
        got["lr"] == 1e-4 and isinstance(got["lr"], float) and got["other"] == 5000.0 and got["str"] == "abc"
    )
    with pytest.raises(OptionError, match=r"key\.path=value"):
        apply_force({}, ["oops"])


def test_debug_mode_and_variants() -> None:
    data = minimal(val={"val_freq": 1000})
    data["train"]["optim_g"] = {"type": "adamw", "lr": 1e-3}
    data["train"]["scheduler"] = {"type": "CosineAnnealingLR", "eta_min": 1e-6}
    data["train"]["losses"] = [{"type": "MSELoss", "loss_weight": 0.5}]
    opt = parse_options(data, debug=True)
    assert opt.val is not None
    assert opt.name == "debug_t" and opt.train.total_iter == 10 and opt.val.val_freq == 8
    assert opt.logger.print_freq == 1 and not opt.logger.use_tb_logger and opt.logger.wandb is None
    assert isinstance(opt.train.optim_g, AdamWOpt) and opt.train.optim_g.weight_decay == 0.01
    assert isinstance(opt.train.scheduler, CosineAnnealingLROpt)
    assert [lo.type for lo in opt.train.losses] == ["MSELoss", "L1Loss"]


def test_shipped_configs_validate() -> None:
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yml"))
    assert len(configs) >= 4
    for cfg in configs:
        data = yaml.safe_load(cfg.read_text())
        assert data["name"], cfg
        parse_options(read_yaml(cfg), source=str(cfg))


def test_generated_options_doc_is_current() -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "gen_options_doc.py"
    mod = load_script(script)
    text = mod.render()
    assert (
        "| `accum_iter` | int | `1` |" in text
        and "### `R3GANLoss`" in text
        and "### `paragonsr2_nano`" in text
    )
    doc = script.parents[1] / "docs" / "options.md"
    # The per-type sections follow the registered constructors: a changed signature needs a regeneration.
    stale = "docs/options.md is stale: run scripts/gen_options_doc.py"
    assert doc.read_text(encoding="utf-8") == text, stale


def test_pipeline_specific_keys_need_their_pipeline() -> None:
    data = minimal()
    data["datasets"]["train"] = {"type": "OTFDataset", "degradation": "bicubic", "dataroot_gt": "g", "gt_size": 32,
                                 "p_clean": 0.1, "sinc_prob": 0.2}  # fmt: skip
    msg = error_of(data)
    assert (
        "datasets.train.p_clean: only used by the 'workflows' pipeline, but degradation is 'bicubic'" in msg
    )
    assert "datasets.train.sinc_prob: only used by the 'realesrgan' pipeline" in msg
    data["datasets"]["train"].update(degradation="realesgan", p_clean=None, sinc_prob=None)
    assert "datasets.train.degradation: unknown degradation pipeline 'realesgan'" in error_of(data)


def test_gt_usm_defaults_are_realesrgans() -> None:
    """Omitted l1/percep/gan_gt_usm take Real-ESRGAN's released values, and reach the realesrgan pipeline."""
    from paragonsr.data.build import build_degradation_for as _degradation

    train = {"type": "OTFDataset", "degradation": "realesrgan", "dataroot_gt": "g", "gt_size": 64}
    opt = parse_options(minimal(datasets={"train": train}))
    assert (opt.l1_gt_usm, opt.percep_gt_usm, opt.gan_gt_usm) == (True, True, False)
    deg = _degradation(opt, opt.datasets["train"])
    assert deg.gt_usm_for == {"l1": True, "percep": True, "gan": False}
    opt = parse_options(minimal(datasets={"train": train}, l1_gt_usm=False))
    assert _degradation(opt, opt.datasets["train"]).gt_usm_for["l1"] is False


def test_dataset_color_y_is_rejected_not_ignored() -> None:
    from paragonsr.train.option_io import OptionError, parse_options

    opt: dict[str, Any] = {
        "name": "t",
        "scale": 2,
        "datasets": {
            "train": {
                "type": "PairedImageDataset",
                "dataroot_gt": "g",
                "dataroot_lq": "l",
                "gt_size": 32,
                "color": "y",
            }
        },
        "network_g": {"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2, "upscale": 2},
        "train": {"total_iter": 10, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
    }
    with pytest.raises(OptionError, match=r"datasets\.train\.color.*not supported"):
        parse_options(opt)
    opt["datasets"]["train"]["color"] = "rgb"
    assert parse_options(opt).datasets["train"].color == "rgb"


def test_conflicting_gt_size_and_lq_size_is_an_error() -> None:
    from paragonsr.train.option_io import OptionError, parse_options

    def opt(**ds: int) -> dict:
        return {
            "name": "t",
            "scale": 2,
            "datasets": {
                "train": {"type": "PairedImageDataset", "dataroot_gt": "g", "dataroot_lq": "l", **ds}
            },
            "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
            "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}},
        }

    with pytest.raises(
        OptionError, match=r"gt_size 48 and lq_size 32 disagree at scale 2 \(expected gt_size = .* 64\)"
    ):
        parse_options(opt(gt_size=48, lq_size=32))
    assert parse_options(opt(gt_size=64, lq_size=32)).datasets["train"].lq_size == 32


def test_a_loss_weight_that_is_not_a_number_is_reported_by_key() -> None:
    """The loss list translation reads weights to drop switched-off losses; a weight that is not a number reaches
    the schema, which names the key (was a bare "could not convert string to float: 'x'")."""
    data = minimal()
    data["train"]["pixel_opt"]["loss_weight"] = "x"
    assert "train.pixel_opt.loss_weight: Input should be a valid number" in error_of(data)
    data = minimal()
    data["train"]["perceptual_opt"] = {
        "type": "PerceptualLoss",
        "perceptual_weight": "high",
        "style_weight": 0,
    }
    assert "train.perceptual_opt.perceptual_weight: Input should be a valid number" in error_of(data)
