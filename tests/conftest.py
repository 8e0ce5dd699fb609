"""Shared fixtures. The photos live in ``../shared/data/photos`` beside the repository (CI has it there too)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("PARAGONSR_PHOTOS", REPO.parent / "shared" / "data" / "photos"))

# Two xdist workers on a 2-core machine: one intra-op thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not PHOTOS.is_dir():
        pytest.fail(f"photo folder missing: {PHOTOS} (set PARAGONSR_PHOTOS)")
    return PHOTOS


@pytest.fixture(scope="session")
def photo_paths(photos_dir: Path) -> list[Path]:
    return sorted(photos_dir.glob("*.jpg"))


def load_photo_crop(path: Path, size: int = 128, top: int = 0, left: int = 0) -> np.ndarray:
    """RGB float32 HWC crop in [0, 1] (decoded with OpenCV, no project code involved)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    img = img[top : top + size, left : left + size, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32) / 255.0


@pytest.fixture(scope="session")
def photo_crop(photo_paths: list[Path]) -> np.ndarray:
    """A 128x128 RGB crop with texture (centre of the first photo)."""
    import cv2

    img = cv2.imread(str(photo_paths[0]), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    return load_photo_crop(photo_paths[0], 128, h // 2 - 64, w // 2 - 64)
