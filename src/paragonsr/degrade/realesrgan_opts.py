"""The options of the ``realesrgan`` pipeline, declared once: type, default, bounds, description and where the key
sits in a BasicSR / Real-ESRGAN option file.

Real-ESRGAN's option files split the keys in two places (the layout kept here and by the training schema):

* ``top``: the top level of the file (resize / noise / JPEG of both stages, ``second_blur_prob``, ``gt_size``,
  ``queue_size``, ``*_gt_usm``);
* ``dataset``: ``datasets.train`` (blur kernels of both stages, ``final_sinc_prob``);
* ``pipeline``: keys of ours (unsharp mask of the GT), given to the pipeline directly (in training through
  ``datasets.<phase>.degradation_opt``).

Stage-2 keys are the stage-1 name + ``2`` (``noise_range`` / ``noise_range2``); :data:`STAGE_KEYS` lists the pairs.
Defaults are Real-ESRGAN's released ``train_realesrgan_x4plus.yml``. Aliases: traiNNer-redux's ``blur_prob2`` =
``second_blur_prob``.

Built from the declarations: :class:`RealESRGANOpt` (every key, real defaults; what the pipeline validates
against) and, for the training schema, :class:`RealESRGANTopKeys` / :class:`RealESRGANDatasetKeys` (the same fields,
unset = the pipeline's default, except the keys the trainer reads itself).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)

from paragonsr.degrade.kernels import KERNEL_TYPES

__all__ = [
    "DATASET_KEYS", "DEFAULTS", "KEYS", "PIPELINE_TOP_KEYS", "STAGE_KEYS", "TOP_KEYS", "RealESRGANDatasetKeys",
    "RealESRGANOpt", "RealESRGANTopKeys", "validate_realesrgan_opt",
]  # fmt: skip


# ---------------------------------------------------------------- value checks (messages read "<key> <msg>")
def _probability(v: float) -> float:
    if not 0 <= v <= 1:
        raise ValueError("must be a probability in [0, 1]")
    return v


def _range(lo: float, hi: float = math.inf, open_lo: bool = False) -> Any:
    """``[low, high]``: two numbers, lo <= low <= high <= hi (lo < low when ``open_lo``)."""
    cond = f"{lo:g} {'<' if open_lo else '<='} low <= high" + (f" <= {hi:g}" if hi < math.inf else "")

    def check(v: list[float]) -> list[float]:
        if not (len(v) == 2 and (v[0] > lo if open_lo else v[0] >= lo) and v[0] <= v[1] <= hi):
            raise ValueError(f"must be [low, high] with {cond}")
        return v

    bounds = {"exclusiveMinimum" if open_lo else "minimum": lo} | ({"maximum": hi} if hi < math.inf else {})
    schema: dict[str, Any] = {"minItems": 2, "maxItems": 2, "items": {"type": "number", **bounds}}
    return Annotated[list[float], AfterValidator(check), Field(json_schema_extra=schema)]


def _weights(n: int | None = None) -> Any:
    def check(v: list[float]) -> list[float]:
        if (n is not None and len(v) != n) or not v or min(v) < 0 or sum(v) <= 0:
            raise ValueError(f"must be {n or 'one or more'} non-negative weights, not all 0")
        return v

    schema: dict[str, Any] = {"items": {"type": "number", "minimum": 0}} | (
        {"minItems": n, "maxItems": n} if n else {}
    )
    return Annotated[list[float], AfterValidator(check), Field(json_schema_extra=schema)]


def _odd_size(v: int) -> int:
    if v < 3 or v % 2 == 0:
        raise ValueError("must be an odd integer >= 3")
    return v


def _number(v: Any) -> Any:
    if isinstance(v, bool):  # YAML `yes`/`true` where a number belongs is a mistake, not 1.0
        raise ValueError("must be a number, not true/false")
    return v


Prob = Annotated[
    float,
    BeforeValidator(_number),
    AfterValidator(_probability),
    Field(json_schema_extra={"minimum": 0, "maximum": 1}),
]
OddSize = Annotated[int, AfterValidator(_odd_size), Field(json_schema_extra={"minimum": 3})]
Kernel = Literal[KERNEL_TYPES]  # type: ignore[valid-type]


class Key(NamedTuple):
    """One option (a stage pair when ``default2`` is given: the stage-2 key is ``name + "2"``)."""

    name: str
    type: Any
    default: Any
    layout: Literal["top", "dataset", "pipeline"]
    description: str
    default2: Any = None
    alias: str | None = None
    trainer: bool = False  # read by the trainer itself: keeps its default in the training schema


_K6 = list(KERNEL_TYPES)
_P6 = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
KEY_TABLE: tuple[Key, ...] = (
    # top level: resize / noise / JPEG of both stages
    Key("resize_prob", _weights(3), [0.2, 0.7, 0.1], "top",
        "weights of [up, down, keep] for the random resize", [0.3, 0.4, 0.3]),
    Key("resize_range", _range(0, open_lo=True), [0.15, 1.5], "top",
        "resize factor range: up draws from [1, high], down from [low, 1]", [0.3, 1.2]),
    Key("gaussian_noise_prob", Prob, 0.5, "top",
        "probability of Gaussian noise; Poisson noise otherwise", 0.5),
    Key("noise_range", _range(0, 255), [1, 30], "top", "Gaussian noise sigma range, 0-255 units",
        [1, 25]),
    Key("poisson_scale_range", _range(0), [0.05, 3], "top", "Poisson noise scale range", [0.05, 2.5]),
    Key("gray_noise_prob", Prob, 0.4, "top",
        "probability that the noise is gray (the same on every channel)", 0.4),
    Key("jpeg_range", _range(0, 100), [30, 95], "top",
        "JPEG quality range, 0-100", [30, 95]),
    Key("second_blur_prob", Prob, 0.8, "top", "probability of the stage-2 blur (the stage-1 blur always runs)",
        alias="blur_prob2"),
    Key("gt_size", int | None, None, "top",
        "GT crop size, a multiple of scale (~ = whole image); training: the crop when datasets.train sets none",
        trainer=True),
    Key("queue_size", Annotated[int, Field(ge=0)], 0, "top",
        "training-pair pool that mixes each batch with earlier ones (0 = off; at least the batch size)",
        trainer=True),
    Key("l1_gt_usm", bool, True, "top", "pixel losses see the USM-sharpened GT", trainer=True),
    Key("percep_gt_usm", bool, True, "top", "perceptual losses see the USM-sharpened GT", trainer=True),
    Key("gan_gt_usm", bool, False, "top", "the discriminator sees the USM-sharpened GT", trainer=True),
    # datasets.train: blur kernels of both stages, final sinc
    Key("blur_kernel_size", OddSize, 21, "dataset",
        "largest blur kernel: sizes drawn from the odd numbers 7..this; below 7 = that size only", 21),
    Key("kernel_list", list[Kernel], _K6, "dataset", "blur kernel types to draw from", _K6),
    Key("kernel_prob", _weights(), _P6, "dataset", "weight of each kernel_list entry", _P6),
    Key("sinc_prob", Prob, 0.1, "dataset", "probability of a sinc (ringing) kernel instead of the blur",
        0.1),
    Key("blur_sigma", _range(0, open_lo=True), [0.2, 3], "dataset", "blur kernel sigma range, pixels",
        [0.2, 1.5]),
    Key("betag_range", _range(0, open_lo=True), [0.5, 4], "dataset",
        "shape (beta) range of generalized Gaussian kernels", [0.5, 4]),
    Key("betap_range", _range(0, open_lo=True), [1, 2], "dataset",
        "shape (beta) range of plateau kernels", [1, 2]),
    Key("final_sinc_prob", Prob, 0.8, "dataset", "probability of the sinc filter after the final resize"),
    # ours: unsharp mask of the GT the LQ is made from (and the `gt_usm` the losses may see)
    Key("usm_weight", float, 0.5, "pipeline", "GT unsharp-mask strength: gt + weight * (gt - blurred)"),
    Key("usm_radius", Annotated[int, Field(ge=0)], 50, "pipeline",
        "GT unsharp-mask Gaussian size, pixels (+1 when even)"),
    Key("usm_threshold", Annotated[float, Field(ge=0)], 10, "pipeline",
        "GT unsharp mask: residuals below this (0-255 units) are not sharpened"),
)  # fmt: skip


def _expand(table: tuple[Key, ...]) -> dict[str, Key]:
    out: dict[str, Key] = {}
    for k in table:
        if k.default2 is None:
            out[k.name] = k
            continue
        out[k.name] = k._replace(description=f"{k.description} (stage 1)")
        out[k.name + "2"] = k._replace(
            name=k.name + "2", default=k.default2, default2=None, description=f"{k.description} (stage 2)"
        )
    return out


KEYS: dict[str, Key] = _expand(KEY_TABLE)
STAGE_KEYS: tuple[tuple[str, str], ...] = tuple(
    (k.name, k.name + "2") for k in KEY_TABLE if k.default2 is not None
)
TOP_KEYS = tuple(n for n, k in KEYS.items() if k.layout == "top")
DATASET_KEYS = tuple(n for n, k in KEYS.items() if k.layout == "dataset")
# top-level keys the training schema hands to the pipeline (the others the trainer reads itself)
PIPELINE_TOP_KEYS = tuple(n for n in TOP_KEYS if not KEYS[n].trainer)
DEFAULTS: dict[str, Any] = {n: k.default for n, k in KEYS.items()}
ALIASES: dict[str, str] = {k.alias: n for n, k in KEYS.items() if k.alias}


def _field(k: Key, inherit: bool) -> tuple[Any, Any]:
    """(annotation, FieldInfo); ``inherit``: default ~ (= the pipeline's), the real default in the JSON Schema."""
    extra: dict[str, Any] = {"layout": k.layout}
    kw: dict[str, Any] = {"description": k.description}
    if k.alias:
        kw["validation_alias"] = AliasChoices(k.name, k.alias)
    if inherit and not k.trainer:
        extra["default"] = k.default
        return k.type | None, Field(None, json_schema_extra=extra, **kw)
    return k.type, Field(k.default, json_schema_extra=extra, **kw)


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _model(name: str, layouts: tuple[str, ...], inherit: bool, doc: str) -> type[BaseModel]:
    fields: dict[str, Any] = {n: _field(k, inherit) for n, k in KEYS.items() if k.layout in layouts}
    model = create_model(name, __base__=_Keys, __doc__=doc, __module__=__name__, **fields)
    return model


RealESRGANOpt = _model(
    "RealESRGANOpt", ("top", "dataset", "pipeline"), False, "Every option of the ``realesrgan`` pipeline."
)
RealESRGANTopKeys = _model(
    "RealESRGANTopKeys", ("top",), True, "Real-ESRGAN keys at the top level of a training option file."
)
RealESRGANDatasetKeys = _model(
    "RealESRGANDatasetKeys",
    ("dataset",),
    True,
    "Real-ESRGAN blur-kernel keys of a ``datasets.<phase>`` section.",
)


def set_values(model: BaseModel, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of ``keys`` that are set on ``model`` (not ~), e.g. the overrides a training file gives."""
    return {k: getattr(model, k) for k in keys if getattr(model, k) is not None}


def validate_realesrgan_opt(opt: dict[str, Any]) -> dict[str, Any]:
    """All pipeline options, defaults filled in, from the given ones (names or aliases). Raises ``ValueError``
    ``"realesrgan: <key> <what is expected>, got <value>"`` for the first bad value."""
    try:
        model = RealESRGANOpt.model_validate(opt)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        msg = " " + msg if e["type"] == "value_error" else ": " + msg[:1].lower() + msg[1:]
        raise ValueError(f"realesrgan: {key}{msg}, got {e['input']!r}") from None
    return model.model_dump()
