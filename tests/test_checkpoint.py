"""Checkpoint save/load: formats, BasicSR layouts, strict reports, metadata rebuild, fused models, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import attr_dict, narrow
from paragonsr.archs import build_arch
from paragonsr.archs.paragonsr2 import ParagonSR2
from paragonsr.archs.paragonsr_v1 import ParagonSR
from paragonsr.checkpoint import (
    CheckpointError,
    detect_arch,
    load_model,
    load_state_dict,
    load_weights,
    save_model,
)


def _compact(**kw):
    torch.manual_seed(0)
    args = {"num_feat": 8, "num_conv": 2, "upscale": 2, **kw}
    return build_arch("compact", **args).eval()


def _same_output(a: torch.nn.Module, b: torch.nn.Module, in_ch: int = 3) -> float:
    x = torch.rand(1, in_ch, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
def test_round_trip_rebuilds_from_metadata(tmp_path: Path, ext: str) -> None:
    model = _compact(num_in_ch=1, num_out_ch=1, act_type="leakyrelu")
    path = save_model(tmp_path / f"m{ext}", model, metadata={"dataset": "photos", "iter": 5})
    loaded = load_model(path)  # no arch flags needed
    assert type(loaded) is type(model)
    assert loaded.act_type == "leakyrelu" and loaded.in_ch == 1 and loaded.scale == 2
    assert _same_output(model, loaded, in_ch=1) == 0.0
    meta = attr_dict(loaded, "checkpoint_meta")
    assert meta["arch"] == "srvggnetcompact"
    assert meta["arch_kwargs"]["act_type"] == "leakyrelu"
    assert (meta["scale"], meta["in_ch"], meta["out_ch"]) == (2, 1, 1)
    assert meta["extra"] == {"dataset": "photos", "iter": 5}
    assert meta["paragonsr_version"]
    assert meta["format"] == ext[1:]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_safetensors_header_is_plain_strings(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_model(tmp_path / "m.safetensors", _compact())
    with safe_open(str(path), "pt") as f:
        raw = f.metadata()
    assert raw["arch"] == "srvggnetcompact"
    assert json.loads(raw["arch_kwargs"]) == {"num_feat": 8, "num_conv": 2, "upscale": 2}
    assert raw["scale"] == "2" and raw["format"] == "pt"


@pytest.mark.parametrize(
    ("layout", "expected_key"),
    [
        ({"params": "A"}, "params"),
        ({"params_ema": "B", "params": "A"}, "params_ema"),  # auto prefers EMA weights
        ({"net_g": "A"}, "net_g"),
        ({"state_dict": "A", "epoch": 3}, "state_dict"),
    ],
)
def test_basicsr_layouts_and_module_prefix(tmp_path: Path, layout: dict, expected_key: str) -> None:
    a, b = _compact(), _compact()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    states = {"A": a.state_dict(), "B": {f"module.{k}": v for k, v in b.state_dict().items()}}
    obj = {k: states.get(v, v) for k, v in layout.items()}
    torch.save(obj, tmp_path / "x.pth")
    state, meta = load_state_dict(tmp_path / "x.pth")
    assert meta["param_key"] == expected_key
    assert not any(k.startswith("module.") for k in state)
    ref = (b if layout[expected_key] == "B" else a).state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_explicit_param_key(tmp_path: Path) -> None:
    a = _compact()
    torch.save({"params": a.state_dict(), "params_ema": a.state_dict()}, tmp_path / "x.pth")
    _, meta = load_state_dict(tmp_path / "x.pth", param_key="params")
    assert meta["param_key"] == "params"
    with pytest.raises(CheckpointError, match=r"no 'net_d' entry.*params"):
        load_state_dict(tmp_path / "x.pth", param_key="net_d")


def test_realesrgan_pth_without_metadata_is_detected(tmp_path: Path) -> None:
    """A Real-ESRGAN compact .pth (params key, no metadata) loads with no flags."""
    ref = _compact(num_feat=12, num_conv=3, upscale=3)
    torch.save({"params": ref.state_dict()}, tmp_path / "realesr.pth")
    assert detect_arch(ref.state_dict()) == (
        "srvggnetcompact",
        {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 12, "num_conv": 3, "upscale": 3, "act_type": "prelu"},
    )
    model = load_model(tmp_path / "realesr.pth")
    assert model.scale == 3 and attr_dict(model, "checkpoint_meta")["detected"] is True
    assert _same_output(ref, model) == 0.0


def test_unknown_layout_needs_arch(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=r"odd\.pth: no architecture metadata.*--arch"):
        load_model(tmp_path / "odd.pth")


def test_strict_report_and_non_strict_loading(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.safetensors", _compact(num_conv=2))
    bigger = _compact(num_conv=3)
    with pytest.raises(CheckpointError) as exc:
        load_weights(bigger, path)
    msg = str(exc.value)
    assert "m.safetensors" in msg and "missing in checkpoint: body.7.weight" in msg
    assert "shape mismatches: body.6.bias (checkpoint [12] vs model [8])" in msg
    before = bigger.body[8].weight.clone()
    report = load_weights(bigger, path, strict=False)
    assert not report.ok
    assert report.missing == ["body.7.weight", "body.8.weight", "body.8.bias"]
    assert {k for k, _, _ in report.mismatched} == {"body.6.weight", "body.6.bias"}
    assert report.loaded == 9  # body.0-5 convs/prelus (0, 2, 4 convs: w+b; 1, 3, 5 prelus)
    assert torch.equal(bigger.body[8].weight, before)  # untouched where nothing fitted
    ok = load_weights(_compact(), path)
    assert ok.ok and ok.loaded == len(_compact().state_dict())


def test_unexpected_keys_reported(tmp_path: Path) -> None:
    state = dict(_compact().state_dict())
    state["extra.weight"] = torch.ones(2)
    with pytest.raises(CheckpointError, match=r"1 unexpected in checkpoint: extra\.weight"):
        load_weights(_compact(), state)
    assert load_weights(_compact(), state, strict=False).unexpected == ["extra.weight"]


def test_fused_flag_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = narrow(ParagonSR2, build_arch("paragonsr2_nano", scale=2)).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    model.fuse_for_release()
    path = save_model(tmp_path / "fused.safetensors", model)
    loaded = load_model(path)
    assert attr_dict(loaded, "checkpoint_meta")["fused"] is True and loaded.fused
    with torch.no_grad():
        assert float((loaded(x) - ref).abs().max()) <= 1e-4
    with pytest.raises(CheckpointError, match=r"fused: call model\.fuse_for_release"):
        load_weights(build_arch("paragonsr2_nano", scale=2), path)


def test_fused_layout_detected_without_flag(tmp_path: Path) -> None:
    """A fused file whose metadata lacks the flag (e.g. written by another tool) still loads."""
    model = narrow(ParagonSR2, build_arch("paragonsr2_nano", scale=2)).fuse_for_release()
    path = save_model(
        tmp_path / "f.safetensors", model.state_dict(), arch="paragonsr2_nano", arch_kwargs={"scale": 2}
    )
    assert load_state_dict(path)[1]["fused"] is None
    assert load_model(path).fused


def test_arch_override_and_kwargs(tmp_path: Path) -> None:
    path = save_model(tmp_path / "m.safetensors", _compact())
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(path, num_feat=16)  # kwargs override the metadata
    with pytest.raises(CheckpointError, match="unknown architecture 'nosuch'"):
        load_model(path, arch="nosuch")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nothere\.safetensors"):
        load_state_dict(tmp_path / "nothere.safetensors")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth: file is empty"):
        load_state_dict(tmp_path / "empty.pth")
    data = save_model(tmp_path / "ok.safetensors", _compact()).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable"):
        load_state_dict(tmp_path / "cut.safetensors")
    data = save_model(tmp_path / "ok.pth", _compact()).read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: corrupt or truncated"):
        load_state_dict(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint extension"):
        save_model(tmp_path / "m.onnx", _compact())


class _Evil:
    def __reduce__(self):  # would run code if unpickled without weights_only
        return (print, ("pwned",))


def test_pth_loaded_weights_only(tmp_path: Path) -> None:
    torch.save({"params": _compact().state_dict(), "hook": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to unpickle \S*print.*weights_only"):
        load_state_dict(tmp_path / "evil.pth")


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    w = torch.randn(4, 4)
    path = save_model(tmp_path / "t.safetensors", {"a": w, "b": w})
    state, _ = load_state_dict(path)
    assert torch.equal(state["a"], state["b"])


def test_unusual_layouts(tmp_path: Path) -> None:
    a = _compact()
    torch.save(a.state_dict(), tmp_path / "flat.pth")
    state, meta = load_state_dict(tmp_path / "flat.pth", param_key="params_ema")  # moot for a flat dict
    assert meta["param_key"] is None and set(state) == set(a.state_dict())
    save_model(tmp_path / "odd.pth", a, param_key="generator")
    state, meta = load_state_dict(tmp_path / "odd.pth")
    assert meta["param_key"] == "generator" and meta["arch"] == "srvggnetcompact"
    torch.save({"g": a.state_dict(), "d": a.state_dict()}, tmp_path / "two.pth")
    with pytest.raises(CheckpointError, match=r"could not find the weights; top-level keys are \['d', 'g'\]"):
        load_state_dict(tmp_path / "two.pth")


def test_wrapped_model_saves_clean(tmp_path: Path) -> None:
    model = _compact()
    path = save_model(tmp_path / "w.safetensors", torch.nn.DataParallel(model))
    state, meta = load_state_dict(path)
    assert meta["arch"] == "srvggnetcompact" and set(state) == set(model.state_dict())


def test_realesrgan_rrdbnet_pth_is_detected(tmp_path: Path) -> None:
    """Real-ESRGAN x4plus-style file (RRDBNet, params_ema, no metadata) loads with no flags."""
    torch.manual_seed(0)
    kwargs = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}
    ref = build_arch("rrdbnet", scale=4, **kwargs).eval()
    torch.save({"params_ema": ref.state_dict()}, tmp_path / "RealESRGAN_x4plus.pth")
    model = load_model(tmp_path / "RealESRGAN_x4plus.pth")
    assert (
        attr_dict(model, "checkpoint_meta")["detected"]
        and model.scale == 4
        and attr_dict(model, "arch_kwargs")["num_block"] == 2
    )
    assert _same_output(ref, model) == 0.0


@pytest.mark.parametrize("fused", [False, True])
def test_paragonsr_v1_pth_needs_and_uses_the_callers_scale(tmp_path: Path, fused: bool) -> None:
    """v1 files carry no scale: detection rebuilds the variant only with scale= from the caller or metadata."""
    from paragonsr.archs.detect import detect_arch as detect_in_archs

    assert detect_arch is detect_in_archs  # the checkpoint module re-exports it
    torch.manual_seed(0)
    ref = narrow(ParagonSR, build_arch("paragonsr_nano", scale=3, in_ch=1, out_ch=1)).eval()
    for p in ref.parameters():  # LayerScale starts at 1e-5: make the blocks matter for the comparison
        p.data.normal_(0, 0.2)
    if fused:
        ref.fuse_for_release()
    torch.save({"params_ema": ref.state_dict()}, tmp_path / "v1.pth")
    assert detect_arch(ref.state_dict(), scale=3) == ("paragonsr_nano", {"scale": 3, "in_ch": 1, "out_ch": 1})
    with pytest.raises(CheckpointError, match=r"v1\.pth: ParagonSR v1 weights \(paragonsr_nano\).*scale"):
        load_model(tmp_path / "v1.pth")
    model = load_model(tmp_path / "v1.pth", scale=3)
    assert (
        model.scale == 3 and model.fused is fused and attr_dict(model, "checkpoint_meta")["detected"] is True
    )
    assert _same_output(ref, model, in_ch=1) == 0.0
    save_model(tmp_path / "v1_meta.safetensors", ref.state_dict(), metadata={"scale": 3})  # scale, no arch
    assert load_model(tmp_path / "v1_meta.safetensors").scale == 3


def test_recorded_scale_used_when_the_file_has_no_arch_kwargs(tmp_path: Path) -> None:
    """A ParagonSR2 built directly (no build_arch: no arch name/kwargs in the metadata) records scale 2; loading
    it with --arch used to build the default x4 model, into which the scale-independent weights fit silently."""
    import torch

    from paragonsr.archs.paragonsr2 import ParagonSR2
    from paragonsr.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = ParagonSR2(scale=2, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0)
    path = save_model(tmp_path / "plain.safetensors", model)
    loaded = load_model(path, arch="paragonsr2", num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0)
    assert loaded.scale == 2
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert (
        load_model(
            path, arch="paragonsr2", scale=3, num_feat=8, num_groups=1, num_blocks=1, hr_blocks=0
        ).scale
        == 3
    )
