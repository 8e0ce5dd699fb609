"""NCNN backend (CPU) for ``paragonsr upscale -m model.param``: the runtime side of ``paragonsr export --ncnn``.

Same protocol as the torch and ONNX backends: ``scale``/``in_ch``/``out_ch`` and
``__call__(x: Tensor[B, C, h, w] float32 in [0, 1]) -> Tensor[B, C', s·h, s·w]``; tiling, alpha and 16-bit
handling stay in the caller (the project's tiler). Used for parity checks of exported pairs against PyTorch
and ONNX; the desktop apps run the same files on Vulkan GPUs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paragonsr.errors import InputError
from paragonsr.infer.ncnn_param import INPUT_BLOB, OUTPUT_BLOB, NcnnParamError, read_param
from paragonsr.tiling import SizeNeeds


def require_ncnn() -> Any:
    try:
        import ncnn
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(
            "the NCNN backend needs the ncnn runtime: pip install 'paragonsr[ncnn]'"
        ) from exc
    return ncnn


class NcnnBackend:
    """Run an NCNN ``.param`` + ``.bin`` pair (the ``.bin`` beside the ``.param``, same stem) on the CPU.

    The input and output blobs are ``data``/``output`` (this project's exports, realesrgan-ncnn-vulkan's
    models) or the single input/output a foreign graph declares (e.g. pnnx's ``in0``/``out0``). Scale and
    channels are read from one tiny probe run (1 or 3 input channels, whichever the net accepts).

    Raises FileNotFoundError (either file missing), :class:`~paragonsr.infer.ncnn_param.NcnnParamError`
    (malformed ``.param``) or InputError (a ``.bin`` that does not fit the graph).
    """

    def __init__(
        self,
        param: str | os.PathLike[str],
        threads: int = 0,
        *,
        bin_path: str | os.PathLike[str] | None = None,
    ) -> None:
        ncnn = require_ncnn()
        self.path = Path(param)
        self.bin_path = Path(bin_path) if bin_path is not None else self.path.with_suffix(".bin")
        graph = read_param(self.path)  # one clear error for a malformed file, before ncnn prints its own
        if not self.bin_path.is_file():
            raise FileNotFoundError(
                f"NCNN weights not found: {self.bin_path} (expected beside {self.path.name})"
            )
        outs = graph.output_names
        self.input_name = INPUT_BLOB if INPUT_BLOB in graph.input_names else graph.input_names[0]
        if OUTPUT_BLOB in outs:
            self.output_name = OUTPUT_BLOB
        elif len(outs) == 1:
            self.output_name = outs[0]
        else:
            raise NcnnParamError(
                f"{self.path}: expected one output blob ('{OUTPUT_BLOB}'), the graph has {outs}"
            )
        self.op_types = graph.op_types()
        self.threads = int(threads) or max(1, os.cpu_count() or 1)
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = self.threads
        if self.net.load_param(str(self.path)) != 0:
            raise NcnnParamError(
                f"{self.path}: ncnn could not load this .param (unsupported layer or parameter)"
            )
        if self.net.load_model(str(self.bin_path)) != 0:
            raise InputError(
                f"{self.bin_path}: ncnn could not load the weights (truncated, or from another .param)"
            )
        self._ncnn = ncnn
        self.precision = "fp16-storage" if self._bin_is_fp16() else "fp32"
        self.in_ch, self.scale, self.out_ch = self._probe()
        self.size_needs = SizeNeeds(scale=self.scale)

    def _bin_is_fp16(self) -> bool:
        """Whether the first weight block carries ncnn's float16 tag (pnnx writes every block in one storage)."""
        with open(self.bin_path, "rb") as f:
            head = f.read(4)
        return len(head) == 4 and int.from_bytes(head, "little") == 0x01306B47

    def _extract(self, chw: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(chw, dtype=np.float32)
        mat = self._ncnn.Mat(arr).clone()  # the Mat must not borrow a buffer that can be freed under it
        ex = self.net.create_extractor()
        if ex.input(self.input_name, mat) != 0:
            raise InputError(f"{self.path}: ncnn refused the input blob '{self.input_name}'")
        ret, out = ex.extract(self.output_name)
        if ret != 0:
            raise InputError(f"{self.path}: ncnn failed to compute blob '{self.output_name}' (error {ret})")
        return np.array(out, dtype=np.float32, copy=True)

    def _probe(self) -> tuple[int, int, int]:
        last: Exception | None = None
        for in_ch in (3, 1):
            try:
                out = self._extract(np.zeros((in_ch, 16, 16), dtype=np.float32))
            except InputError as exc:
                last = exc
                continue
            if (
                out.ndim == 3
                and out.shape[1] % 16 == 0
                and out.shape[1] == out.shape[2]
                and out.shape[1] >= 16
            ):
                return in_ch, out.shape[1] // 16, int(out.shape[0])
        raise InputError(
            f"{self.path}: cannot infer an integer scale from a 16x16 probe ({last or 'odd output shape'})"
        )

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in, NCHW float32 out (no clipping); a batch runs image by image (ncnn nets take one)."""
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected input of shape [B, {self.in_ch}, H, W], got {tuple(x.shape)}")
        return np.stack([self._extract(img) for img in x])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(x.detach().to("cpu", torch.float32).numpy()))

    def __repr__(self) -> str:
        return f"NcnnBackend({self.path.name}, scale={self.scale}, storage={self.precision}, cpu threads={self.threads})"


__all__ = ["NcnnBackend", "require_ncnn"]
