"""Option models generated from the registered constructors: fields, defaults and descriptions follow the
signatures and docstrings; the JSON Schema and the loader refuse the same bad keys with one-line errors."""

from __future__ import annotations

import copy
import inspect
import json
import typing
from pathlib import Path

import pytest

from paragonsr.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, Registry
from paragonsr.registry_options import constructor_fields, param_docs
from paragonsr.train.option_io import OptionError, parse_options
from paragonsr.train.option_types import ARCH_OPTS, DATASET_OPTS, LOSS_OPTS, METRIC_OPTS, NetworkOpt

ROOT = Path(__file__).resolve().parents[1]


def minimal(**over: object) -> dict:
    d = {
        "name": "t",
        "scale": 2,
        "datasets": {"train": {"dataroot_gt": "g", "dataroot_lq": "l", "gt_size": 32}},
        "network_g": {"type": "compact", "num_feat": 8, "num_conv": 2},
        "train": {"total_iter": 10, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "l1"}},
    }
    d.update(over)
    return d


def one_error(data: dict) -> str:
    with pytest.raises(OptionError) as exc:
        parse_options(data)
    lines = str(exc.value).splitlines()
    assert lines[0] == "invalid options:" and len(lines) == 2, lines
    return lines[1].strip()


def _doc_sample(a: int, b_c: int = 2, d: int = 3, e: int = 4) -> None:
    """Summary.

    Args:
        a: first
            value, continued.
        b_c, d: shared text (with a colon: here).
        e (int): typed entry.

    Returns:
        nothing: not an argument.
    """


def test_param_docs_reads_google_args() -> None:
    assert param_docs(_doc_sample) == {
        "a": "first value, continued.",
        "b_c": "shared text (with a colon: here).",
        "d": "shared text (with a colon: here).",
        "e": "typed entry.",
    }


def test_generated_fields_follow_signature_and_docstring() -> None:
    fields = constructor_fields(_doc_sample)
    assert list(fields) == ["a", "b_c", "d", "e"]
    ann, info = fields["a"]
    assert ann is int and info.is_required() and info.description == "first value, continued"
    assert fields["d"][1].default == 3 and fields["e"][1].description == "typed entry"


@pytest.mark.parametrize(
    ("registry", "models"), [(ARCH_REGISTRY, ARCH_OPTS), (LOSS_REGISTRY, LOSS_OPTS)], ids=["archs", "losses"]
)
def test_generated_defaults_equal_constructor_defaults(registry: Registry, models: dict) -> None:
    for key, model in models.items():
        obj = registry.get(key)
        sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
        for name, p in sig.parameters.items():
            if name in ("self", "scale", "upscale") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            field = model.model_fields[name]
            if name in model.__bases__[0].model_fields:
                continue  # the section's own key (loss_weight)
            assert field.default == p.default, (key, name)


def test_every_registered_name_has_a_model() -> None:
    import paragonsr.data.datasets  # noqa: F401
    from paragonsr.registry import DATASET_REGISTRY, METRIC_REGISTRY

    for registry, models in [(ARCH_REGISTRY, ARCH_OPTS), (LOSS_REGISTRY, LOSS_OPTS),
                             (METRIC_REGISTRY, METRIC_OPTS), (DATASET_REGISTRY, DATASET_OPTS)]:  # fmt: skip
        assert list(models) == registry.names()


def test_kwargs_are_the_keys_the_file_sets() -> None:
    opt = parse_options(minimal(network_g={"type": "paragonsr2_nano", "num_feat": 16}))
    assert isinstance(opt.network_g, NetworkOpt) and opt.network_g.kwargs() == {"num_feat": 16}
    # factory overrides left out keep the variant's values: nothing else reaches the constructor
    fields = type(opt.network_g).model_fields
    assert (fields["num_groups"].default, fields["hr_blocks"].default, fields["image_residual"].default) == (
        2,
        1,
        True,
    )
    opt = parse_options(minimal())
    assert opt.network_g.kwargs() == {"num_feat": 8, "num_conv": 2}  # upscale comes from `scale`
    assert opt.train.losses[0].kwargs() == {} and opt.train.losses[0].loss_weight == 1.0


def test_one_line_errors() -> None:
    data = minimal()
    data["network_g"]["num_feats"] = 8
    assert one_error(data) == (
        "network_g.num_feats: unknown argument; did you mean 'num_feat'? "
        "(accepted: act_type, num_conv, num_feat, num_in_ch, num_out_ch, type, upscale)"
    )
    data = minimal()
    data["train"]["pixel_opt"]["reducton"] = "sum"
    assert one_error(data) == (
        "train.pixel_opt.reducton: unknown argument; did you mean 'reduction'? "
        "(accepted: loss_weight, name, reduction, target, type)"
    )
    assert one_error(minimal(model_type="SRModle")) == (
        "model_type: unknown model type 'SRModle'; did you mean 'SRModel' or 'SRGANModel' or 'ESRGANModel'? "
        "(expected one of GANModel, QATModel, SRModel)"
    )
    data = minimal(val={"metrics": {"psnr": {"type": "calculate_psnr", "crop_bordr": 4}}})
    assert one_error(data).startswith(
        "val.metrics.psnr.crop_bordr: unknown argument; did you mean 'crop_border'"
    )
    data = minimal()
    data["datasets"]["train"]["type"] = "Pairedd"
    assert one_error(data) == (
        "datasets.train.type: unknown dataset 'Pairedd'; did you mean 'paired'? "
        "(expected one of OTFDataset, PairedImageDataset)"
    )
    assert one_error(minimal(network_g="compact")) == (
        "network_g: expected a mapping with a `type` key, got 'compact' (str)"
    )


