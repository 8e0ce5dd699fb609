"""docs/options.schema.json: current, valid JSON Schema, and it accepts / refuses option files as the loader does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import load_script
from paragonsr.train.option_io import OptionError, parse_options, read_yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "options.schema.json"
CONFIGS = [
    *sorted((ROOT / "configs").glob("*.yml")),
    ROOT / "tests" / "fixtures" / "realesrgan_compact_x2_finetune.yml",
]


def _gen():
    return load_script(ROOT / "scripts" / "gen_options_doc.py")


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is a test dependency (pip install -e .[test])"
    )
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator, data: dict) -> list[tuple[str, str]]:
    """(key path, message) of each error, those inside anyOf/oneOf branches included."""
    out, todo = [], list(validator.iter_errors(data))
    while todo:
        e = todo.pop()
        out.append((".".join(map(str, e.absolute_path)), e.message))
        todo += e.context or []
    return sorted(out)


def test_committed_schema_is_current() -> None:
    stale = "docs/options.schema.json is stale: run scripts/gen_options_doc.py"
    assert SCHEMA.read_text(encoding="utf-8") == _gen().render_schema(), stale


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_option_files_pass_the_loader(path: Path) -> None:
    parse_options(read_yaml(path), source=str(path))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_option_files_pass_the_schema(validator, path: Path) -> None:
    assert errors(validator, read_yaml(path)) == []


def test_schema_refuses_what_the_loader_refuses(validator) -> None:
    base = read_yaml(CONFIGS[-1])
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"jpeg_range": [30, 195]}, "jpeg_range.1", "195 is greater than the maximum of 100"),
        ({"gray_noise_prob": 1.5}, "gray_noise_prob", "1.5 is greater than the maximum of 1"),
        ({"resize_prb": [0.2, 0.7, 0.1]}, "", "'resize_prb' was unexpected"),
        ({"scale": 9}, "scale", "9 is greater than the maximum of 8"),
    ]
    for change, where, msg in bad:
        data = {**copy.deepcopy(base), **change}
        found = errors(validator, data)
        assert any(p == where and msg in m for p, m in found), (change, found)
        with pytest.raises(OptionError):
            parse_options(data)
    ds = copy.deepcopy(base)
    ds["datasets"]["train"]["kernel_list"] = ["iso", "isoo"]
    assert ("datasets.train.kernel_list.1", "'isoo' is not one of ['iso', 'aniso', 'generalized_iso', "
            "'generalized_aniso', 'plateau_iso', 'plateau_aniso']") in errors(validator, ds)  # fmt: skip
    with pytest.raises(OptionError, match=r"datasets\.train\.kernel_list\.1"):
        parse_options(ds)


def test_schema_accepts_the_loader_spellings(validator) -> None:
    data = read_yaml(CONFIGS[-1])
    data["train"]["optim_g"]["type"] = "adamw"  # type names in any capitalisation
    data["train"]["scheduler"] = {"type": "cosineannealinglr", "eta_min": 1e-7}
    data["train"]["ldl_opt"] = {"type": "L1Loss", "loss_weight": 0.5}  # any <name>_opt is a loss
    data["train"]["grad_clip"] = True
    data["datasets"]["train"]["type"] = "otfdataset"
    assert errors(validator, data) == []
    opt = parse_options(copy.deepcopy(data))
    assert opt.train.grad_clip == 1.0 and "ldl" in [lo.name for lo in opt.train.losses]


def test_every_option_has_a_description() -> None:
    missing = [
        f"{title}: {name}"
        for title, model, _ in _gen().SECTIONS
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert missing == []
