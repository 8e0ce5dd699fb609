"""Typed schema of a training option file (BasicSR / Real-ESRGAN / traiNNer-redux vocabulary).

Every section is a pydantic model with ``extra="forbid"`` so a typo is an error with its key path and a
did-you-mean (see :mod:`paragonsr.train.option_io` for loading and error formatting). Sections that pick an
implementation by ``type`` are discriminated unions: optimizers and schedulers
(:mod:`paragonsr.train.option_optim`), and networks, losses, metrics and datasets, whose models are generated
from the registered constructors (:mod:`paragonsr.train.option_types`). ``model_type`` names an entry of
``MODEL_REGISTRY`` (the training model classes).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from paragonsr.data.options import OTFDatasetOpt, PairedDatasetOpt
from paragonsr.degrade.realesrgan_opts import PIPELINE_TOP_KEYS, RealESRGANTopKeys, set_values
from paragonsr.registry import MODEL_REGISTRY
from paragonsr.registry_options import unknown_registered
from paragonsr.train.option_optim import (
    AdamOpt,
    AdamWOpt,
    ConstantLROpt,
    CosineAnnealingLROpt,
    MultiStepLROpt,
    OptimOpt,
    SchedOpt,
    SGDOpt,
)
from paragonsr.train.option_types import (
    DatasetUnion,
    LossOpt,
    LossUnion,
    MetricOpt,
    MetricUnion,
    NetworkOpt,
    NetworkUnion,
)
from paragonsr.train.qat_options import QATOpt

__all__ = [
    "AdamOpt", "AdamWOpt", "ConstantLROpt", "CosineAnnealingLROpt", "DistOpt", "LoggerOpt", "LossOpt", "MetricOpt",
    "MultiStepLROpt", "NetworkOpt", "OTFDatasetOpt", "Options", "PairedDatasetOpt", "PathOpt", "SGDOpt", "Section",
    "TrainOpt", "ValOpt", "WandbOpt",
]  # fmt: skip


class Section(BaseModel):
    """A fixed section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _loss_keys(train: dict[str, Any]) -> list[str]:
    return [k for k in train if k.endswith("_opt") and k not in ("optim_g", "optim_d")]


# ---------------------------------------------------------------- train / val / path / logger
class TrainOpt(Section):
    """``train``: optimisation (optimizers, schedules, EMA, AMP, accumulation) and the losses."""

    total_iter: int = Field(gt=0, description="training iterations (optimizer steps of network_g)")
    warmup_iter: int = Field(-1, description="linear LR warm-up iterations; -1 = none")
    optim_g: OptimOpt = Field(description="optimizer of network_g")
    optim_d: OptimOpt | None = Field(None, description="optimizer of network_d (GAN model types)")
    scheduler: SchedOpt | None = Field(None, description="LR schedule (~ = constant LR after the warm-up)")
    scheduler_d: SchedOpt | None = Field(None, description="defaults to `scheduler`")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="0 disables EMA; EMA weights saved as params_ema")
    accum_iter: int = Field(1, gt=0, description="gradient accumulation: micro-batches per optimizer step")
    grad_clip: float | None = Field(None, gt=0, description="max global grad norm (None = off)")
    use_amp: bool = Field(
        False,
        description="automatic mixed precision (autocast) where the device runs it natively, else fp32 (logged)",
    )
    amp_bf16: bool = Field(
        True,
        description="bf16 autocast (CPU with AVX512-BF16/AMX, CUDA); false = fp16 + GradScaler on CUDA "
        "(on a CPU: bf16 where native, else fp32)",
    )
    use_channels_last: bool = Field(
        False,
        description="channels_last memory format; the layout faster on the device is used (CPU: channels_last)",
    )
    net_d_iters: int = Field(1, gt=0, description="update G only every net_d_iters iterations")
    net_d_init_iters: int = Field(0, ge=0, description="train only D for the first iterations")
    max_nonfinite_steps: int = Field(10, gt=0, description="stop after this many non-finite steps in a row")
    calibrate_iters: int = Field(
        8,
        ge=0,
        description="calibration batches for archs with a calibrate_for_eval hook (ParagonSR2) before val/save",
    )
    losses: list[LossUnion] = Field(
        default_factory=list, description="traiNNer style list; *_opt keys add to it"
    )
    qat: QATOpt | None = Field(
        None, description="quantization-aware fine-tuning settings (model_type: QATModel)"
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_loss_opts(cls, data: Any) -> Any:
        # BasicSR style: pixel_opt / perceptual_opt / gan_opt / any other `*_opt` key is one loss.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        losses = list(data.get("losses") or [])
        for key in _loss_keys(data):
            val = data.pop(key)
            if val is None:
                continue
            if isinstance(val, dict):
                val = {"name": key.removesuffix("_opt"), **val}
            losses.append(val)
        if losses or "losses" in data:
            data["losses"] = losses
        if "grad_clip" in data and data["grad_clip"] is True:
            data["grad_clip"] = 1.0
        if "grad_clip" in data and data["grad_clip"] is False:
            data["grad_clip"] = None
        return data


class ValOpt(Section):
    """``val``: how often and how validation runs, and the metrics it records."""

    val_freq: int = Field(5000, gt=0, description="validate every this many iterations")
    save_img: bool = Field(False, description="write SR images to visualization/<image>/<image>_<iter>.png")
    suffix: str | None = Field(None, description="added to saved image names: <image>_<iter>_<suffix>.png")
    pbar: bool = Field(False, description="progress bar over the validation images")
    tile_size: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        0, description="0 = whole image; auto = sized from the free memory; N = LQ tiles of N px (+ tile_pad)"
    )
    tile_pad: int = Field(16, ge=0, description="LQ px of context on each side of a validation tile")
    max_save_img: int = Field(8, ge=0, description="validation images logged to TensorBoard")
    calibrate: bool = Field(True, description="run the arch's calibrate_for_eval hook before validating")
    metrics: dict[str, MetricUnion] = Field(
        default_factory=dict, description="name -> metric; logged and tracked"
    )

    @field_validator("tile_size", mode="before")
    @classmethod
    def _tile(cls, value: object) -> object:  # the meaning of upscale --tile: 0 (or ~) / auto / px
        from paragonsr.tiling.option import parse_tile

        return parse_tile(value, "val.tile_size", min_tile=1)


