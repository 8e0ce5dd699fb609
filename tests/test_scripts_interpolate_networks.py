"""scripts/interpolate_networks.py: parameter-wise alpha·A + (1 − alpha)·B of two checkpoints of one architecture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from conftest import REPO, load_script
from paragonsr.archs import build_arch
from paragonsr.checkpoint import load_model, load_state_dict, save_model

mod = load_script(REPO / "scripts" / "interpolate_networks.py")


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    a = build_arch("paragonsr2_nano", scale=2)
    b = build_arch("paragonsr2_nano", scale=2)
    for p in b.parameters():  # a different point, as a fine-tune's start would be
        p.data.add_(torch.randn_like(p) * 0.1)
    pa = save_model(tmp_path / "a.safetensors", a, metadata={"iter": 7})
    pb = save_model(tmp_path / "b.safetensors", b)
    return pa, pb


def test_interpolation_is_the_parameterwise_blend_and_records_its_sources(tmp_path: Path) -> None:
    pa, pb = _pair(tmp_path)
    out = tmp_path / "mix.safetensors"
    assert mod.main([str(pa), str(pb), "--alpha", "0.25", "-o", str(out)]) == 0
    sa, sb, so = load_state_dict(pa)[0], load_state_dict(pb)[0], load_state_dict(out)[0]
    for k in sa:
        if sa[k].is_floating_point():
            assert torch.allclose(so[k], 0.25 * sa[k] + 0.75 * sb[k], atol=1e-7), k
    meta = load_state_dict(out)[1]
    rec = meta["extra"]["interpolation"]
    assert rec["alpha"] == 0.25 and rec["a"] == "a.safetensors" and rec["b"] == "b.safetensors"
    assert rec["a_sha256"] == hashlib.sha256(pa.read_bytes()).hexdigest()
    assert meta["extra"]["iter"] == 7 and meta["arch"] == "paragonsr2_nano" and not meta["fused"]
    # the ends are the inputs themselves, and the blend loads and runs as the architecture it came from
    assert mod.main([str(pa), str(pb), "--alpha", "1", "-o", str(tmp_path / "one.safetensors")]) == 0
    one = load_state_dict(tmp_path / "one.safetensors")[0]
    assert all(torch.equal(one[k], sa[k]) for k in sa)
    y = load_model(out)(torch.rand(1, 3, 12, 12))
    assert y.shape == (1, 3, 24, 24) and torch.isfinite(y).all()


def test_mismatched_or_bad_inputs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pa, pb = _pair(tmp_path)
    other = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=8, num_conv=2, upscale=2))
    assert mod.main([str(pa), str(other), "--alpha", "0.5", "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "c.safetensors: arch srvggnetcompact" in err
    assert mod.main([str(pa), str(pb), "--alpha", "1.5", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "alpha must be in [0, 1], got 1.5" in capsys.readouterr().err
    before = pa.read_bytes()
    assert mod.main([str(pa), str(pb), "--alpha", "0.5", "-o", str(pa)]) == 2
    assert "would overwrite an input" in capsys.readouterr().err and pa.read_bytes() == before
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="different parameters"):
        mod.interpolate({"w": torch.zeros(1)}, {"v": torch.zeros(1)}, 0.5)
