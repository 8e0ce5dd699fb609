"""The shared tiler: size needs (multiple, minimum, static ONNX input), one tile-size meaning for every CLI and the
option file, tiled == whole image for torch and ONNX backends, and validation metrics through the tiler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import conv_stack
from paragonsr.errors import InputError
from paragonsr.tiling import (
    TILE_HELP,
    NonFiniteOutputError,
    SizeNeeds,
    Tiler,
    parse_tile,
    plan_axis,
    run_padded,
    tiled_forward,
)


class _Unshuffled(nn.Module):
    """x2 model that only takes even sizes (pixel-unshuffle by 2, convs, pixel-shuffle by 4): needs multiple 2."""

    scale, in_ch, out_ch = 2, 3, 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 48, 3, padding=1)
        )
        self.up = nn.PixelShuffle(4)
        self.size_needs = SizeNeeds(scale=2, multiple=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(x))


@pytest.mark.parametrize(
    ("value", "want"),
    [(0, 0), (None, 0), ("0", 0), (" AUTO ", "auto"), ("auto", "auto"), ("128", 128), (64, 64)],
)
def test_parse_tile_normalises_every_spelling(value: object, want: object) -> None:
    assert parse_tile(value) == want


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("16", "--tile 16 is too small (minimum 32 px, 0 = whole image, or auto)"),
        ("-3", "--tile must be >= 0 pixels (0 = whole image) or 'auto', got -3"),
        ("none", "--tile must be a number of pixels, 0 (whole image) or 'auto', got 'none'"),
        (True, "--tile must be a number of pixels, 0 (whole image) or 'auto', got True"),
        (1.5, "--tile must be a number of pixels, 0 (whole image) or 'auto', got 1.5"),
    ],
)
def test_parse_tile_errors_name_the_option(value: object, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_tile(value, "--tile")
    assert str(info.value) == message


def test_upscale_and_eval_share_one_tile_option() -> None:
    import argparse

    from paragonsr.commands import eval as eval_cmd
    from paragonsr.commands import upscale as upscale_cmd

    helps = {}
    for name, mod in (("upscale", upscale_cmd), ("eval", eval_cmd)):
        p = argparse.ArgumentParser()
        mod.add_arguments(p)
        action = next(a for a in p._actions if "--tile" in a.option_strings)
        helps[name] = (action.help or "").rsplit(" (default", 1)
    expected = TILE_HELP.format(min_tile=32)
    assert helps["upscale"] == [expected, " auto)"] and helps["eval"] == [expected, " 512)"]


def test_eval_cli_rejects_a_bad_tile_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    from paragonsr.cli import main

    (tmp_path / "gt").mkdir()
    cv2.imwrite(str(tmp_path / "gt" / "a.png"), np.zeros((16, 16, 3), np.uint8))
    argv = [
        "eval",
        "--gt",
        str(tmp_path / "gt"),
        "--model",
        "x.onnx",
        "--tile",
        "whole",
        "-o",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --tile must be a number of pixels, 0 (whole image) or 'auto', got 'whole'"
    )


def test_val_tile_size_has_the_same_meaning() -> None:
    from paragonsr.train.options import ValOpt

    assert ValOpt(tile_size=None).tile_size == 0 and ValOpt(tile_size="Auto").tile_size == "auto"
    assert ValOpt(tile_size=12).tile_size == 12  # validation allows small tiles (context comes on top)
    with pytest.raises(
        ValueError, match=r"val.tile_size must be a number of pixels, 0 \(whole image\) or 'auto'"
    ):
        ValOpt(tile_size="whole")


def test_size_needs_padding_and_errors() -> None:
    seen: list[tuple[int, ...]] = []

    def nearest2(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        return t.repeat_interleave(2, -2).repeat_interleave(2, -1)

    x = torch.rand(2, 3, 5, 7)
    out = run_padded(nearest2, x, SizeNeeds(scale=2, multiple=4, min_size=8, fixed_batch=1))
    assert seen == [(1, 3, 8, 8), (1, 3, 8, 8)]  # padded up to the minimum, then the multiple; image by image
    torch.testing.assert_close(out, nearest2(x), rtol=0, atol=0)  # crop removes exactly the padding
    with pytest.raises(ValueError, match="fixed input size 30x32 breaks multiple 4"):
        SizeNeeds(scale=2, multiple=4, fixed_hw=(30, 32))
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        SizeNeeds(scale=2, pad_mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"model returned \(1, 3, 10, 10\) for a \(1, 3, 8, 8\) input"):
        run_padded(lambda t: nearest2(t)[..., :10, :10], torch.rand(1, 3, 8, 8), SizeNeeds(scale=2))


def test_torch_backend_with_a_multiple_need_tiled_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.infer.backends import TorchBackend
    from paragonsr.infer.upscale import Upscaler

    model = _Unshuffled()
    backend = TorchBackend(model, "cpu", "fp32")
    assert backend.size_needs == SizeNeeds(scale=2, multiple=2)  # taken from the model
    img = np.random.default_rng(0).random((75, 61, 3), dtype=np.float32)  # odd sizes: every tile is padded
    whole, _ = Upscaler(backend, tile=0)(img)
    calls: list[tuple[int, int]] = []
    forward = backend.model.forward

    def counting(t: torch.Tensor) -> torch.Tensor:
        calls.append((t.shape[-2], t.shape[-1]))
        return forward(t)

    monkeypatch.setattr(backend.model, "forward", counting)
    tiled, _ = Upscaler(backend, tile=40, overlap=24)(img)  # radius (3 convs at half resolution) ≤ 6 ≤ margin
    assert len(calls) > 1 and all(h % 2 == 0 and w % 2 == 0 for h, w in calls)
    assert float(np.abs(whole - tiled).max()) <= 1e-5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter, chosen on purpose
def test_static_size_onnx_tiled_equals_the_whole_image_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paragonsr.infer.onnx_backend import OnnxBackend
    from paragonsr.infer.upscale import Upscaler

    model = conv_stack()
    path = tmp_path / "static.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17)
    backend = OnnxBackend(path, provider="cpu")
    assert backend.size_needs == SizeNeeds(scale=2, fixed_hw=(32, 32), fixed_batch=1)
    shapes: list[tuple[int, ...]] = []
    run = backend._session_run

    def recording(a: np.ndarray) -> np.ndarray:
        shapes.append(a.shape)
        return run(a)

    monkeypatch.setattr(backend, "_session_run", recording)
    img = np.random.default_rng(1).random((70, 45, 3), dtype=np.float32)
    for tile in (0, "auto", 64):  # whatever was asked for, the tiles are the static size, exactly
        shapes.clear()
        out, _ = Upscaler(backend, tile=tile)(img)
        assert len(shapes) == len(plan_axis(70, 32, 16, exact=True)[0]) * len(plan_axis(45, 32, 16)[0]) == 8
        assert set(shapes) == {(1, 3, 32, 32)}
        with torch.no_grad():
            ref = model(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).clamp(0, 1).numpy()
        assert float(np.abs(out - ref).max()) <= 1e-4  # everywhere: no tile is padded, margins 4 ≥ radius 3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_multiple_need_from_metadata(tmp_path: Path) -> None:
    import onnx

    from paragonsr.deploy.onnx_export import model_metadata, set_metadata
    from paragonsr.infer.onnx_backend import OnnxBackend
    from paragonsr.tiling import needs_of

    model = _Unshuffled().eval()
    assert model_metadata(model, "fp32")["size_multiple"] == 2  # export records the model's need
    path = tmp_path / "even.onnx"
    axes = {"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}
    torch.onnx.export(model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes=axes)  # fmt: skip
    proto = onnx.load(str(path))
    set_metadata(proto, model_metadata(model, "fp32"))
    onnx.save(proto, str(path))
    backend = OnnxBackend(path, provider="cpu")
    assert needs_of(backend) == SizeNeeds(scale=2, multiple=2, fixed_batch=1)  # batch 1: as traced
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        want = model(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate"))[..., :74, :58]
    whole = backend(x)  # called directly: padded by the same tiler
    torch.testing.assert_close(whole, want, rtol=0, atol=1e-4)
    tiled = Tiler(32, overlap=16)(backend, x)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-4)


def test_check_finite_stops_at_the_first_bad_tile() -> None:
    calls = []

    def nan_right(t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        y = t.repeat_interleave(2, -2).repeat_interleave(2, -1)
        return y * float("nan") if float(t[..., -1, -1].mean()) > 0.5 else y

    x = torch.zeros(1, 3, 40, 100)
    x[..., 60:] = 1.0
    with pytest.raises(NonFiniteOutputError, match=r"holds NaN values \(tile at LR y=0, x=\d+\)"):
        tiled_forward(nan_right, x, 2, 40, 8, check_finite=True)
    assert len(calls) < len(plan_axis(100, 40, 8)[0])  # stopped before the last tile
    assert not bool(torch.isfinite(tiled_forward(nan_right, x, 2, 40, 8)).all())  # unchecked by default


def test_validation_metric_through_the_tiler_equals_the_whole_image(tmp_path: Path) -> None:
    from paragonsr.train.options import ValOpt
    from paragonsr.train.validation import BestTracker, val_tiler, validate

    model = conv_stack(seed=3)
    rng = np.random.default_rng(4)
    loader = [
        {
            "lq": torch.from_numpy(rng.random((1, 3, 45, 58), dtype=np.float32)),
            "gt": torch.from_numpy(rng.random((1, 3, 90, 116), dtype=np.float32) * 0.2 + 0.4),
            "gt_path": [f"img{i}.png"],
        }
        for i in range(1)
    ]
    metrics = {"psnr": {"type": "calculate_psnr", "crop_border": 2}, "ssim": {"type": "calculate_ssim"}}
    scores = {}
    for tile in (0, 12, "auto"):
        val = ValOpt(tile_size=tile, tile_pad=4, metrics=metrics)  # context 4 ≥ radius 3
        if tile == 12:
            tiler = val_tiler(val)
            assert (tiler.request, tiler.overlap, tiler.blend) == (20, 8, 0.0)
        scores[tile] = validate(model, loader, "v", val, 2, 1, torch.device("cpu"), tmp_path, BestTracker())
    assert scores[12] == pytest.approx(scores[0], abs=1e-9) and scores["auto"] == pytest.approx(
        scores[0], abs=1e-9
    )
    assert all(np.isfinite(v) for v in scores[0].values())