class PathOpt(Section):
    """``path``: pretrained weights, the state to resume, the output root."""

    pretrain_network_g: str | None = Field(
        None, description="weights to start network_g from (.safetensors/.pth)"
    )
    param_key_g: str = Field("params", description="key of a .pth to load (params_ema: the EMA weights)")
    strict_load_g: bool = Field(True, description="every weight must match network_g")
    pretrain_network_d: str | None = Field(None, description="weights to start network_d from")
    param_key_d: str = Field("params", description="key of a .pth to load")
    strict_load_d: bool = Field(True, description="every weight must match network_d")
    resume_state: str | None = Field(
        None, description="training state to resume (training_states/<iter>.state)"
    )
    experiments_root: str | None = Field(None, description="defaults to experiments/<name>")
    root: str | None = Field(None, description="base folder of experiments/ (default: current dir)")


class WandbOpt(Section):
    """``logger.wandb``: Weights & Biases logging (on when ``project`` is set)."""

    project: str | None = Field(None, description="W&B project; logging to W&B is on when set")
    resume_id: str | None = Field(None, description="W&B run id to continue")
    entity: str | None = Field(None, description="W&B user or team")


class LoggerOpt(Section):
    """``logger``: console/TensorBoard logging and checkpoint frequency."""

    print_freq: int = Field(100, gt=0, description="log losses every this many iterations")
    save_checkpoint_freq: int = Field(5000, gt=0, description="save networks + training state this often")
    use_tb_logger: bool = Field(True, description="TensorBoard logs in tb_logger/")
    wandb: WandbOpt | None = Field(None, description="Weights & Biases logging")


class DistOpt(Section):
    """``dist_params``: the distributed process group (multi-GPU runs)."""

    backend: str = Field("nccl", description="nccl on CUDA; gloo is always used on CPU")
    port: int = Field(29500, description="master port of the distributed process group")


# ---------------------------------------------------------------- root
class Options(Section, RealESRGANTopKeys):  # type: ignore[misc, valid-type]
    """A whole training option file (validated; see :func:`paragonsr.train.option_io.load_options`)."""

    name: str = Field(description="experiment name: experiments/<name>/")
    model_type: str = Field(
        "SRModel",
        description="training model (MODEL_REGISTRY): SRModel / RealESRNetModel (fidelity) or *GANModel",
    )
    scale: int = Field(4, ge=1, le=8, description="upscale factor; injected into network_g when it omits it")
    num_gpu: int | Literal["auto"] = Field("auto", description="0 = CPU; otherwise CUDA when available")
    manual_seed: int | None = Field(0, description="seeds python/numpy/torch and the per-sample data RNG")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (warn only)")
    is_train: bool = Field(True, description="accepted for BasicSR compatibility")
    dist: bool = Field(False, description="set by the launcher")
    rank: int = Field(0, description="set by the launcher")
    world_size: int = Field(1, description="set by the launcher")

    datasets: dict[str, DatasetUnion] = Field(
        description="phase -> dataset: `train` and any `val*` / `test*`"
    )
    network_g: NetworkUnion = Field(description="the network trained (the generator)")
    network_d: NetworkUnion | None = Field(None, description="discriminator (GAN model types)")
    path: PathOpt = Field(
        default_factory=PathOpt, description="pretrained weights, resume state, output root"
    )
    train: TrainOpt = Field(description="optimisation and losses")
    val: ValOpt | None = Field(None, description="validation (~ = none)")
    logger: LoggerOpt = Field(default_factory=LoggerOpt, description="logging and checkpoint frequency")
    dist_params: DistOpt = Field(default_factory=DistOpt, description="distributed training")

    @field_validator("model_type")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODEL_REGISTRY:
            raise PydanticCustomError("unknown_name", unknown_registered(MODEL_REGISTRY, v))
        return v

    @field_validator("datasets")
    @classmethod
    def _dataset_phases(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key != "train" and not key.startswith(("val", "test")):
                raise ValueError(f"dataset phase {key!r} must be 'train' or start with 'val'/'test'")
        return v

    @property
    def model_class(self) -> Any:
        """The registered training model class of ``model_type`` (``SRModel``, ``GANModel``)."""
        return MODEL_REGISTRY.get(self.model_type)

    @property
    def kind(self) -> str:
        """'gan' when the model trains a discriminator (``network_d``), else 'sr'."""
        return "gan" if self.model_class.needs_discriminator else "sr"

    def degradation_opt(self) -> dict[str, Any]:
        """Top-level Real-ESRGAN keys that were set (merged into the OTF dataset's pipeline options)."""
        return set_values(self, PIPELINE_TOP_KEYS)

    def val_datasets(self) -> dict[str, Any]:
        """The ``datasets`` sections other than ``train`` (validation and test phases)."""
        return {k: v for k, v in self.datasets.items() if k != "train"}
