"""``train.qat``: settings of quantization-aware fine-tuning (``model_type: QATModel``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QATOpt(BaseModel):
    """Fake-quant settings; the quantisation itself is fixed to what ``paragonsr export --int8`` writes (int8
    per-channel symmetric weights, uint8 per-tensor activations)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    quant_lr: float = Field(
        1e-3, gt=0, description="LR of the learned log step sizes / activation ranges (own optimizer group)"
    )
    quant_out: bool = Field(
        True, description="quantise conv outputs too (what lets ONNX Runtime fuse integer convs)"
    )
