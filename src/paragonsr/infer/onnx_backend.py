"""ONNX Runtime backend for ``paragonsr upscale --backend onnx``.

Same protocol as the torch backend: ``scale``/``in_ch``/``out_ch`` attributes and
``__call__(x: Tensor[B, C, h, w] float32 CPU in [0, 1]) -> Tensor[B, C, s*h, s*w]``; tiling, alpha and 16-bit
handling live in the caller and are shared by both backends. What the session needs of its input sizes (a static
input size or batch of a foreign export, a ``paragonsr.size_multiple`` declared in the metadata) is described by
``size_needs`` and carried out by the shared tiler (``paragonsr.tiling``), also when the backend is called directly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paragonsr.errors import InputError
from paragonsr.tiling import DEFAULT_OVERLAP, SizeNeeds, tiled_forward

# Short names users type -> ONNX Runtime execution provider names.
PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
# Automatic choice. TensorRT is opt-in only: onnxruntime-gpu lists it even when libnvinfer is missing, and it
# builds a new engine (minutes) for every new tile shape, which is the opposite of "boringly reliable".
AUTO_ORDER = ("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider")


def _ort() -> Any:
    """onnxruntime with its telemetry off. The environment variable only works if set before the first import
    (the package sets it too); ``disable_telemetry_events`` covers a process that imported onnxruntime earlier."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    try:
        import onnxruntime
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installation
        raise ModuleNotFoundError(
            "the ONNX backend needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu / -directml)"
        ) from exc
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return onnxruntime


def resolve_providers(provider: str | Sequence[str] | None = None) -> list[str]:
    """Execution providers to use, best first, always ending with CPU as the fallback.

    ``provider`` is ``None``/"auto" (CUDA > DirectML > CPU from what is installed), a short name
    (cpu, cuda, tensorrt, directml, ...), a full provider name, or a list of those in priority order.
    """
    available = list(_ort().get_available_providers())
    if provider is None or provider == "auto":
        chosen = [p for p in AUTO_ORDER if p in available]
    else:
        names = [provider] if isinstance(provider, str) else list(provider)
        chosen = []
        for name in names:
            full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
            if full not in available:
                raise ValueError(
                    f"execution provider '{name}' ({full}) is not available in this onnxruntime build; "
                    f"available: {', '.join(available)}"
                )
            chosen.append(full)
        # TensorRT falls back to CUDA for unsupported nodes when CUDA is there.
        if "TensorrtExecutionProvider" in chosen and "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return list(dict.fromkeys(chosen))


