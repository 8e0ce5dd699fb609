"""Shared fixtures. The test photos are small crops shipped in ``tests/data/photos`` (credits beside them), so the
suite needs nothing outside the repository. ``shared_photos_dir`` is for optional tests that want the full-size
photo set (``$PARAGONSR_PHOTOS`` or ``../shared/data/photos``): they skip when it is absent."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pytest
import torch

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "tests" / "data" / "photos"
SHARED_PHOTOS = Path(os.environ.get("PARAGONSR_PHOTOS", REPO.parent / "shared" / "data" / "photos"))

# The weights folder the session started with (`.ci/run` fetches the real perceptual weights into it): only the
# known-value tests read it (tests/test_perceptual_real.py). Every test otherwise sees an empty folder, so that no
# result depends on what the user happens to have fetched (eval adds LPIPS/DISTS columns when the weights are there).
REAL_WEIGHTS_DIR = (
    Path(os.environ["PARAGONSR_WEIGHTS"]).expanduser()
    if os.environ.get("PARAGONSR_WEIGHTS")
    else Path.home() / ".cache" / "paragonsr" / "weights"
)


@pytest.fixture(autouse=True)
def _no_user_weights(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(tmp_path_factory.getbasetemp() / "empty_weights_dir"))


# Never write the user's cache; the CLI tests compare with torch references, so `upscale --backend auto` (which
# times torch against ONNX Runtime) is left to tests/test_upscale_auto.py, with mocked measurements.
if "PARAGONSR_CACHE_DIR" not in os.environ:
    os.environ["PARAGONSR_CACHE_DIR"] = tempfile.mkdtemp(prefix="paragonsr-cache-")
    atexit.register(shutil.rmtree, os.environ["PARAGONSR_CACHE_DIR"], True)
os.environ.setdefault("PARAGONSR_BACKEND", "torch")

# Two xdist workers on a 2-core machine: one intra-op thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """The bundled test photos: eight 384x384 RGB JPEG crops (see tests/data/photos/CREDITS.md)."""
    assert PHOTOS.is_dir(), f"bundled test photos missing: {PHOTOS}"
    return PHOTOS


@pytest.fixture(scope="session")
def photo_paths(photos_dir: Path) -> list[Path]:
    paths = sorted(photos_dir.glob("*.jpg"))
    assert len(paths) == 8, f"expected the 8 bundled test photos in {photos_dir}, found {len(paths)}"
    return paths


@pytest.fixture(scope="session")
def shared_photos_dir() -> Path:
    """The full-size photo set beside the repository, for optional tests; skips when it is not there."""
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(
            f"full-size photo set not found at {SHARED_PHOTOS} (set PARAGONSR_PHOTOS to run this test)"
        )
    return SHARED_PHOTOS


def narrow(cls: type[T], obj: object) -> T:
    """``obj`` checked to be a ``cls``: the typed handle a test needs for one class's API on what a registry or
    loader returns as a plain ``nn.Module`` (``narrow(ParagonSR2, build_arch("paragonsr2_nano"))``)."""
    assert isinstance(obj, cls), f"expected a {cls.__name__}, got {type(obj).__name__}"
    return obj


def attr_dict(obj: object, name: str) -> dict[str, Any]:
    """A dict attribute recorded on a model at run time (``checkpoint_meta`` by ``load_model``, ``arch_kwargs``
    by the architecture registry), checked to be one."""
    value = getattr(obj, name)
    assert isinstance(value, dict), f"{type(obj).__name__}.{name} is a {type(value).__name__}, not a dict"
    return value


def load_script(path: Path) -> ModuleType:
    """Import a repository script (``scripts/*.py``, not a package module) by path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def imread(path: str | os.PathLike[str], flags: int | None = None) -> np.ndarray:
    """``cv2.imread`` (the reference decoder, no project code involved) that fails the test naming the file when
    OpenCV cannot read it, instead of returning None. ``flags`` default: ``cv2.IMREAD_COLOR`` (BGR uint8)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR if flags is None else flags)
    assert img is not None, f"OpenCV cannot read {path}"
    return img


def imdecode(buf: np.ndarray, flags: int) -> np.ndarray:
    """``cv2.imdecode`` of an encoded uint8 buffer that fails the test when OpenCV cannot decode it."""
    import cv2

    img = cv2.imdecode(buf, flags)
    assert img is not None, "OpenCV cannot decode the buffer"
    return img


def load_photo_crop(path: Path, size: int = 128, top: int = 0, left: int = 0) -> np.ndarray:
    """RGB float32 HWC crop in [0, 1] (decoded with OpenCV, no project code involved)."""
    img = imread(path)
    assert top + size <= img.shape[0] and left + size <= img.shape[1], (path, img.shape, size, top, left)
    img = img[top : top + size, left : left + size, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32) / 255.0


@pytest.fixture(scope="session")
def photo_crop(photo_paths: list[Path]) -> np.ndarray:
    """A 128x128 RGB crop with texture (centre of the first photo)."""
    h, w = imread(photo_paths[0]).shape[:2]
    return load_photo_crop(photo_paths[0], 128, h // 2 - 64, w // 2 - 64)


def conv_stack(seed: int = 0, scale: int = 2) -> torch.nn.Module:
    """Three 3×3 convs (receptive-field radius 3 LR px) + pixel shuffle; zero padding like real models."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    ).eval()
