"""A labelled grid of one image under every pipeline and workflow preset (people judge degradations by eye)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from paragonsr.degrade.base import build_degradation, to_float32
from paragonsr.degrade.presets import PRESETS
from paragonsr.utils.grid import caption_band, tile


def _busiest_window(x: np.ndarray, c: int) -> tuple[int, int]:
    """Top-left of the c×c window (of a 3×3 set of candidates) with the most detail: degradations are invisible
    on flat sky."""
    h, w = x.shape[:2]
    lap = np.abs(cv2.Laplacian(x.mean(2), cv2.CV_32F))
    best, pos = -1.0, (0, 0)
    for top in np.linspace(0, h - c, 3).astype(int):
        for left in np.linspace(0, w - c, 3).astype(int):
            score = float(lap[top : top + c, left : left + c].mean())
            if score > best:
                best, pos = score, (int(top), int(left))
    return pos


def preview_panels(
    img: np.ndarray, scale: int, seed: int = 0, crop: int = 256, opts: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, np.ndarray]]:
    """[(label, HxWx3 float32)] : the clean centre crop, then each pipeline's LQ shown at the crop size (nearest,
    so every artefact stays visible). ``opts`` may give options per pipeline name."""
    opts = opts or {}
    x = to_float32(img)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    h, w = x.shape[:2]
    c = min(crop, h, w)
    c -= c % scale
    if c < scale:
        raise ValueError(f"image {h}x{w} is too small for a preview at scale {scale}")
    top, left = _busiest_window(x, c)
    x = x[top : top + c, left : left + c]
    runs: list[tuple[str, str, dict[str, Any]]] = [
        ("bicubic", "bicubic", opts.get("bicubic", {})),
        ("lrgen", "lrgen", opts.get("lrgen", {})),
        ("realesrgan", "realesrgan", opts.get("realesrgan", {})),
        ("workflows: clean", "workflows", {"p_clean": 1.0}),
    ]
    for name in PRESETS:
        seq_only = {
            "p_clean": 0.0,
            "use_presets": False,
            "predefined_sequences": {name: {**PRESETS[name], "probability": 1.0}},
        }
        runs.append((f"workflows: {name}", "workflows", seq_only))
    panels = [("clean (GT)", x)]
    for label, pipe, opt in runs:
        deg = build_degradation(pipe, {k: v for k, v in opt.items() if k != "gt_size"}, scale)
        lq = deg(x, np.random.default_rng(seed))["lq"]
        up = cv2.resize(lq, (lq.shape[1] * scale, lq.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        up = up[:, :, None] if up.ndim == 2 else up
        panels.append((label, np.repeat(up, 3, 2) if up.shape[2] == 1 else up))
    return panels


def grid_image(panels: list[tuple[str, np.ndarray]], cols: int = 4) -> np.ndarray:
    """Tile the panels with a caption bar above each; returns uint8 RGB."""
    pw = max(p.shape[1] for _, p in panels)
    bar = 22
    cells = []
    for label, p in panels:
        body = np.full((p.shape[0], pw, 3), 255, np.uint8)
        body[:, : p.shape[1]] = np.clip(np.rint(p * 255), 0, 255).astype(np.uint8)
        font_scale = min(0.45, 0.45 * pw / max(1, 8 * len(label)))
        band = caption_band(pw, label, bar, font_scale=font_scale, origin=(3, 15))
        cells.append(np.concatenate([band, body], axis=0))
    return tile(cells, cols=cols)
