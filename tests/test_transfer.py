"""SRVGGNetCompact weight transfer: shapes, top-k sorted channels, identity cases, CLI report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paragonsr.archs import build_arch
from paragonsr.checkpoint import load_model, save_model
from paragonsr.cli import main
from paragonsr.transfer import build_pair, depth_map, topk_channels, transfer_compact


@pytest.fixture(scope="module")
def src() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_arch("srvggnetcompact", num_feat=16, num_conv=4, upscale=2)
    with torch.no_grad():  # distinct PReLU slopes and non-trivial norms, like a trained model
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


def _x() -> torch.Tensor:
    return torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def test_shapes_and_upscale(src: torch.nn.Module) -> None:
    res = transfer_compact(src.state_dict(), num_feat=8, num_conv=8)
    ref = build_arch("srvggnetcompact", num_feat=8, num_conv=8, upscale=2).state_dict()
    assert {k: v.shape for k, v in res.state_dict.items()} == {k: v.shape for k, v in ref.items()}
    assert res.dst_kwargs == {**res.src_kwargs, "num_feat": 8, "num_conv": 8}
    _, dst = build_pair(res)
    assert dst(_x()).shape == (1, 3, 24, 24)
    assert res.state_dict["body.18.weight"].shape == (3 * 2 * 2, 8, 3, 3)


def test_kept_channels_are_topk_by_norm_sorted(src: torch.nn.Module) -> None:
    sd = src.state_dict()
    res = transfer_compact(sd, num_feat=8, num_conv=4)
    for layer, key in enumerate(["body.0", "body.2", "body.4", "body.6", "body.8"]):
        w = sd[f"{key}.weight"].numpy()
        norms = np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(1))
        expect = sorted(np.argsort(-norms)[:8].tolist())
        assert res.kept[layer] == expect
        assert min(norms[expect]) >= max(np.delete(norms, expect))
    k0, k1 = res.kept[0], res.kept[1]
    out = res.state_dict
    assert torch.equal(out["body.0.weight"], sd["body.0.weight"][k0])
    assert torch.equal(out["body.1.weight"], sd["body.1.weight"][k0])  # PReLU slopes sliced alike
    assert torch.equal(out["body.2.weight"], sd["body.2.weight"][k1][:, k0])
    assert torch.equal(out["body.10.weight"], sd["body.10.weight"][:, res.kept[4]])  # last conv: inputs only
    assert topk_channels(torch.tensor([[1.0], [3.0], [2.0]]), 2) == [1, 2]


def test_same_size_transfer_is_identity(src: torch.nn.Module) -> None:
    res = transfer_compact(src.state_dict(), num_feat=16, num_conv=4)
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in res.state_dict.items())
    _, dst = build_pair(res)
    with torch.no_grad():
        assert torch.equal(dst(_x()), src(_x()))


def test_inserted_convs_are_exact_identities(src: torch.nn.Module) -> None:
    sd = src.state_dict()
    assert depth_map(4, 8) == [0, None, 1, None, 2, None, 3, None]
    _, narrow = build_pair(transfer_compact(sd, num_feat=8, num_conv=4))
    res = transfer_compact(sd, num_feat=8, num_conv=8)
    _, deep = build_pair(res)
    wide_res = transfer_compact(sd, num_feat=24, num_conv=6)
    _, wide = build_pair(wide_res)
    with torch.no_grad():
        assert torch.allclose(deep(_x()), narrow(_x()), atol=1e-6)  # 8/8 == 8/4 exactly
        assert torch.allclose(wide(_x()), src(_x()), atol=1e-5)  # widening + deepening keeps the function
        assert not torch.allclose(narrow(_x()), src(_x()), atol=1e-3)  # narrowing does not (needs fine-tune)
    assert torch.count_nonzero(wide_res.state_dict["body.0.weight"][16:]) == 0
    copy = transfer_compact(sd, num_feat=8, num_conv=8, depth_mode="copy")
    assert copy.layer_map == [0, 0, 1, 1, 2, 2, 3, 3]
    for a, b in (
        ("body.4.weight", "body.2.weight"),
        ("body.4.bias", "body.2.bias"),
        ("body.5.weight", "body.3.weight"),
    ):
        assert torch.equal(copy.state_dict[a], copy.state_dict[b])  # literal duplicates
    shallow = transfer_compact(sd, num_feat=8, num_conv=2)
    assert shallow.layer_map == [0, 3] and "not preserved" in shallow.notes[0]


def test_bad_source_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="not an SRVGGNetCompact state dict"):
        transfer_compact({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, 8, 8)
    with pytest.raises(ValueError, match="depth_mode"):
        depth_map(4, 8, "stretch")


def test_cli_transfer_report(src: torch.nn.Module, photo_paths: list[Path], tmp_path: Path) -> None:
    ckpt = save_model(tmp_path / "src.pth", src)
    out = tmp_path / "small.safetensors"
    rc = main(["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "8", "--conv", "8",
               "--samples", *map(str, photo_paths[:2]), "--crop", "32"])  # fmt: skip
    assert rc == 0
    rep = json.loads((tmp_path / "small.safetensors.report.json").read_text())
    assert rep["params_source"] == sum(p.numel() for p in src.parameters())
    assert rep["params_target"] == sum(
        p.numel() for p in build_arch("compact", num_feat=8, num_conv=8, upscale=2).parameters()
    )
    assert len(rep["psnr_per_image"]) == 2 and 5 < rep["psnr_dst_vs_src_mean"] < 100
    model = load_model(out)
    assert (model.num_feat, model.num_conv, model.scale) == (8, 8, 2)
    assert main(["transfer", "-i", str(tmp_path / "nope.pth"), "-o", str(out)]) == 1


def test_transfer_bad_samples_fail_cleanly(tmp_path: Path, capsys) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    out = tmp_path / "t.safetensors"
    base = ["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "1", "--samples"]
    assert main([*base, str(tmp_path / "nope.png")]) == 1
    assert "nope.png not found" in capsys.readouterr().err
    (tmp_path / "s").mkdir()
    assert main([*base, str(tmp_path / "s")]) == 1  # empty folder: was a ZeroDivisionError
    (tmp_path / "s" / "bad.png").write_bytes(b"junk")
    assert main([*base, str(tmp_path / "s")]) == 1  # undecodable: was a traceback
    assert "bad.png" in capsys.readouterr().err
    assert not out.exists()  # nothing written before the inputs are known good


def test_transfer_reports_psnr_on_bundled_samples_by_default(tmp_path: Path) -> None:
    import json

    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    out = tmp_path / "t.safetensors"
    # the report gives the PSNR against the source's outputs; it used to need an explicit --samples
    assert (
        main(["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "2", "--crop", "16"]) == 0
    )
    rep = json.loads(Path(f"{out}.report.json").read_text())
    assert len(rep["psnr_per_image"]) >= 1 and rep["psnr_dst_vs_src_mean"] > 0
    assert main(["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "2", "--samples"]) == 0
    assert "psnr_per_image" not in json.loads(Path(f"{out}.report.json").read_text())
