"""The size multiple of a foreign ONNX model read from its graph (issue 26): strides down, upsampling back,
lcm of what each downsampling needs; None (and trial runs) where the graph's effect on H and W cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from paragonsr.infer.onnx_multiple import graph_size_multiple


def _graph(nodes: list, consts: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A model with image input ``x`` (1x4xHxW, H and W dynamic) and output ``y`` from ``nodes``."""
    inits = [numpy_helper.from_array(v, k) for k, v in (consts or {}).items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "c", "oh", "ow"])
    return helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )


W = np.zeros((4, 4, 3, 3), np.float32)


def conv(i: str, o: str, s: int) -> onnx.NodeProto:
    return helper.make_node("Conv", [i, "w"], [o], strides=[s, s], pads=[1, 1, 1, 1])


def resize(i: str, o: str, s: float) -> onnx.NodeProto:
    return helper.make_node("Resize", [i, "", f"s{s}"], [o], mode="nearest")


SCALES = {f"s{s}": np.array([1, 1, s, s], np.float32) for s in (2.0, 0.5)}


@pytest.mark.parametrize(
    ("nodes", "want"),
    [
        ([helper.make_node("Relu", ["x"], ["y"])], 1),
        ([conv("x", "a", 2), conv("a", "b", 2), conv("b", "c", 2), resize("c", "y", 2.0)], 8),
        (  # U-Net: two pooling levels, upsampled back, skip added
            [
                helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                helper.make_node("AveragePool", ["p"], ["q"], kernel_shape=[2, 2], strides=[2, 2]),
                helper.make_node("ConvTranspose", ["q", "wt"], ["u"], strides=[4, 4], kernel_shape=[4, 4]),
                helper.make_node("Add", ["x", "u"], ["y"]),
            ],
            4,
        ),
        (  # pixel-unshuffle as SpaceToDepth, x2 net: needs 2
            [
                helper.make_node("SpaceToDepth", ["x"], ["d"], blocksize=2),
                helper.make_node("DepthToSpace", ["d"], ["y"], blocksize=4),
            ],
            2,
        ),
        ([resize("x", "u", 2.0), conv("u", "y", 2)], 1),  # upsampled first: the stride-2 conv needs nothing
        (
            [
                resize("x", "u", 2.0),
                helper.make_node("MaxPool", ["u"], ["y"], kernel_shape=[3, 3], strides=[3, 3]),
            ],
            3,
        ),
        ([resize("x", "d", 0.5), conv("d", "y", 3)], 6),  # a downscaling Resize counts as a stride
        (  # channel attention: a global pool and a reduction over H, W are not images; the multiply keeps x's size
            [
                helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                helper.make_node("ReduceMean", ["x"], ["r"], axes=[2, 3]),
                helper.make_node("Mul", ["g", "x"], ["m"]),
                helper.make_node("Add", ["r", "m"], ["z"]),
                conv("z", "y", 2),
            ],
            2,
        ),
        ([helper.make_node("Reshape", ["x", "shape"], ["y"])], None),  # a Reshape on the image: unreadable
        ([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"])], None),  # resized to given sizes
        ([helper.make_node("MatMul", ["x", "x"], ["y"])], None),
    ],
)
def test_size_multiple_read_from_graph(nodes: list, want: int | None) -> None:
    consts: dict[str, np.ndarray] = {"w": W, "wt": np.zeros((4, 4, 4, 4), np.float32), "shape": np.array([1, -1], np.int64),
              "sizes": np.array([1, 4, 8, 8], np.int64), **SCALES}  # fmt: skip
    used = {i for n in nodes for i in n.input}
    model = _graph(nodes, {k: v for k, v in consts.items() if k in used})
    onnx.checker.check_model(model)
    assert graph_size_multiple(model) == want


class _DeepUNet(nn.Module):
    """``levels`` stride-2 convolutions down, nearest x2 back, skip concatenations: needs 2**levels."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(4, 4, 3, stride=2, padding=1) for _ in range(levels))
        self.up = nn.ModuleList(nn.Conv2d(8, 4, 3, padding=1) for _ in range(levels))
        self.out = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], self.inp(x)
        for d in self.down:
            skips.append(h)
            h = d(h)
        for u, s in zip(self.up, reversed(skips)):
            h = u(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), s], 1))
        return self.out(h)


def _export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(model.eval(), (torch.rand(1, 3, 128, 128),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})  # fmt: skip
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter, as foreign tools use
def test_a_7_level_unet_gets_its_multiple_of_128_beyond_what_trial_runs_reach(tmp_path: Path) -> None:
    from paragonsr.infer.onnx_backend import OnnxBackend

    torch.manual_seed(0)
    model = _DeepUNet(7)
    path = _export(model, tmp_path / "deep.onnx")
    assert graph_size_multiple(path) == 128
    backend = OnnxBackend(path, provider="cpu")
    assert (backend.scale, backend.size_multiple) == (1, 128)  # trial runs alone stop at 64
    x = torch.rand(1, 3, 130, 70)
    with torch.no_grad():
        want = model(F.pad(x, (0, 58, 0, 126), mode="replicate"))[..., :130, :70]
    assert torch.allclose(backend(x), want, atol=1e-5)  # padded up to 256x128, cropped back


class _ReshapeUnshuffle(nn.Module):
    """A pixel-unshuffle written with view/permute (Reshape in the graph): the graph cannot be read, so the
    multiple (2) comes from trial runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)
        return F.pixel_shuffle(self.conv(y), 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_unreadable_graph_falls_back_to_trial_runs(tmp_path: Path) -> None:
    from paragonsr.infer.onnx_backend import OnnxBackend

    path = _export(_ReshapeUnshuffle(), tmp_path / "unshuffle.onnx")
    assert graph_size_multiple(path) is None
    assert OnnxBackend(path, provider="cpu").size_multiple == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_wrong_reading_is_caught_by_its_check_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import paragonsr.infer.onnx_multiple as om
    from paragonsr.infer.onnx_backend import OnnxBackend

    path = _export(_DeepUNet(2), tmp_path / "unet4.onnx")
    assert graph_size_multiple(path) == 4
    monkeypatch.setattr(om, "graph_size_multiple", lambda _p: 2)  # too small: its check run fails
    assert OnnxBackend(path, provider="cpu").size_multiple == 4  # ... and the trial runs find 4
