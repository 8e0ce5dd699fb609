"""Recognise an architecture from a state dict's key layout alone (third-party files without metadata).

Each arch module owns the maths of reading its hyperparameters back from weight shapes
(``*_kwargs_from_state_dict``); this module only decides which one a key layout belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

# Keys that only the given layout has (BasicSR RRDBNet, original ESRGAN, ParagonSR v1 ours and public).
_RRDB_BASICSR = frozenset({"conv_first.weight", "body.0.rdb1.conv1.weight"})
_RRDB_ESRGAN = frozenset({"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"})
PARAGONSR_V1_KEY = "body.0.blocks.0.transformer.project_in_g.weight"


def detect_arch(
    state: Mapping[str, Tensor], certain_only: bool = True, scale: int | None = None
) -> tuple[str, dict[str, Any]] | None:
    """``(arch_name, kwargs)`` for a recognised layout, ``None`` otherwise.

    - RRDBNet (ESRGAN / Real-ESRGAN x4plus), BasicSR layout or the original ESRGAN ``model.N`` layout.
    - ParagonSR v1 (ours or the public implementation's layout). Its weights do not record the upscale factor
      (the Magic Kernel upsampler has no parameters), so ``scale`` must be given: without it a ``ValueError``
      says so rather than guessing x4.
    - SPAN (official / spandrel / traiNNer-redux layout, with or without the training branches): width and
      channels from ``conv_1.eval_conv``, scale from the upsampler conv (``out_ch · scale²`` outputs), ``norm``
      from the ``no_norm`` buffer.
    - Real-ESRGAN SRVGGNetCompact: only ``body.N`` keys, ``body.0`` a conv. Its ReLU/LeakyReLU variants store no
      activation weights and cannot be told apart, so with ``certain_only`` only the PReLU layout
      (``body.1.weight``, every released Real-ESRGAN compact model) is recognised, as spandrel does.
    """
    if PARAGONSR_V1_KEY in state:
        from paragonsr.archs.paragonsr_v1 import paragonsr_v1_kwargs_from_state_dict

        try:
            name, kwargs, _fused = paragonsr_v1_kwargs_from_state_dict(
                dict(state)
            )  # load_model re-checks fusion
        except KeyError:
            return None
        if scale is None:
            raise ValueError(
                f"ParagonSR v1 weights ({name}) do not record the upscale factor: pass scale=N "
                f"(e.g. load_model(path, scale=4))"
            )
        return name, {"scale": int(scale), **kwargs}
    try:
        if state.keys() >= _RRDB_BASICSR or state.keys() >= _RRDB_ESRGAN:
            from paragonsr.archs.rrdbnet import rrdbnet_kwargs_from_state_dict

            return "rrdbnet", rrdbnet_kwargs_from_state_dict(dict(state))
        if "conv_1.eval_conv.weight" in state:
            from paragonsr.archs.span import span_kwargs_from_state_dict

            return "span", span_kwargs_from_state_dict(state)
        first = state.get("body.0.weight")
        if first is None or first.ndim != 4 or any(not k.startswith("body.") for k in state):
            return None
        if certain_only and "body.1.weight" not in state:
            return None
        from paragonsr.archs.compact import compact_kwargs_from_state_dict

        return "srvggnetcompact", compact_kwargs_from_state_dict(dict(state))
    except (KeyError, ValueError, ImportError):
        return None


__all__ = ["PARAGONSR_V1_KEY", "detect_arch"]
