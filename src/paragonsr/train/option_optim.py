"""Optimizer and LR-schedule sections of a training option file (``train.optim_g``/``optim_d``,
``train.scheduler``/``scheduler_d``): one model per ``type``, picked by a case-insensitive ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from paragonsr.registry_options import TypeTag

__all__ = [
    "OPTIM_TYPES", "SCHED_TYPES", "AdamOpt", "AdamWOpt", "ConstantLROpt", "CosineAnnealingLROpt", "MultiStepLROpt",
    "OptimOpt", "SGDOpt", "SchedOpt",
]  # fmt: skip


class _Typed(BaseModel):
    """A section whose ``type`` is a Literal; accept any capitalisation (``adamw`` -> ``AdamW``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("type", mode="before", check_fields=False)
    @classmethod
    def _canonical_type(cls, v: Any) -> Any:
        default = cls.model_fields["type"].default
        return default if isinstance(v, str) and v.lower() == str(default).lower() else v


class AdamOpt(_Typed):
    """Adam (``torch.optim.Adam``)."""

    type: Literal["Adam"] = Field("Adam", description="any capitalisation")
    lr: float = Field(1e-4, gt=0, description="learning rate (the schedule's base)")
    betas: tuple[float, float] = Field(
        (0.9, 0.99), description="running-average factors of gradient, its square"
    )
    eps: float = Field(1e-8, description="added to the denominator for numerical stability")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (AdamW: decoupled weight decay)")
    amsgrad: bool = Field(False, description="AMSGrad variant (max of past squared-gradient averages)")


class AdamWOpt(AdamOpt):
    """AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay."""

    type: Literal["AdamW"] = Field("AdamW", description="any capitalisation")  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")


class SGDOpt(_Typed):
    """SGD with momentum (``torch.optim.SGD``)."""

    type: Literal["SGD"] = Field("SGD", description="any capitalisation")
    lr: float = Field(1e-3, gt=0, description="learning rate (the schedule's base)")
    momentum: float = Field(0.9, description="momentum factor")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    nesterov: bool = Field(False, description="Nesterov momentum")


def _tag(models: dict[str, type[BaseModel]]) -> Discriminator:
    """Discriminator over ``{type name: model}`` (names any case; an unknown one is reported with a did-you-mean)."""
    names = {n.lower(): n for n in models}
    return Discriminator(TypeTag("type", lambda t: names[t.lower()], sorted(models), models))


OPTIM_TYPES: dict[str, type[BaseModel]] = {"Adam": AdamOpt, "AdamW": AdamWOpt, "SGD": SGDOpt}
OptimOpt = Annotated[
    Annotated[AdamOpt, Tag("Adam")] | Annotated[AdamWOpt, Tag("AdamW")] | Annotated[SGDOpt, Tag("SGD")],
    _tag(OPTIM_TYPES),
]


class MultiStepLROpt(_Typed):
    """Step decay: the LR is multiplied by ``gamma`` at each milestone."""

    type: Literal["MultiStepLR"] = Field("MultiStepLR", description="any capitalisation")
    milestones: list[int] = Field(
        default_factory=list, description="iterations at which the LR is multiplied by gamma"
    )
    gamma: float = Field(0.5, gt=0, description="LR factor at each milestone")


class CosineAnnealingLROpt(_Typed):
    """Cosine decay from the base LR to ``eta_min`` over ``T_max`` iterations."""

    type: Literal["CosineAnnealingLR"] = Field("CosineAnnealingLR", description="any capitalisation")
    T_max: int | None = Field(None, gt=0, description="defaults to train.total_iter")
    eta_min: float = Field(1e-7, ge=0, description="LR at the end of the cosine")


class ConstantLROpt(_Typed):
    """The base LR throughout (after the warm-up)."""

    type: Literal["ConstantLR"] = Field("ConstantLR", description="any capitalisation")


SCHED_TYPES: dict[str, type[BaseModel]] = {
    "MultiStepLR": MultiStepLROpt,
    "CosineAnnealingLR": CosineAnnealingLROpt,
    "ConstantLR": ConstantLROpt,
}
SchedOpt = Annotated[
    Annotated[MultiStepLROpt, Tag("MultiStepLR")]
    | Annotated[CosineAnnealingLROpt, Tag("CosineAnnealingLR")]
    | Annotated[ConstantLROpt, Tag("ConstantLR")],
    _tag(SCHED_TYPES),
]
