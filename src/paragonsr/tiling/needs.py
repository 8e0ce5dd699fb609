"""What a backend needs of the input sizes it is given, and the one place that pads an input to those needs.

A backend (a torch model, an ONNX Runtime session, the network under validation) describes itself with a
:class:`SizeNeeds`: its scale, a size multiple (window attention, pixel-unshuffle, static-shape exports), a minimum
size, a static input size, and how padding is filled. The tiler plans its tiles around these needs and
:func:`run_padded` pads each tile, runs it and crops the result, so no backend carries its own padding or tiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Forward = Callable[[Tensor], Tensor]
PadMode = Literal["replicate", "reflect", "constant"]
PAD_MODES: tuple[str, ...] = ("replicate", "reflect", "constant")


@dataclass(frozen=True)
class SizeNeeds:
    """Input-size needs of a backend (sizes in LR pixels).

    Attributes:
        scale: integer upscaling factor; the backend returns ``scale·h × scale·w`` for an ``h × w`` input.
        multiple: height and width of every input are padded up to a multiple of this.
        min_size: inputs smaller than this (either side) are padded up to it.
        fixed_hw: static input size ``(H, W)`` of the model: smaller inputs are padded to it, larger images are
            tiled in tiles of exactly this size, whatever tile size was asked for.
        fixed_batch: static batch size; ``1`` runs a batch image by image.
        pad_mode: how padding (always at the bottom/right) is filled: ``replicate`` (edge pixels, default),
            ``reflect`` or ``constant`` (zeros).

    Raises:
        ValueError: a size below 1, a ``fixed_hw`` that breaks ``multiple``/``min_size``, an unknown pad mode.
    """

    scale: int
    multiple: int = 1
    min_size: int = 1
    fixed_hw: tuple[int, int] | None = None
    fixed_batch: int | None = None
    pad_mode: PadMode = "replicate"

    def __post_init__(self) -> None:
        if self.scale < 1 or self.multiple < 1 or self.min_size < 1:
            raise ValueError(
                f"size needs: scale, multiple and min_size must be >= 1, got {self.scale}, {self.multiple}, "
                f"{self.min_size}"
            )
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"size needs: pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.fixed_batch is not None and self.fixed_batch < 1:
            raise ValueError(f"size needs: fixed_batch must be >= 1, got {self.fixed_batch}")
        if self.fixed_hw is not None:
            fh, fw = self.fixed_hw
            if min(fh, fw) < self.min_size or fh % self.multiple or fw % self.multiple:
                raise ValueError(
                    f"size needs: fixed input size {fh}x{fw} breaks multiple {self.multiple} / min_size "
                    f"{self.min_size}"
                )

    @property
    def trivial(self) -> bool:
        """True when any input size runs as it is (nothing to pad, no batch split)."""
        return (
            self.multiple == 1 and self.min_size == 1 and self.fixed_hw is None and self.fixed_batch is None
        )

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an ``h × w`` input is padded to. ValueError if it is larger than a static input size."""
        if self.fixed_hw is not None:
            fh, fw = self.fixed_hw
            if h > fh or w > fw:
                raise ValueError(f"a {h}x{w} input is larger than the model's static input size {fh}x{fw}")
            return fh, fw
        m = self.multiple
        h, w = max(h, self.min_size), max(w, self.min_size)
        return -(-h // m) * m, -(-w // m) * m


def needs_of(backend: Any, scale: int | None = None) -> SizeNeeds:
    """The backend's ``size_needs`` attribute when it has one, else no needs beyond its scale (``scale`` argument,
    else the backend's ``scale`` attribute). AttributeError when neither gives a scale."""
    needs = getattr(backend, "size_needs", None)
    if isinstance(needs, SizeNeeds):
        return needs
    return SizeNeeds(scale=int(scale if scale is not None else backend.scale))


def pad_input(x: Tensor, needs: SizeNeeds) -> Tensor:
    """``x`` (B×C×h×w) padded at the bottom/right to ``needs.padded_size(h, w)`` with ``needs.pad_mode``."""
    h, w = x.shape[-2:]
    ph, pw = needs.padded_size(h, w)
    if (ph, pw) == (h, w):
        return x
    pad = (0, pw - w, 0, ph - h)
    if needs.pad_mode == "reflect" and (pw - w >= w or ph - h >= h):
        return F.pad(x, pad, mode="replicate")  # reflection needs more pixels than the input has
    return F.pad(x, pad, mode=needs.pad_mode)


def run_padded(fn: Forward, x: Tensor, needs: SizeNeeds) -> Tensor:
    """``fn`` over ``x`` (B×C×h×w) padded to the backend's needs, output cropped back to ``scale·h × scale·w``.

    Raises:
        RuntimeError: the backend returned another size than ``scale ×`` the padded input.
    """
    h, w = x.shape[-2:]
    xp = pad_input(x, needs)
    if needs.fixed_batch == 1 and xp.shape[0] > 1:
        y = torch.cat([fn(xp[i : i + 1]) for i in range(xp.shape[0])], dim=0)
    else:
        y = fn(xp)
    s = needs.scale
    if tuple(y.shape[-2:]) != (xp.shape[-2] * s, xp.shape[-1] * s):
        raise RuntimeError(f"model returned {tuple(y.shape)} for a {tuple(xp.shape)} input (scale {s})")
    return y if xp is x else y[..., : h * s, : w * s]


__all__ = ["PAD_MODES", "Forward", "PadMode", "SizeNeeds", "needs_of", "pad_input", "run_padded"]