def make_session(
    path: str | os.PathLike[str] | bytes,
    provider: str | Sequence[str] | None = None,
    *,
    threads: int = 0,
) -> Any:
    """An ``InferenceSession`` with all graph optimisations on and telemetry off; every session the project
    creates comes from here. ``path``: an .onnx file or the serialised model bytes. ``threads=0`` lets ORT pick.
    FileNotFoundError for a missing file; ValueError for an unknown provider."""
    ort = _ort()
    if not isinstance(path, bytes):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Memory and CPU time (docs/upscale_speed.md): the arena stays (it reuses one tile's activations), but no
    # memory pattern (a block planned per input shape: +180 MB for a 360 px tile of the nano, no faster); and
    # idle intra-op threads sleep instead of spinning (a third less CPU time per tile on a shared 2-core machine,
    # not slower).
    opts.enable_mem_pattern = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    model = path if isinstance(path, bytes) else str(path)
    providers = resolve_providers(provider)
    where = "<ONNX bytes>" if isinstance(path, bytes) else str(path)
    if (len(path) if isinstance(path, bytes) else path.stat().st_size) == 0:
        raise InputError(f"{where}: empty file (0 bytes), not an ONNX model")
    try:  # ORT raises its own pybind classes (InvalidProtobuf, InvalidArgument, Fail, ...): one line for all
        return ort.InferenceSession(model, sess_options=opts, providers=providers)
    except Exception as exc:
        reason = str(exc).split("failed:", 1)[-1].strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{where}: cannot load as an ONNX model ({reason})") from None


SESSION_SETTINGS = "arena,no-mem-pattern,no-spin"
"""How :func:`make_session` configures ONNX Runtime (part of the calibration cache key: other settings, other
speeds)."""

_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxBackend:
    """Run an exported paragonsr (or any single-input image-to-image) ONNX model.

    Scale and channel counts come from the ``paragonsr.*`` metadata written at export; for foreign ONNX files
    they are read from the graph and, for the scale, from one tiny probe run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        provider: str | Sequence[str] | None = None,
        size_multiple: int | None = None,
    ) -> None:
        """``size_multiple``: H and W the graph needs divisible by (``--size-multiple``); default: the
        ``paragonsr.size_multiple`` metadata, else found by probe runs (:meth:`_detect_multiple`)."""
        self.path = Path(path)
        self.session = make_session(self.path, provider)
        self.providers: list[str] = list(self.session.get_providers())
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(
                f"{self.path}: expected one image input and an image output, got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        self._in, self._out = inputs[0], outputs[0]
        if len(self._in.shape) != 4:
            raise ValueError(
                f"{self.path}: input '{self._in.name}' must be 4-D NCHW, got shape {self._in.shape}"
            )
        self.input_dtype = _ORT_FLOAT.get(self._in.type)
        if self.input_dtype is None:
            raise ValueError(f"{self.path}: input type {self._in.type} is not a float tensor")
        # A foreign export with a fixed input size (e.g. 1x3x64x64): smaller inputs are edge-padded up to it and
        # larger ones run in tiles of it, so any image works; a raw ORT shape error per tile helps nobody.
        dims = self._in.shape
        self.fixed_hw: tuple[int, int] | None = (
            (int(dims[2]), int(dims[3])) if isinstance(dims[2], int) and isinstance(dims[3], int) else None
        )
        self.fixed_batch: int | None = int(dims[0]) if isinstance(dims[0], int) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith("paragonsr.")}
        self.precision = self.metadata.get("precision", "unknown")
        in_dim = self._in.shape[1]
        self.in_ch = int(self.metadata.get("in_ch", in_dim if isinstance(in_dim, int) else 3))
        if size_multiple is not None and size_multiple < 1:
            raise InputError(f"{self.path}: --size-multiple must be >= 1, got {size_multiple}")
        multiple = size_multiple or int(self.metadata.get("size_multiple", 0)) or None
        if "scale" in self.metadata and "out_ch" in self.metadata:
            self.scale = int(self.metadata["scale"])
            self.out_ch = int(self.metadata["out_ch"])
        else:
            self.scale, self.out_ch = self._probe(multiple)
        if multiple is None:
            multiple = 1 if self.fixed_hw is not None else self._detect_multiple()
        self.size_multiple = multiple
        try:
            self.size_needs = SizeNeeds(
                scale=self.scale,
                multiple=multiple,
                fixed_hw=self.fixed_hw,
                fixed_batch=1 if self.fixed_batch == 1 else None,
            )
        except ValueError as exc:
            raise InputError(f"{self.path}: {exc}") from None

    def _try(self, h: int, w: int) -> np.ndarray | None:
        """The output of a zero input of ``h × w``, or None when the session refuses that size."""
        probe = np.zeros((self.fixed_batch or 1, self.in_ch, h, w), dtype=self.input_dtype)
        quiet = _ort().RunOptions()
        quiet.log_severity_level = 4  # a refused size is an answer here, not an error for the console
        try:
            return self.session.run([self._out.name], {self._in.name: probe}, quiet)[0]
        except Exception:  # ORT's Fail/InvalidArgument/RuntimeException: the size does not fit the graph
            return None

    def _detect_multiple(self) -> int:
        """The size multiple a foreign graph needs (a U-Net's pooling levels, a pixel-unshuffle): read from the
        graph (:func:`~paragonsr.infer.onnx_multiple.graph_size_multiple`, checked by one run), else found by probe
        runs: the smallest power of two ``m`` for which odd multiples of ``m`` run and give ``scale``-times
        outputs. 1 when any size runs. Raises InputError when no size up to a multiple of 64 works."""
        from paragonsr.infer.onnx_multiple import graph_size_multiple

        read = graph_size_multiple(self.path)
        if read is not None and read <= 1024:
            h, w = read * (-(-24 // read) | 1), read * ((-(-24 // read) | 1) + 2)  # odd multiples, >= 24 px
            out = self._try(h, w)
            if out is not None and tuple(out.shape[2:]) == (h * self.scale, w * self.scale):
                return read
        for m in (1, 2, 4, 8, 16, 32, 64):
            k = 1
            while m * k < 24:  # an odd multiple of m, not too small for the graph's own convolutions
                k += 2
            h, w = m * k, m * (k + 2)
            out = self._try(h, w)
            if out is not None and tuple(out.shape[2:]) == (h * self.scale, w * self.scale):
                return m
        raise InputError(
            f"{self.path}: the model runs on no input size tried (odd multiples of 1 to 64 pixels); if it needs "
            "a larger size multiple, pass --size-multiple N"
        )

    def _probe(self, multiple: int | None = None) -> tuple[int, int]:
        if self.fixed_hw is not None:
            sizes = [self.fixed_hw]
        else:  # 16 px fits most graphs; a deeper U-Net needs more
            sizes = [(n, n) for n in (16, 32, 64, 128) if multiple is None or n % multiple == 0] or [
                (multiple or 16,) * 2
            ]
        out = None
        for ph, pw in sizes:
            out = self._try(ph, pw)
            if out is not None:
                break
        if out is None:
            ph, pw = sizes[-1]
            probe = np.zeros((self.fixed_batch or 1, self.in_ch, ph, pw), dtype=self.input_dtype)
            out = self.session.run([self._out.name], {self._in.name: probe})[0]  # its own error, unchanged
        if out.shape[2] % ph or out.shape[3] % pw or out.shape[2] // ph != out.shape[3] // pw:
            raise ValueError(
                f"{self.path}: cannot infer an integer scale from output shape {out.shape} for a {ph}x{pw} input"
            )
        return out.shape[2] // ph, int(out.shape[1])

    def _session_run(self, x: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(x, dtype=self.input_dtype)
        return self.session.run([self._out.name], {self._in.name: feed})[0].astype(np.float32, copy=False)

    def _run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._session_run(x.numpy()))

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """NCHW array in, NCHW float32 array out (no clipping). Inputs the session cannot take as they are go
        through the shared tiler: padded to the size needs, and larger than a static input size: tiled with it."""
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected input of shape [B, {self.in_ch}, H, W], got {tuple(x.shape)}")
        if self.fixed_batch not in (None, 1) and x.shape[0] != self.fixed_batch:
            raise ValueError(
                f"{self.path}: the model only takes batches of exactly {self.fixed_batch}, got {x.shape[0]}"
            )
        needs = self.size_needs
        if needs.trivial:
            return self._session_run(x)
        y = tiled_forward(
            self._run_tensor,
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            needs,
            None,  # the whole image, unless a static input size makes tiles of itself
            overlap=DEFAULT_OVERLAP,  # capped at half a tile: the usual overlap, as far as a small tile allows
        )
        return y.numpy()

    def release_memory(self) -> None:
        """Hand ONNX Runtime's arena (one tile's activations: about 270 MiB for a 360 px tile of the nano) back to
        the system: one tiny run with arena shrinkage (about 20 ms). ``Upscaler`` calls it when an image's tiles
        are done, so the arena is not held while the result is encoded; the next image's first tile grows it again.
        Errors are ignored (a graph that refuses the tiny input keeps its arena)."""
        ort = _ort()
        opts = ort.RunOptions()
        opts.log_severity_level = 4
        opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        h, w = self.size_needs.padded_size(8, 8)
        probe = np.zeros((self.fixed_batch or 1, self.in_ch, h, w), dtype=self.input_dtype)
        with contextlib.suppress(Exception):  # a foreign graph with odd size rules keeps its arena
            self.session.run([self._out.name], {self._in.name: probe}, opts)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).numpy()
        return torch.from_numpy(self.run_numpy(arr))

    def __repr__(self) -> str:
        return (
            f"OnnxBackend({self.path.name}, scale={self.scale}, precision={self.precision}, "
            f"providers={self.providers})"
        )
