"""Typed schema of a training option file (BasicSR / Real-ESRGAN / traiNNer-redux vocabulary).

Every section is a pydantic model with ``extra="forbid"`` so a typo is an error with its key path and a
did-you-mean (see :mod:`paragonsr.train.option_io` for loading and error formatting). Sections that pick an
implementation by ``type`` (optimizers, schedulers, datasets) are discriminated unions; networks and losses
are checked against the constructor signature of the registered class (:mod:`paragonsr.train.option_check`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from paragonsr.degrade.realesrgan_opts import (
    PIPELINE_TOP_KEYS,
    RealESRGANDatasetKeys,
    RealESRGANTopKeys,
    set_values,
)

PathList = str | list[str]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- datasets
_PAIRED_TYPES = {"pairedimagedataset": "paired", "paired": "paired"}
_OTF_TYPES = {"realesrgandataset": "otf", "otfdataset": "otf", "otf": "otf", "realesrganpaireddataset": "otf"}
DATASET_TYPES = {**_PAIRED_TYPES, **_OTF_TYPES}


class _DatasetBase(Section):
    name: str = Field("dataset", description="label in logs; validation sets are reported under it")
    dataroot_gt: PathList = Field(description="GT (HR) folder(s); several roots are concatenated")
    meta_info: PathList | None = Field(None, description="meta_info txt file(s): one relative path per line")
    filename_tmpl: str = Field("{}", description="LQ file name template for paired data, e.g. '{}x4'")
    io_backend: dict[str, Any] = Field(default_factory=lambda: {"type": "disk"}, description="only 'disk'")
    gt_size: int | None = Field(None, gt=0, description="GT crop size (train); LQ crop = gt_size / scale")
    lq_size: int | None = Field(None, gt=0, description="LQ crop size instead of gt_size (= lq_size * scale)")
    use_hflip: bool = Field(True, description="random horizontal flips of the training pairs")
    use_rot: bool = Field(True, description="random vertical flips and transposes (with hflip: all 8 views)")
    use_shuffle: bool = Field(True, description="shuffle the training order every epoch")
    num_worker_per_gpu: int = Field(0, ge=0, description="loader worker processes per GPU (0 = main process)")
    batch_size_per_gpu: int = Field(1, gt=0, description="training pairs per batch on each GPU")
    dataset_enlarge_ratio: int = Field(1, gt=0, description="each image appears this many times per epoch")
    prefetch_mode: str | None = Field(
        None, description="accepted (BasicSR); pinned non-blocking copies are used"
    )
    pin_memory: bool = Field(False, description="page-locked batches for faster copies (CUDA only)")
    persistent_workers: bool = Field(False, description="keep loader workers alive between epochs")
    cache_images: bool = Field(True, description="keep decoded images in memory (8-bit ones as uint8)")
    cache_max_mb: float = Field(2048, ge=0, description="image cache budget per process, in MiB")
    small_image: Literal["pad", "skip"] = Field(
        "pad", description="images smaller than the crop: reflect-pad them or skip them (warning either way)"
    )
    color: Literal["rgb", "y"] = Field(
        "rgb", description="only rgb: `y` (BasicSR Y-channel training) is an error"
    )

    @field_validator("color")
    @classmethod
    def _rgb_only(cls, v: str) -> str:
        # BasicSR's `color: y` trains on the Y channel; the datasets here always load RGB, so accepting it would
        # silently train a different model than asked.
        if v != "rgb":
            raise ValueError("color: y (Y-channel training) is not supported; use color: rgb or drop the key")
        return v

    @field_validator("io_backend")
    @classmethod
    def _disk_only(cls, v: dict[str, Any]) -> dict[str, Any]:
        if str(v.get("type", "disk")).lower() != "disk":
            raise ValueError(f"only io_backend type 'disk' is supported, got {v.get('type')!r}")
        return v


class PairedDatasetOpt(_DatasetBase):
    type: str = Field("PairedImageDataset", description="PairedImageDataset (or `paired`)")
    dataroot_lq: PathList = Field(description="LQ folder(s), same order and file names as dataroot_gt")


class OTFDatasetOpt(_DatasetBase, RealESRGANDatasetKeys):  # type: ignore[misc, valid-type]
    """GT-only dataset; LQ made on the fly by a degradation pipeline (``realesrgan``, ``workflows``, ``lrgen``).
    The Real-ESRGAN blur-kernel keys come from :class:`~paragonsr.degrade.realesrgan_opts.RealESRGANDatasetKeys`."""

    type: str = Field("RealESRGANDataset", description="RealESRGANDataset / OTFDataset (or `otf`)")
    dataroot_lq: PathList | None = Field(
        None, description="ignored for OTF data (made on the fly; accepted so templates listing it load)"
    )
    degradation: str = Field("realesrgan", description="pipeline name in DEGRADATION_REGISTRY")
    degradation_opt: dict[str, Any] = Field(
        default_factory=dict, description="extra pipeline-specific options passed through to the pipeline"
    )
    # the `workflows` pipeline
    p_clean: float | None = Field(None, ge=0, le=1, description="share of clean pairs (GT downscaled only)")
    predefined_sequences: dict[str, dict[str, Any]] | None = Field(
        None, description="workflows: {name: {probability, steps}} added to / replacing the preset sequences"
    )


def _dataset_tag(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        return "otf" if isinstance(v, OTFDatasetOpt) else "paired"
    if not isinstance(v, dict):
        return None
    return DATASET_TYPES.get(str(v.get("type", "PairedImageDataset")).lower())


DatasetOpt = Annotated[
    Annotated[PairedDatasetOpt, Tag("paired")] | Annotated[OTFDatasetOpt, Tag("otf")],
    Discriminator(_dataset_tag),
]


# ---------------------------------------------------------------- optimizers / schedulers
class _Typed(Section):
    """A section whose ``type`` is a Literal; accept any capitalisation (``adamw`` -> ``AdamW``)."""

    @field_validator("type", mode="before", check_fields=False)
    @classmethod
    def _canonical_type(cls, v: Any) -> Any:
        default = cls.model_fields["type"].default
        return default if isinstance(v, str) and v.lower() == str(default).lower() else v


class AdamOpt(_Typed):
    type: Literal["Adam"] = Field("Adam", description="any capitalisation")
    lr: float = Field(1e-4, gt=0, description="learning rate (the schedule's base)")
    betas: tuple[float, float] = Field(
        (0.9, 0.99), description="running-average factors of gradient, its square"
    )
    eps: float = Field(1e-8, description="added to the denominator for numerical stability")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (AdamW: decoupled weight decay)")
    amsgrad: bool = Field(False, description="AMSGrad variant (max of past squared-gradient averages)")


class AdamWOpt(AdamOpt):
    type: Literal["AdamW"] = Field("AdamW", description="any capitalisation")  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")


class SGDOpt(_Typed):
    type: Literal["SGD"] = Field("SGD", description="any capitalisation")
    lr: float = Field(1e-3, gt=0, description="learning rate (the schedule's base)")
    momentum: float = Field(0.9, description="momentum factor")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    nesterov: bool = Field(False, description="Nesterov momentum")


def _type_tag(choices: dict[str, str]):
    def tag(v: Any) -> str | None:
        t = cast(Any, v).type if isinstance(v, BaseModel) else v.get("type") if isinstance(v, dict) else None
        return choices.get(str(t).lower()) if t is not None else None

    return tag


OPTIM_TYPES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
OptimOpt = Annotated[
    Annotated[AdamOpt, Tag("Adam")] | Annotated[AdamWOpt, Tag("AdamW")] | Annotated[SGDOpt, Tag("SGD")],
    Discriminator(_type_tag(OPTIM_TYPES)),
]


class MultiStepLROpt(_Typed):
    type: Literal["MultiStepLR"] = Field("MultiStepLR", description="any capitalisation")
    milestones: list[int] = Field(
        default_factory=list, description="iterations at which the LR is multiplied by gamma"
    )
    gamma: float = Field(0.5, gt=0, description="LR factor at each milestone")


class CosineAnnealingLROpt(_Typed):
    type: Literal["CosineAnnealingLR"] = Field("CosineAnnealingLR", description="any capitalisation")
    T_max: int | None = Field(None, gt=0, description="defaults to train.total_iter")
    eta_min: float = Field(1e-7, ge=0, description="LR at the end of the cosine")


class ConstantLROpt(_Typed):
    type: Literal["ConstantLR"] = Field("ConstantLR", description="any capitalisation")


SCHED_TYPES = {
    "multisteplr": "MultiStepLR",
    "cosineannealinglr": "CosineAnnealingLR",
    "constantlr": "ConstantLR",
}
SchedOpt = Annotated[
    Annotated[MultiStepLROpt, Tag("MultiStepLR")]
    | Annotated[CosineAnnealingLROpt, Tag("CosineAnnealingLR")]
    | Annotated[ConstantLROpt, Tag("ConstantLR")],
    Discriminator(_type_tag(SCHED_TYPES)),
]


# ---------------------------------------------------------------- networks / losses
class NetworkOpt(BaseModel):
    """``type`` = registered arch name; other keys are its constructor arguments (checked by signature)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="registered architecture name (case-insensitive)")

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossOpt(BaseModel):
    """``type`` = registered loss; ``loss_weight`` scales it; other keys go to its constructor."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="registered loss name (case-insensitive)")
    loss_weight: float = Field(1.0, description="factor of this loss in the total")
    name: str | None = Field(None, description="label in logs (defaults to the option key, e.g. pixel_opt)")
    target: Literal["gt", "gt_usm"] | None = Field(
        None, description="which GT the loss sees (Real-ESRGAN usm)"
    )

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ---------------------------------------------------------------- train / val / path / logger
class TrainOpt(Section):
    total_iter: int = Field(gt=0, description="training iterations (optimizer steps of network_g)")
    warmup_iter: int = Field(-1, description="linear LR warm-up iterations; -1 = none")
    optim_g: OptimOpt = Field(description="optimizer of network_g")
    optim_d: OptimOpt | None = Field(None, description="optimizer of network_d (GAN model types)")
    scheduler: SchedOpt | None = Field(None, description="LR schedule (~ = constant LR after the warm-up)")
    scheduler_d: SchedOpt | None = Field(None, description="defaults to `scheduler`")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="0 disables EMA; EMA weights saved as params_ema")
    accum_iter: int = Field(1, gt=0, description="gradient accumulation: micro-batches per optimizer step")
    grad_clip: float | None = Field(None, gt=0, description="max global grad norm (None = off)")
    use_amp: bool = Field(False, description="automatic mixed precision (autocast)")
    amp_bf16: bool = Field(
        True, description="bf16 autocast (CPU/CUDA); false = fp16 + GradScaler (CUDA only)"
    )
    use_channels_last: bool = Field(False, description="channels_last memory format (faster convs on CUDA)")
    net_d_iters: int = Field(1, gt=0, description="update G only every net_d_iters iterations")
    net_d_init_iters: int = Field(0, ge=0, description="train only D for the first iterations")
    max_nonfinite_steps: int = Field(10, gt=0, description="stop after this many non-finite steps in a row")
    calibrate_iters: int = Field(
        8,
        ge=0,
        description="calibration batches for archs with a calibrate_for_eval hook (ParagonSR2) before val/save",
    )
    losses: list[LossOpt] = Field(
        default_factory=list, description="traiNNer style list; *_opt keys add to it"
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_loss_opts(cls, data: Any) -> Any:
        # BasicSR style: pixel_opt / perceptual_opt / gan_opt / any other `*_opt` key is one loss.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        losses = list(data.get("losses") or [])
        for key in [k for k in data if k.endswith("_opt") and k not in ("optim_g", "optim_d")]:
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


class MetricOpt(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(description="registered metric name (calculate_psnr, calculate_ssim, lpips, ...)")
    crop_border: int = Field(0, ge=0, description="pixels cut from each border before measuring")
    test_y_channel: bool = Field(False, description="measure on the Y channel (BT.601) instead of RGB")
    better: Literal["higher", "lower"] | None = Field(
        None,
        description="which way is better for the best-model record (~: lower for lpips/dists/niqe/brisque)",
    )

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ValOpt(Section):
    val_freq: int = Field(5000, gt=0, description="validate every this many iterations")
    save_img: bool = Field(False, description="write SR images to visualization/<image>/<image>_<iter>.png")
    suffix: str | None = Field(None, description="added to saved image names: <image>_<iter>_<suffix>.png")
    pbar: bool = Field(False, description="progress bar over the validation images")
    tile_size: int = Field(
        0, ge=0, description="tile LQ validation images larger than this (0 = whole image)"
    )
    tile_pad: int = Field(16, ge=0, description="overlap of validation tiles, LQ pixels")
    max_save_img: int = Field(8, ge=0, description="validation images logged to TensorBoard")
    calibrate: bool = Field(True, description="run the arch's calibrate_for_eval hook before validating")
    metrics: dict[str, MetricOpt] = Field(
        default_factory=dict, description="name -> metric; logged and tracked"
    )


class PathOpt(Section):
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
    project: str | None = Field(None, description="W&B project; logging to W&B is on when set")
    resume_id: str | None = Field(None, description="W&B run id to continue")
    entity: str | None = Field(None, description="W&B user or team")


class LoggerOpt(Section):
    print_freq: int = Field(100, gt=0, description="log losses every this many iterations")
    save_checkpoint_freq: int = Field(5000, gt=0, description="save networks + training state this often")
    use_tb_logger: bool = Field(True, description="TensorBoard logs in tb_logger/")
    wandb: WandbOpt | None = Field(None, description="Weights & Biases logging")


class DistOpt(Section):
    backend: str = Field("nccl", description="nccl on CUDA; gloo is always used on CPU")
    port: int = Field(29500, description="master port of the distributed process group")


# ---------------------------------------------------------------- root
MODEL_TYPES = {
    "srmodel": "sr",
    "realesrnetmodel": "sr",
    "sr": "sr",
    "ganmodel": "gan",
    "srganmodel": "gan",
    "esrganmodel": "gan",
    "realesrganmodel": "gan",
    "gan": "gan",
}


class Options(Section, RealESRGANTopKeys):  # type: ignore[misc, valid-type]
    name: str = Field(description="experiment name: experiments/<name>/")
    model_type: str = Field("SRModel", description="SRModel/RealESRNetModel (fidelity) or *GANModel")
    scale: int = Field(4, ge=1, le=8, description="upscale factor; injected into network_g when it omits it")
    num_gpu: int | Literal["auto"] = Field("auto", description="0 = CPU; otherwise CUDA when available")
    manual_seed: int | None = Field(0, description="seeds python/numpy/torch and the per-sample data RNG")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (warn only)")
    is_train: bool = Field(True, description="accepted for BasicSR compatibility")
    dist: bool = Field(False, description="set by the launcher")
    rank: int = Field(0, description="set by the launcher")
    world_size: int = Field(1, description="set by the launcher")

    datasets: dict[str, DatasetOpt] = Field(description="phase -> dataset: `train` and any `val*` / `test*`")
    network_g: NetworkOpt = Field(description="the network trained (the generator)")
    network_d: NetworkOpt | None = Field(None, description="discriminator (GAN model types)")
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
        if v.lower() not in MODEL_TYPES:
            raise ValueError(f"unknown model_type {v!r}; expected one of {sorted(set(MODEL_TYPES))}")
        return v

    @field_validator("datasets")
    @classmethod
    def _dataset_phases(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key != "train" and not key.startswith(("val", "test")):
                raise ValueError(f"dataset phase {key!r} must be 'train' or start with 'val'/'test'")
        return v

    @property
    def kind(self) -> str:
        """'sr' or 'gan'."""
        return MODEL_TYPES[self.model_type.lower()]

    def degradation_opt(self) -> dict[str, Any]:
        """Top-level Real-ESRGAN keys that were set (merged into the OTF dataset's pipeline options)."""
        return set_values(self, PIPELINE_TOP_KEYS)

    def val_datasets(self) -> dict[str, Any]:
        return {k: v for k, v in self.datasets.items() if k != "train"}
