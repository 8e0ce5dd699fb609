"""NCNN ``.param`` files: a strict reader (one clear error for a malformed file), the blob renaming the export
applies, and what chaiNNer will infer from a graph.

The text format (ncnn's ``Net::load_param``): line 1 the magic ``7767517``; line 2 ``<layer count> <blob count>``;
then one line per layer: ``<type> <name> <n_in> <n_out> <in blobs…> <out blobs…> <id>=<value>…`` where an id
below -23300 marks an array ``-233xx=<n>,<v1>,…`` for parameter ``xx``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from paragonsr.errors import InputError

MAGIC = "7767517"
INPUT_BLOB, OUTPUT_BLOB = "data", "output"
_PARAM_RE = re.compile(r"^-?\d+=\S+$")
_NUMBER_RE = re.compile(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|nan)$", re.IGNORECASE)


class NcnnParamError(InputError):
    """A ``.param`` file that is not a well-formed NCNN graph (the message names the file, the line and why)."""


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        raw = self.params.get(key)
        return default if raw is None else int(float(raw))


@dataclass
class NcnnGraph:
    layers: list[NcnnLayer]
    blob_count: int

    @property
    def input_names(self) -> list[str]:
        return [blob for layer in self.layers if layer.type == "Input" for blob in layer.outputs]

    @property
    def output_names(self) -> list[str]:
        """Blobs produced and never consumed (ncnn's own definition of a net's outputs)."""
        used = {b for layer in self.layers for b in layer.inputs}
        return [b for layer in self.layers for b in layer.outputs if b not in used]

    def op_types(self) -> list[str]:
        return sorted({layer.type for layer in self.layers})


def parse_param(text: str, where: str = "<param>") -> NcnnGraph:
    """Parse and check a ``.param`` text. Raises :class:`NcnnParamError` naming ``where``, the line number and
    what was expected (magic number, counts, blob wiring, parameter syntax)."""

    def fail(line_no: int, why: str) -> NcnnParamError:
        return NcnnParamError(f"{where}: not a valid NCNN .param file (line {line_no}: {why})")

    lines = [ln for ln in text.splitlines()]
    if not lines or lines[0].strip() != MAGIC:
        got = lines[0].strip()[:40] if lines else "an empty file"
        raise fail(1, f"expected the magic number {MAGIC}, got {got!r}")
    if len(lines) < 2:
        raise fail(2, "missing '<layer count> <blob count>'")
    head = lines[1].split()
    if len(head) != 2 or not all(t.isdigit() for t in head):
        raise fail(2, f"expected '<layer count> <blob count>', got {lines[1].strip()[:60]!r}")
    n_layers, n_blobs = int(head[0]), int(head[1])
    body = [(i + 3, ln.split()) for i, ln in enumerate(lines[2:]) if ln.strip()]
    if len(body) != n_layers:
        raise fail(2, f"the header declares {n_layers} layers, the file has {len(body)}")
    produced: set[str] = set()
    layers = []
    for line_no, tok in body:
        if len(tok) < 4 or not tok[2].isdigit() or not tok[3].isdigit():
            raise fail(line_no, "expected '<type> <name> <inputs> <outputs> <blobs…> <params…>'")
        n_in, n_out = int(tok[2]), int(tok[3])
        if len(tok) < 4 + n_in + n_out:
            raise fail(
                line_no, f"layer {tok[1]!r} lists fewer blobs than its {n_in} inputs + {n_out} outputs"
            )
        ins, outs = tok[4 : 4 + n_in], tok[4 + n_in : 4 + n_in + n_out]
        for blob in ins:
            if blob not in produced:
                raise fail(line_no, f"layer {tok[1]!r} reads blob {blob!r} that no earlier layer produces")
        for blob in outs:
            if blob in produced:
                raise fail(line_no, f"blob {blob!r} is produced twice")
            produced.add(blob)
        params: dict[int, str] = {}
        for item in tok[4 + n_in + n_out :]:
            if not _PARAM_RE.match(item):
                raise fail(line_no, f"layer {tok[1]!r}: parameter {item[:30]!r} is not '<id>=<value>'")
            key, value = item.split("=", 1)
            values = value.split(",")
            if int(key) <= -23300:  # array: count first
                if not values[0].isdigit() or int(values[0]) != len(values) - 1:
                    raise fail(line_no, f"layer {tok[1]!r}: array parameter {item[:30]!r} has a wrong count")
                values = values[1:]
            if not all(_NUMBER_RE.match(v) for v in values):
                raise fail(line_no, f"layer {tok[1]!r}: parameter {item[:30]!r} is not numeric")
            params[int(key)] = value
        layers.append(NcnnLayer(tok[0], tok[1], ins, outs, params))
    if len(produced) != n_blobs:
        raise fail(2, f"the header declares {n_blobs} blobs, the layers produce {len(produced)}")
    graph = NcnnGraph(layers, n_blobs)
    if len(graph.input_names) != 1:
        raise fail(3, f"expected exactly one Input layer, found {len(graph.input_names)}")
    return graph


def read_param(path: str | os.PathLike[str]) -> NcnnGraph:
    """:func:`parse_param` of a file; FileNotFoundError / NcnnParamError (binary or non-UTF-8 content too)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NCNN .param not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NcnnParamError(
            f"{p}: not a valid NCNN .param file (binary content; the text .param is expected, not a .param.bin)"
        ) from None
    return parse_param(text, str(p))


