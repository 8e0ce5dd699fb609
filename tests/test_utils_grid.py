"""The one grid maker (utils.grid) reproduces, pixel for pixel, the layouts the grid writers drew themselves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from paragonsr.utils.grid import caption_band, tile


def _old_preview_grid(panels: list[tuple[str, np.ndarray]], cols: int = 4) -> np.ndarray:
    ph, pw, bar = max(p.shape[0] for _, p in panels), max(p.shape[1] for _, p in panels), 22
    rows = (len(panels) + cols - 1) // cols
    canvas = np.full((rows * (ph + bar), cols * pw, 3), 255, np.uint8)
    for i, (label, p) in enumerate(panels):
        r, c = divmod(i, cols)
        y, x = r * (ph + bar), c * pw
        canvas[y + bar : y + bar + p.shape[0], x : x + p.shape[1]] = np.clip(np.rint(p * 255), 0, 255)
        scale = min(0.45, 0.45 * pw / max(1, 8 * len(label)))
        cv2.putText(
            canvas, label, (x + 3, y + 15), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
        )
    return canvas


def _panels(n: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    sizes = [(40, 48, 3), (36, 48, 3), (40, 44, 1), (40, 48, 3), (20, 30, 3)]
    return [(f"panel {i}: jpeg", rng.uniform(-0.1, 1.1, sizes[i % 5]).astype(np.float32)) for i in range(n)]


@pytest.mark.parametrize("n", [1, 4, 5, 9])
def test_degradation_preview_grid_is_unchanged(n: int) -> None:
    from paragonsr.degrade.preview import grid_image

    panels = _panels(n, np.random.default_rng(n))
    assert np.array_equal(grid_image(panels), _old_preview_grid(panels))


def test_demo_grid_is_unchanged() -> None:
    from paragonsr.commands.demo import HEADER, _as_rgb, _center_crop, comparison_grid

    rng = np.random.default_rng(0)
    rows = [
        (f"img{i}", [(m, rng.random((70, 60, 3)).astype(np.float32)) for m in ("nearest", "MKS")])
        for i in range(2)
    ]
    out_rows = []
    for name, results in rows:  # the former layout: header strip, 4 px white gaps between cells and rows
        cells = []
        for label, img in results:
            cell = _center_crop(_as_rgb(img), 64)
            head = np.full((HEADER, 64, 3), 30, np.uint8)
            size = min(0.6, 0.6 * (64 - 16) / max(1, 11 * len(f"{name}: {label}")))
            cv2.putText(
                head,
                f"{name}: {label}",
                (8, HEADER - 11),
                cv2.FONT_HERSHEY_SIMPLEX,
                size,
                (255,) * 3,
                1,
                cv2.LINE_AA,
            )
            cells.append(np.concatenate([head.astype(np.float32) / 255.0, cell], axis=0))
        gap = np.ones((cells[0].shape[0], 4, 3), np.float32)
        out_rows.append(np.concatenate([cells[0], gap, cells[1]], axis=1))
    old = np.concatenate(
        [out_rows[0], np.ones((4, out_rows[0].shape[1], 3), np.float32), out_rows[1]], axis=0
    )
    new = comparison_grid(rows, cell=64)
    assert new.dtype == old.dtype and np.array_equal(new, old)


def test_tile_pads_slots_and_rows_and_refuses_nothing() -> None:
    a, b = np.zeros((2, 3, 3), np.uint8), np.zeros((1, 2, 3), np.uint8)
    out = tile([a, b, a], cols=2, gap=1, fill=9)
    assert out.shape == (5, 7, 3)
    assert (out[0:2, 0:3] == 0).all() and (out[0:2, 3] == 9).all() and (out[1, 4:6] == 9).all()
    assert (out[3:5, 4:7] == 9).all()  # the empty slot of the last row
    band = caption_band(30, "x", 10, font_scale=0.3, origin=(2, 8))
    assert band.shape == (10, 30, 3) and band.min() < 255 and (band[:, 20:] == 255).all()
    with pytest.raises(ValueError, match="at least one cell"):
        tile([], cols=2)