def test_model_types_come_from_the_registry() -> None:
    import paragonsr.train.gan_model  # noqa: F401  registers the model classes

    assert MODEL_REGISTRY.names() == ["ganmodel", "qatmodel", "srmodel"]
    for name, kind in [("SRModel", "sr"), ("RealESRNetModel", "sr"), ("RealESRGANModel", "gan"),
                       ("ESRGANModel", "gan"), ("srganmodel", "gan")]:  # fmt: skip
        data = minimal(model_type=name, network_d={"type": "UNetDiscriminatorSN", "num_feat": 8})
        opt = parse_options(data)
        assert opt.kind == kind and opt.model_class is MODEL_REGISTRY.get(name)


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test dependency (.[test])")
    schema = json.loads((ROOT / "docs" / "options.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def test_schema_has_one_member_per_registered_type(validator) -> None:
    defs = validator.schema["$defs"]
    for union, models in [("NetworkOpt", ARCH_OPTS), ("LossOpt", LOSS_OPTS), ("MetricOpt", METRIC_OPTS),
                          ("DatasetOpt", DATASET_OPTS)]:  # fmt: skip
        refs = sorted(m["$ref"].rsplit("/", 1)[1] for m in defs[union]["oneOf"])
        assert refs == sorted(m.__name__ for m in models.values())
    compact = defs["Network_SRVGGNetCompact"]
    assert compact["additionalProperties"] is False and compact["properties"]["num_conv"]["default"] == 16


def test_schema_refuses_bad_registered_keys(validator) -> None:
    def valid(data: dict) -> bool:
        return not list(validator.iter_errors(data))

    assert valid(minimal()) and valid(minimal(model_type="realesrnetmodel"))
    for bad in [
        minimal(network_g={"type": "compact", "num_feats": 8}),
        minimal(network_g={"type": "compact", "num_conv": "many"}),
        minimal(network_g={"type": "compactt"}),
        minimal(model_type="SRModle"),
        minimal(val={"metrics": {"psnr": {"type": "psnr", "crop_bordr": 4}}}),
    ]:
        assert not valid(bad), bad
        with pytest.raises(OptionError):
            parse_options(copy.deepcopy(bad))
    data = minimal()
    data["train"]["pixel_opt"]["reducton"] = "sum"
    assert not valid(data)


def test_every_generated_key_has_a_description() -> None:
    """A registered constructor documents each argument (``Args:``), so docs and editors show what it does."""
    missing = [
        f"{model.__name__}.{name}"
        for models in (ARCH_OPTS, LOSS_OPTS, METRIC_OPTS, DATASET_OPTS)
        for model in models.values()
        for name, field in model.model_fields.items()
        if not field.description or field.description.startswith("unset")
    ]
    assert missing == []


def test_options_with_generated_sections_pickle() -> None:
    """Spawned loader workers and DDP processes receive the options pickled: the generated classes must be found."""
    import pickle

    data = minimal(val={"metrics": {"psnr": {"type": "psnr", "crop_border": 2}}})
    data["datasets"]["val"] = {"type": "otf", "dataroot_gt": "g", "degradation": "bicubic"}
    opt = parse_options(data)
    back = pickle.loads(pickle.dumps(opt))
    assert back == opt and back.network_g.kwargs() == {"num_feat": 8, "num_conv": 2}
    assert back.val.metrics["psnr"].crop_border == 2 and back.datasets["val"].on_the_fly


@pytest.mark.parametrize(
    "name", [n for n in ARCH_REGISTRY.names() if hasattr(ARCH_REGISTRY.get(n), "variant_kwargs")]
)
def test_variant_defaults_build_what_the_factory_builds(name: str) -> None:
    """The defaults the docs show for a factory's class arguments are the ones it really uses: the class built with
    them has the factory's layout."""
    import torch

    model = ARCH_OPTS[name]
    cls = typing.get_type_hints(ARCH_REGISTRY.get(name))["return"]
    defaults = {n: f.default for n, f in model.model_fields.items() if n not in ("type", "scale")}
    with torch.device("meta"):
        a = ARCH_REGISTRY.get(name)(scale=2).state_dict()
        b = cls(scale=2, **defaults).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