def rename_io_blobs(text: str, where: str = "<param>") -> str:
    """Rename the single input blob (and its Input layer) to ``data`` and the single output blob to ``output``,
    the names realesrgan-ncnn-vulkan and upscayl extract. NcnnParamError when the graph has several inputs or
    outputs, or already uses one of those names elsewhere."""
    graph = parse_param(text, where)
    outs = graph.output_names
    if len(outs) != 1:
        raise NcnnParamError(f"{where}: expected one output blob, the graph has {outs}")
    src_in, src_out = graph.input_names[0], outs[0]
    taken = {b for layer in graph.layers for b in layer.outputs} - {src_in, src_out}
    if INPUT_BLOB in taken or OUTPUT_BLOB in taken:
        raise NcnnParamError(
            f"{where}: blob names '{INPUT_BLOB}'/'{OUTPUT_BLOB}' are already used inside the graph"
        )
    lines = text.splitlines()
    out = lines[:2]
    for ln in lines[2:]:
        tok = ln.split()
        if not tok:
            continue
        n_in, n_out = int(tok[2]), int(tok[3])
        blobs = [
            INPUT_BLOB if b == src_in else OUTPUT_BLOB if b == src_out else b
            for b in tok[4 : 4 + n_in + n_out]
        ]
        name = INPUT_BLOB if tok[0] == "Input" else tok[1]
        out.append(
            " ".join([f"{tok[0]:<24}", f"{name:<24}", tok[2], tok[3], *blobs, *tok[4 + n_in + n_out :]])
        )
    return "\n".join(out) + "\n"


def chainner_view(graph: NcnnGraph) -> dict[str, int]:
    """The scale and channel counts chaiNNer derives from an NCNN graph's layers (its NCNN model loader walks
    them in file order): every Interp not followed by a BinaryOp (or a layer whose first parameter is 0) multiplies the scale by its factor, every
    PixelShuffle by its factor, every (depthwise) deconvolution by its horizontal stride, every convolution
    divides it by its horizontal stride; ``in_nc`` comes from the first convolution's weights and ``out_nc`` from
    the last convolution's outputs (divided by the pixel-shuffle factors). The export checks that this
    reading equals the model's real scale and channels, since chaiNNer sizes its output from it."""
    scale, shuffle = 1.0, 1
    in_nc = out_nc = 0
    first = True
    for i, layer in enumerate(graph.layers):
        t = layer.type
        if t == "Interp":
            nxt = graph.layers[i + 1] if i + 1 < len(graph.layers) else None
            if nxt is None or (nxt.type != "BinaryOp" and nxt.int_param(0) != 0):
                scale *= float(layer.params.get(1, "1"))
        elif t == "PixelShuffle":
            scale *= layer.int_param(0, 1)
            shuffle *= layer.int_param(0, 1)
        elif t in (
            "Convolution",
            "Convolution1D",
            "ConvolutionDepthWise",
            "Deconvolution",
            "DeconvolutionDepthWise",
        ):
            nf, kw = layer.int_param(0), layer.int_param(1)
            kh = layer.int_param(11, kw)
            if first and nf and kw and kh:
                in_nc, first = layer.int_param(6) // nf // kw // kh, False
            stride_w = layer.int_param(3, 1)
            scale = scale * stride_w if t.startswith("Deconv") else scale / stride_w
            out_nc = nf
    return {
        "scale": int(scale) if float(scale).is_integer() else -1,
        "in_nc": in_nc,
        "out_nc": out_nc // shuffle**2,
    }


__all__ = [
    "INPUT_BLOB",
    "MAGIC",
    "OUTPUT_BLOB",
    "NcnnGraph",
    "NcnnLayer",
    "NcnnParamError",
    "chainner_view",
    "parse_param",
    "read_param",
    "rename_io_blobs",
]
