"""Checkpoint metadata is checked against the file's tensors before a model is built; load errors name the file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import attr_dict
from paragonsr.archs import build_arch
from paragonsr.checkpoint import CheckpointError, load_model, save_model

SMALL = dict(scale=2, num_feat=16, num_groups=1, num_blocks=2, hr_blocks=1)


def _tampered(tmp_path: Path, **changes: object) -> tuple[Path, int]:
    """A small ParagonSR2 file whose metadata ``arch_kwargs`` were edited; also its number of tensors."""
    path = save_model(tmp_path / "ok.safetensors", build_arch("paragonsr2", **SMALL))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    kwargs = json.loads(meta["arch_kwargs"])
    kwargs.update(changes)
    meta["arch_kwargs"] = json.dumps(kwargs)
    tensors = load_file(str(path))
    out = tmp_path / "edited.safetensors"
    save_file(tensors, str(out), metadata=meta)
    return out, len(tensors)


def test_untouched_metadata_loads(tmp_path: Path) -> None:
    path, _ = _tampered(tmp_path)
    model = load_model(path)
    assert model.scale == 2 and attr_dict(model, "checkpoint_meta")["arch_kwargs"]["num_feat"] == 16


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_feat": 1e9}, "'num_feat' must be an integer, got 1000000000.0"),
        ({"num_feat": "abc"}, "'num_feat' must be an integer, got 'abc'"),
        ({"num_feat": "16"}, "'num_feat' must be an integer, got '16'"),
        ({"num_blocks": True}, "'num_blocks' must be an integer, got True"),
        ({"ffn_expansion": "wide"}, "'ffn_expansion' must be a finite number, got 'wide'"),
        ({"image_residual": 1}, "'image_residual' must be true or false, got 1"),
        ({"num_feat": 10**9}, "'num_feat' = 1000000000 is out of range for this file"),
        ({"num_blocks": 10**9}, "'num_blocks' = 1000000000 is out of range for this file"),
        ({"num_feat": -4}, "'num_feat' = -4 is out of range for this file"),
        ({"scale": 1000}, "'scale' = 1000 is out of range (1-16)"),
        ({"colour": 3}, "'colour' is not a hyperparameter of arch 'paragonsr2'"),
    ],
)
def test_absurd_hyperparameters_refused_with_file_and_key(
    tmp_path: Path, changes: dict, message: str
) -> None:
    path, _ = _tampered(tmp_path, **changes)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    text = str(err.value)
    assert text.startswith(f"{path}: metadata arch_kwargs '") and message in text


def test_block_counts_bounded_by_the_tensors_in_the_file(tmp_path: Path) -> None:
    # Each count alone is within the file's tensor count; nested they would build n*n blocks.
    _, n = _tampered(tmp_path)
    path, _ = _tampered(tmp_path, num_groups=n, num_blocks=n)
    with pytest.raises(
        CheckpointError,
        match=rf"hr_blocks 1 x num_blocks {n} x num_groups {n} = {n * n} blocks, more than the file has tensors \({n}\)",
    ):
        load_model(path)
    path, _ = _tampered(tmp_path, hr_blocks=n + 1)
    with pytest.raises(
        CheckpointError, match=rf"'hr_blocks' = {n + 1} counts more modules than the file has"
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"num_feat": 24}, "of another shape: conv_in.weight [16, 3, 3, 3] (expected [24, 3, 3, 3])"),
        ({"num_blocks": 3}, "missing: body.0.blocks.2."),
        ({"num_blocks": 1}, "unexpected: body.0.blocks.1."),
    ],
)
def test_plausible_but_wrong_metadata_refused_before_building(
    tmp_path: Path, changes: dict, detail: str
) -> None:
    path, _ = _tampered(tmp_path, **changes)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    text = str(err.value)
    assert (
        text.startswith(f"{path}: the metadata (arch 'paragonsr2', ") and "does not match the tensors" in text
    )
    assert detail in text


def test_metadata_scale_out_of_range(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.safetensors", build_arch("compact", num_feat=8, num_conv=2, upscale=2))
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    save_file(tensors, str(path), metadata={**meta, "scale": "100000"})
    with pytest.raises(
        CheckpointError, match=r"m\.safetensors: metadata 'scale' = 100000 is out of range \(1-16\)"
    ):
        load_model(path)


@pytest.mark.parametrize(
    ("write", "kind"),
    [
        (lambda f: pickle.dump({"w": [1.0, 2.0]}, f), "a plain Python pickle (not written by torch.save)"),
        (lambda f: pickle.dump({"w": 1}, f, protocol=0), "a plain Python pickle (not written by torch.save)"),
        (lambda f: f.write(b"version https://git-lfs.github.com/spec/v1\n"), "text"),
    ],
)
def test_pickle_or_text_under_safetensors_name_is_one_line(tmp_path: Path, write, kind: str) -> None:
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        write(f)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(err.value) == (
        f"{path}: is named .safetensors but holds {kind}, not a safetensors or torch checkpoint"
    )


def test_torch_file_under_safetensors_name_still_loads(tmp_path: Path) -> None:
    model = build_arch("compact", num_feat=8, num_conv=2, upscale=2)
    path = tmp_path / "compact.safetensors"
    torch.save(model.state_dict(), path)  # torch.load(path) would hand *.safetensors to safetensors
    loaded = load_model(path)
    assert loaded.scale == 2 and attr_dict(loaded, "checkpoint_meta")["format"] == "pth"


def test_weight_mismatch_error_names_the_file(tmp_path: Path) -> None:
    from paragonsr.archs.rrdbnet import RRDBNet

    path = tmp_path / "esrgan.pth"
    torch.save(RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4).state_dict(), path)
    with pytest.raises(CheckpointError, match=rf"^{path} does not fit RRDBNet: .* shape mismatches"):
        load_model(path, arch="rrdbnet", num_feat=16, num_block=2, num_grow_ch=4)
    with pytest.raises(
        CheckpointError, match=rf"^{path}: cannot build arch 'rrdbnet' .* RRDBNet supports scale"
    ):
        load_model(path, arch="rrdbnet", scale=3)


def test_unknown_key_in_a_legacy_esrgan_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    torch.save({"model.0.weight": torch.zeros(8, 3, 3, 3), "model.1.sub.0.XYZ.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: unrecognised key 'model.1.sub.0.XYZ.weight'"):
        load_model(path, arch="rrdbnet")


def test_sequence_hyperparameters_checked(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_model(tmp_path / "munet.safetensors", build_arch("munet", num_feat=8, ch_mult=[1, 2, 2, 2]))
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["arch_kwargs"] = json.dumps({"num_feat": 8, "ch_mult": [1, 2, "x", 2]})
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"'ch_mult' must be a list of integers, got \[1, 2, 'x', 2\]"):
        load_model(path)


def test_float_sequence_hyperparameters_checked(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_model(tmp_path / "span.safetensors", build_arch("span", feature_channels=8, scale=2))
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["arch_kwargs"] = json.dumps({"feature_channels": 8, "scale": 2, "rgb_mean": [0.4, "grey", 0.4]})
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(
        CheckpointError, match=r"'rgb_mean' must be a list of finite numbers, got \[0.4, 'grey', 0.4\]"
    ):
        load_model(path)


def test_unknown_metadata_key_is_named_with_the_generated_model_fields(tmp_path: Path) -> None:
    from paragonsr.archs.options import ARCH_OPTS

    path, _ = _tampered(tmp_path, num_feats=16)
    accepted = ", ".join(sorted(k for k in ARCH_OPTS["paragonsr2"].model_fields if k != "type"))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(err.value) == (
        f"{path}: metadata arch_kwargs 'num_feats' is not a hyperparameter of arch 'paragonsr2'; "
        f"did you mean 'num_feat'? (it has: {accepted})"
    )


@pytest.mark.parametrize(
    ("arch", "kwargs", "key", "value", "expected"),
    [
        ("compact", dict(num_feat=8, num_conv=2, upscale=2), "act_type", 3, "a string"),
        (
            "rrdbnet",
            dict(scale=2, num_feat=8, num_block=1, num_grow_ch=4),
            "num_upconv",
            "2",
            "an integer or null",
        ),
        ("paragonsr2", SMALL, "ffn_expansion", float("nan"), "a finite number"),
    ],
)
def test_bad_metadata_type_is_one_line_from_the_generated_model(
    tmp_path: Path, arch: str, kwargs: dict, key: str, value: object, expected: str
) -> None:
    from safetensors import safe_open

    path = save_model(tmp_path / "m.safetensors", build_arch(arch, **kwargs))
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    meta["arch_kwargs"] = json.dumps({**json.loads(meta["arch_kwargs"]), key: value})
    save_file(load_file(str(path)), str(path), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: metadata arch_kwargs '{key}' must be {expected}, got {value!r}"


def test_metadata_check_reads_the_arch_option_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checkpoint check has no type table of its own: narrowing the generated model narrows what loads.
    from typing import Literal

    from pydantic import create_model

    from paragonsr.archs import options

    path, _ = _tampered(tmp_path)
    assert load_model(path).scale == 2
    narrowed = create_model(
        "Network_paragonsr2", __base__=options.ARCH_OPTS["paragonsr2"], num_feat=(Literal[8, 24], 8)
    )
    monkeypatch.setitem(options.ARCH_OPTS, "paragonsr2", narrowed)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert str(err.value) == f"{path}: metadata arch_kwargs 'num_feat' must be one of 8, 24, got 16"
