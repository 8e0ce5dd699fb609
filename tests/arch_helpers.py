"""Helpers shared by the ParagonSR (v1) and RRDBNet tests: a tiny RRDBNet, photo batches, ONNX parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

TINY_RRDB: dict[str, Any] = dict(num_feat=8, num_block=2, num_grow_ch=4)


def photo_batch(photo_crop: np.ndarray, size: int) -> torch.Tensor:
    """(1, 3, size, size) float tensor from the top-left of the ``photo_crop`` fixture."""
    return torch.from_numpy(photo_crop[:size, :size]).permute(2, 0, 1).unsqueeze(0).contiguous()


def onnx_parity(model: torch.nn.Module, path: Path, sizes: list[tuple[int, int]]) -> float:
    """Export through the project's exporter (dynamic H/W, traced at an odd size) and compare with torch."""
    ort = pytest.importorskip("onnxruntime")
    from paragonsr.deploy.onnx_export import export_onnx

    model.eval()
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
