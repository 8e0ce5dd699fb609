"""Model card: ``model_card.json`` (machine-readable) + ``MODEL_CARD.md`` + a bicubic-vs-model crop image."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from paragonsr.utils.atomic import atomic_write_bytes


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def ort_cpu_latency_ms(path: str | Path, size: int = 512, runs: int = 3, in_ch: int | None = None) -> float:
    """Median ONNX Runtime CPU latency (ms) of one ``size``x``size`` input after one warm-up run."""
    from paragonsr.infer.onnx_backend import OnnxBackend

    backend = OnnxBackend(path, provider="cpu")
    x = np.random.default_rng(0).random((1, in_ch or backend.in_ch, size, size), dtype=np.float32)
    backend.run_numpy(x)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        backend.run_numpy(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 8 + 9 * len(text)), 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def comparison_image(
    path: str | Path, panels: list[tuple[str, np.ndarray]], zoom: int = 2, gap: int = 4
) -> Path:
    """Side-by-side labelled panels (HWC float [0, 1], same size), each enlarged by nearest ``zoom`` so pixels
    stay visible; written as PNG atomically."""
    import cv2

    from paragonsr.io.files import write_image_native
    from paragonsr.utils.grid import tile

    tiles = []
    for name, img in panels:
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        u8 = cv2.resize(u8, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(np.ascontiguousarray(u8), name))
    canvas = tile(tiles, cols=len(tiles), gap=gap)
    path = Path(path)
    write_image_native(path, canvas)
    return path


def artifact_entry(
    path: Path, kind: str, latency_ms: float | None, latency_size: int, in_ch: int = 3
) -> dict[str, Any]:
    return {
        "file": path.name,
        "kind": kind,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "ort_cpu_latency_ms": None if latency_ms is None else round(latency_ms, 2),
        "latency_input": None if latency_ms is None else f"1x{in_ch}x{latency_size}x{latency_size}",
    }


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def render_markdown(card: dict[str, Any]) -> str:
    m = card["model"]
    lines = [
        f"# {card['name']}",
        "",
        f"{m['scale']}x super-resolution, arch `{m['arch']}` (variant `{m['variant']}`), "
        f"{m['in_ch']}->{m['out_ch']} channels. Exported by paragonsr {card['paragonsr_version']}.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters (trainable, unfused) | {_fmt_int(m['params_trainable'])} |",
        f"| parameters (fused release) | {_fmt_int(m['params_fused'])} |",
        f"| MACs per output megapixel | {m['macs_per_output_mp'] / 1e9:.2f} G |",
        f"| calibration steps before fusing | {m['calibrated_steps']} |",
        f"| ONNX opset | {card['opset']} (dynamic batch/height/width) |",
        "",
        "## Artifacts",
        "",
        "| file | kind | size | ORT CPU latency | sha256 |",
        "|---|---|---|---|---|",
    ]
    for a in card["artifacts"]:
        lat = (
            "—"
            if a["ort_cpu_latency_ms"] is None
            else f"{a['ort_cpu_latency_ms']:.1f} ms ({a['latency_input']})"
        )
        lines.append(
            f"| `{a['file']}` | {a['kind']} | {a['bytes'] / 1e6:.2f} MB | {lat} | `{a['sha256'][:16]}…` |"
        )
    lines += ["", "## Verification", "", "| check | result | detail |", "|---|---|---|"]
    for g in card["verification"]:
        lines.append(f"| {g['name']} | {'pass' if g['passed'] else 'FAIL'} | {g['detail']} |")
    if card.get("refused"):
        lines += ["", "## Not released", ""] + [f"- {r}" for r in card["refused"]]
    from paragonsr.deploy import ncnn_release, on_device  # NCNN files + apps; figures from bench/on_device.py

    lines += ncnn_release.card_lines(card.get("ncnn")) + on_device.card_lines(card.get("on_device"))
    lines += ["", "## Quality", ""]
    q = card.get("quality", {})
    if q:
        lines.append(
            f"On {q['images']} verification crops ({q['source']}), LR made by bicubic downscaling: "
            f"model {q['psnr_model_db']:.2f} dB vs bicubic {q['psnr_bicubic_db']:.2f} dB PSNR."
        )
    if q and "psnr_dynamic_db" in q:
        lines.append(
            f"Static (fused, tracked kernels) vs dynamic (per-image kernels) model: "
            f"{q['static_minus_dynamic_db']:+.3f} dB vs ground truth; outputs agree to {q['static_vs_dynamic_db']:.1f} dB."
        )
    if card.get("comparison_image"):
        lines += ["", f"![bicubic vs model]({card['comparison_image']})"]
    lines += ["", f"Timing host: {card['host']}.", ""]
    return "\n".join(lines)


def card_paths(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Where the card of export ``name`` goes in ``out_dir``: ``model_card.json`` + ``MODEL_CARD.md``, unless
    that card belongs to another export (its ``name`` differs): then ``<name>_model_card.json`` +
    ``<name>_MODEL_CARD.md``, so two exports into one folder never replace each other's card."""
    out_dir = Path(out_dir)
    js, md = out_dir / "model_card.json", out_dir / "MODEL_CARD.md"
    try:
        other = json.loads(js.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        other = None  # no card yet (or an unreadable one, replaced as before)
    if other is not None and other != name:
        return out_dir / f"{name}_model_card.json", out_dir / f"{name}_MODEL_CARD.md"
    return js, md


def write_model_card(out_dir: str | Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``card`` as JSON + markdown to :func:`card_paths` (atomic writes); returns (json, markdown).

    The folder's ``MODEL_CARD.md`` is claimed (:mod:`paragonsr.utils.claims`) while it is chosen and written: an
    export that finds another run writing it, or another export's card there, writes its own per-name card."""
    from paragonsr.utils.claims import OutputClaim

    out_dir = Path(out_dir)
    with OutputClaim(out_dir / "MODEL_CARD.md") as owned:
        name = str(card.get("name", ""))
        js, md = card_paths(out_dir, name) if owned else (
            out_dir / f"{name}_model_card.json", out_dir / f"{name}_MODEL_CARD.md"
        )  # fmt: skip
        atomic_write_bytes(js, (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())
        atomic_write_bytes(md, render_markdown(card).encode())
    return js, md
