"""Common base of every degradation pipeline: input normalisation, the record of applied ops, registry access."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np

from paragonsr.registry import DEGRADATION_REGISTRY

Record = list[dict[str, Any]]


def to_float32(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float32 HWC in [0, 1] (HW becomes HW1)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"expected an HW or HWC image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.floating):
        if img.size and float(img.max()) > 1.01:  # a 0-255 float image would silently become white
            raise ValueError(
                f"float images must be in [0, 1]; got max {float(img.max()):.3g} (divide by 255?)"
            )
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)
    raise TypeError(f"unsupported image dtype {img.dtype} (expected uint8, uint16 or float)")


def jsonable(v: Any) -> Any:
    """numpy scalars -> python, floats rounded so manifests stay readable."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 5)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def note(rec: Record | None, op: str, **params: Any) -> None:
    if rec is not None:
        rec.append({"op": op, **{k: jsonable(v) for k, v in params.items()}})


def check_keys(opt: dict[str, Any], valid: Iterable[str], where: str, ignored: Iterable[str] = ()) -> None:
    """Unknown option key -> KeyError naming it, the closest match and the valid keys."""
    valid = sorted(valid)
    ignored = set(ignored)
    for key in opt:
        if key in valid or key in ignored:
            continue
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"{where}: unknown option '{key}'.{hint} Valid options: {', '.join(valid)}")


class Degradation:
    """Base class: subclasses implement ``_run(gt, rng, rec, index) -> dict`` on a float32 HWC image."""

    name = "degradation"

    def __init__(self, scale: int) -> None:
        if int(scale) != scale or not 1 <= int(scale) <= 4:
            raise ValueError(f"{self.name}: scale must be an integer 1-4, got {scale!r}")
        self.scale = int(scale)

    def _run(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        raise NotImplementedError

    def apply_with_record(
        self, gt: np.ndarray, rng: np.random.Generator, index: int | None = None
    ) -> tuple[dict[str, np.ndarray], Record]:
        rec: Record = []
        return self._apply(gt, rng, rec, index), rec

    def __call__(
        self, gt: np.ndarray, rng: np.random.Generator, index: int | None = None
    ) -> dict[str, np.ndarray]:
        return self._apply(gt, rng, None, index)

    def _apply(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{self.name}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        img = to_float32(gt)
        h, w = img.shape[:2]
        if h < self.scale or w < self.scale:
            raise ValueError(f"{self.name}: image {h}x{w} is smaller than the scale {self.scale}")
        out = self._run(img, rng, rec, index)
        lq, g = out["lq"], out["gt"]
        lh, lw = lq.shape[:2]
        # Contract: lq is exactly gt / scale; ops never return HW for a 1-channel image.
        assert g.shape[0] == lh * self.scale and g.shape[1] == lw * self.scale, (g.shape, lq.shape)
        return {k: np.ascontiguousarray(np.clip(v, 0.0, 1.0), dtype=np.float32) for k, v in out.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"


def crop_to_multiple(gt: np.ndarray, scale: int) -> np.ndarray:
    """Top-left aligned crop so both sides are multiples of ``scale`` (the LQ is then exactly H/scale)."""
    h, w = gt.shape[:2]
    return gt[: h - h % scale, : w - w % scale]


def build_degradation(name: str, opt: dict[str, Any] | None, scale: int) -> Degradation:
    """Build a registered pipeline by name with its option dict (``None`` = defaults)."""
    cls = DEGRADATION_REGISTRY.get(name)
    opt = dict(opt or {})
    typ = opt.pop("type", None)  # a config's own 'type:' (or a BasicSR dataset type, ignored)
    if typ in DEGRADATION_REGISTRY and DEGRADATION_REGISTRY.canonical(typ) != DEGRADATION_REGISTRY.canonical(
        name
    ):
        raise ValueError(f"degradation options say type '{typ}' but pipeline '{name}' was requested")
    return cls(opt, scale)


def apply_manifest(
    deg: Degradation, gt: np.ndarray, rng: np.random.Generator, index: int | None = None
) -> tuple[dict[str, np.ndarray], Record]:
    """Run ``deg`` and return ``(outputs, record)``; ``record`` is the JSON-able list of applied ops."""
    return deg.apply_with_record(gt, rng, index)
