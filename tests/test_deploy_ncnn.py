"""NCNN export: round trips of each architecture family through pnnx + the ncnn runtime, the export form of the
Magic Kernel Sharp upsampler, the verified release step, the app-facing layout and malformed ``.param`` errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytest.importorskip("ncnn", reason="the ncnn runtime is not installed (pip install 'paragonsr[ncnn]')")
pytest.importorskip("pnnx", reason="the pnnx converter is not installed (pip install 'paragonsr[ncnn]')")

from conftest import imread
from paragonsr.archs import build_arch
from paragonsr.archs.mks_upsample import MagicKernelSharpUpsample
from paragonsr.deploy import ncnn_release
from paragonsr.deploy.ncnn_export import (
    MKSExport,
    app_model_name,
    convert_ncnn,
    export_form,
    upscayl_scale,
)
from paragonsr.deploy.release import ExportOptions, export_release
from paragonsr.errors import InputError
from paragonsr.infer.ncnn_backend import NcnnBackend
from paragonsr.infer.ncnn_param import (
    INPUT_BLOB,
    OUTPUT_BLOB,
    NcnnParamError,
    chainner_view,
    parse_param,
    read_param,
)

SIZES = ((24, 20), (33, 17))


def _family(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "paragonsr2":  # tiny, scale 3, a body that matters (layer scale 0.5, not 1e-5)
        kw = dict(num_feat=8, num_groups=1, num_blocks=1, hr_blocks=1, layer_scale_init=0.5)
        return build_arch("paragonsr2", scale=3, **kw).eval()
    if name == "compact":
        return build_arch("compact", num_feat=8, num_conv=2, upscale=2).eval()
    if name == "span":
        return build_arch("span", scale=2, feature_channels=8).eval()
    return build_arch("rrdbnet", scale=4, num_feat=8, num_block=1, num_grow_ch=4).eval()


@pytest.fixture(scope="module", params=["paragonsr2", "compact", "span", "rrdbnet"])
def converted(request, tmp_path_factory):
    model = _family(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    param, bin_ = folder / "m-x.param", folder / "m-x.bin"
    convert_ncnn(model, param, bin_)
    return request.param, model, param


def test_round_trip_two_sizes_matches_pytorch(converted):
    name, model, param = converted
    backend = NcnnBackend(param, threads=1)
    assert (backend.scale, backend.in_ch, backend.out_ch) == (model.scale, 3, 3)
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w)  # batch of 2: the backend runs it image by image
        with torch.no_grad():
            ref = model(x)
        got = backend(x)
        assert got.shape == ref.shape == (2, 3, h * model.scale, w * model.scale)
        # fp32 rounding only: far inside the 1/255 release gate
        assert float((got - ref).abs().max()) < 1e-4 * max(1.0, float(ref.abs().max())), name


def test_blob_names_and_what_the_apps_read(converted):
    _, model, param = converted
    graph = read_param(param)
    assert graph.input_names == [INPUT_BLOB] and graph.output_names == [OUTPUT_BLOB]
    assert graph.layers[0].name == INPUT_BLOB and graph.layers[-1].outputs == [
        OUTPUT_BLOB
    ]  # chaiNNer: first/last
    assert chainner_view(graph) == {"scale": model.scale, "in_nc": 3, "out_nc": 3}


def test_paragonsr2_upsamplers_merge_into_one_upsampling_step(converted):
    name, _, param = converted
    if name != "paragonsr2":
        pytest.skip("ParagonSR2 only")
    deconvs = [la for la in read_param(param).layers if la.type.startswith("Deconvolution")]
    # one W pass and one H pass over features + image channels together (8 + 3), not two of each
    assert [
        (la.int_param(3, 1), la.int_param(13, la.int_param(3, 1)), la.int_param(0)) for la in deconvs
    ] == [
        (3, 1, 11),
        (1, 3, 11),
    ]


@pytest.mark.parametrize("scale,alpha", [(2, 0.5), (3, 0.0), (4, 1.0)])
def test_mks_export_form_equals_the_upsampler(scale, alpha):
    up = MagicKernelSharpUpsample(5, scale, alpha=alpha).eval()
    x = torch.rand(1, 5, 13, 9)
    with torch.no_grad():
        assert torch.allclose(MKSExport(up)(x), up(x), atol=1e-6)


def test_paragonsr2_export_form_equals_model_with_plain_feature_upsampler():
    torch.manual_seed(1)
    model = build_arch(
        "paragonsr2", scale=2, num_feat=8, num_groups=1, num_blocks=1, upsampler_alpha=0.0
    ).eval()
    x = torch.rand(1, 3, 15, 11)
    with torch.no_grad():
        assert torch.allclose(export_form(model)(x), model(x), atol=1e-6)


def test_upscayl_name_rule_and_names():
    assert [upscayl_scale(n) for n in ("realesr-animevideov3-x3", "4x_foo", "plain", "m-x2-fp16")] == [
        3,
        4,
        4,
        2,
    ]
    assert app_model_name("default", 2, False) == "default-x2"
    assert app_model_name("default", 2, True) == "default-x2-fp16"
    assert app_model_name("2xTiny", 2, False) == "2xTiny-x2"  # kept: upscayl reads x2 from it
    # 'x1' / '4x' inside a name would make upscayl read the wrong scale (x1 is looked for first): neutralised
    assert app_model_name("compact_x16", 2, False) == "compact__16-x2"
    assert app_model_name("2xfoo", 4, True) == "2_foo-x4-fp16"


# ------------------------------------------------------------------------------------------------ malformed


GOOD = "7767517\n2 2\nInput in0 0 1 in0\nConvolution c 1 1 in0 out0 0=3 1=3 6=81\n"


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "magic number"),
        ("7767517\n", "layer count"),
        ("7767517\n3 2\nInput in0 0 1 in0\nConvolution c 1 1 in0 out0 0=3\n", "declares 3 layers"),
        ("7767517\n2 2\nInput in0 0 1 in0\nConvolution c 1 1 nope out0 0=3\n", "no earlier layer produces"),
        ("7767517\n2 2\nInput in0 0 1 in0\nConvolution c 1 1 in0 out0 0=x\n", "not numeric"),
        ("7767517\n2 2\nInput in0 0 1 in0\nConvolution c 1 1 in0 out0 zz\n", "not '<id>=<value>'"),
        ("7767517\n2 2\nInput in0 0 1 in0\nSlice s 1 1 in0 out0 -23300=3,1,2\n", "wrong count"),
    ],
)
def test_malformed_param_is_one_clear_error(tmp_path, text, why):
    path = tmp_path / "bad.param"
    path.write_text(text)
    with pytest.raises(NcnnParamError) as info:
        read_param(path)
    msg = str(info.value)
    assert str(path) in msg and why in msg and "\n" not in msg
    parse_param(GOOD)  # the well-formed twin parses


def test_backend_errors_name_the_file(tmp_path, converted):
    _, _, param = converted
    binary = tmp_path / "b.param"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NcnnParamError, match="binary content"):
        NcnnBackend(binary)
    lonely = tmp_path / "lonely.param"
    lonely.write_text(param.read_text())
    with pytest.raises(FileNotFoundError, match=r"lonely\.bin"):
        NcnnBackend(lonely)
    short = tmp_path / "short.param"
    short.write_text(param.read_text())
    (tmp_path / "short.bin").write_bytes(param.with_suffix(".bin").read_bytes()[:100])
    with pytest.raises(InputError, match=r"short\.bin"):
        NcnnBackend(short)


# ------------------------------------------------------------------------------------------------ release step

OPTS = ExportOptions(lr_crop=24, sizes=SIZES, latency_size=0, calib_per_image=1, ncnn=True)


@pytest.fixture(scope="module")
def compact_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel")
    res = export_release(_family("compact"), out, "2xTiny", options=OPTS, log=lambda s: None)
    return out, res


def test_release_writes_verified_pairs_for_the_apps(compact_release):
    out, res = compact_release
    assert res.ok, res.refused
    files = sorted(p.name for p in (out / "models").iterdir())
    assert files == ["2xTiny-x2-fp16.bin", "2xTiny-x2-fp16.param", "2xTiny-x2.bin", "2xTiny-x2.param"]
    gates = {g.name: g for g in res.gates}
    assert gates["ncnn_fp32_parity"].passed and gates["ncnn_fp32_parity"].value < 1 / 255
    assert gates["ncnn_fp16_storage_vs_fp32"].passed and gates["ncnn_fp16_storage_vs_fp32"].value >= 45
    fp32_bin, fp16_bin = (out / "models" / f for f in ("2xTiny-x2.bin", "2xTiny-x2-fp16.bin"))
    assert fp16_bin.stat().st_size < 0.6 * fp32_bin.stat().st_size  # fp16 storage: about half
    assert NcnnBackend(out / "models" / "2xTiny-x2-fp16.param").precision == "fp16-storage"
    card = (out / "MODEL_CARD.md").read_text()
    assert "upscayl" in card and "chaiNNer" in card and "models/2xTiny-x2.param" in card
    assert not [p.name for p in out.rglob(".*")]  # no scratch file left, in models/ or beside it


def test_release_refuses_a_pair_that_does_not_match(tmp_path, monkeypatch):
    """A converter that produced another net (here: other weights) fails the FP32 gate; nothing is written and a
    pair of the same name from an earlier export is removed with it."""
    real = ncnn_release.convert_ncnn

    def wrong(model, param, bin_, **kw):
        other = _family("compact")
        with torch.no_grad():
            for p in other.parameters():
                p.add_(0.05)
        real(other, param, bin_, **kw)

    monkeypatch.setattr(ncnn_release, "convert_ncnn", wrong)
    (tmp_path / "models").mkdir()
    stale = tmp_path / "models" / "2xTiny-x2.param"
    stale.write_text(GOOD)
    opts = replace(OPTS, sizes=((24, 20),))
    res = export_release(_family("compact"), tmp_path, "2xTiny", options=opts, log=lambda s: None)
    assert not res.ok
    assert any("2xTiny-x2.param/.bin not written" in r for r in res.refused)
    assert not stale.exists() and not list((tmp_path / "models").iterdir())


def test_upscale_cli_runs_the_pair_through_the_tiler(compact_release, tmp_path, capsys):
    import cv2

    from paragonsr.cli import main
    from paragonsr.infer.backends import TorchBackend

    out, _ = compact_release
    rng = np.random.default_rng(0)
    img = (rng.random((50, 70, 3)) * 255).astype(np.uint8)
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), img)
    dst = tmp_path / "out.png"
    param = out / "models" / "2xTiny-x2.param"
    assert main(["upscale", str(src), "-o", str(dst), "-m", str(param), "--tile", "32", "-q"]) == 0
    got = imread(dst, cv2.IMREAD_UNCHANGED)
    x = torch.from_numpy(img[:, :, ::-1].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    ref = TorchBackend(_family("compact"), device="cpu", precision="fp32")(x)
    want = (ref.clamp(0, 1)[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255 + 0.5).astype(np.uint8)
    assert got.shape == (100, 140, 3)
    assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1  # tiles cross-faded, 8-bit rounding
