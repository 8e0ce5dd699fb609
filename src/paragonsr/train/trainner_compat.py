"""traiNNer-redux option files, read as they are: one table of its option vocabulary and what each key means here.

traiNNer-redux (``the-database/traiNNer-redux``: ``traiNNer/utils/redux_options.py``, its config and loss references
and the templates under ``options/train/``) extends the BasicSR vocabulary. :func:`translate` rewrites such a file
into this project's schema before validation. Every traiNNer key is in exactly one of these states:

* **same** - the key exists here with the same meaning (not listed in the tables; the generated doc lists it);
* **map** - moved or renamed to our key with the same meaning (``use_amp`` -> ``train.use_amp``);
* **ignore** - it has no effect here: accepted, with one warning line naming the key unless its value is one that
  does nothing in traiNNer-redux either (``fast_matmul: false`` is silent, ``fast_matmul: true`` warns);
* **refuse** - its value asks for something this project cannot do (Y-channel training, an autoencoder): an error.

Keys in none of the tables and not in our schema are typos and get the schema's did-you-mean (which also offers the
traiNNer keys: :func:`known_keys`). Losses (``train.losses`` list or ``*_opt`` form) and architecture names go
through :mod:`paragonsr.train.trainner_losses`; the on-the-fly degradation keys through
:mod:`paragonsr.train.trainner_otf`. ``docs/trainner_compat.md`` is generated from these tables.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SAME", "SECTIONS", "Rule", "Translation", "known_keys", "translate"]

_ANY = "any value"


@dataclass(frozen=True)
class Rule:
    """One traiNNer-redux key. ``action`` is map / ignore / refuse / drop_none / otf / special."""

    action: str
    note: str
    target: str = (
        ""  # map: our key path from the root ('train.use_amp') or the section ('.tile_pad'); drop_none: ~
    )
    inert: tuple[Any, ...] = ()  # ignore/refuse: values accepted silently (_ANY = every value)


@dataclass
class Translation:
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def warn(self, key: str, msg: str) -> None:
        if key not in self._seen:  # once per key, however many sections carry it
            self._seen.add(key)
            self.warnings.append(f"traiNNer-redux option {key}: {msg}")


def _ignore(note: str, *inert: Any) -> Rule:
    return Rule("ignore", note, inert=inert)


def _map(target: str, note: str = "same meaning") -> Rule:
    return Rule("map", note, target=target)


_LAUNCH = "set by the launcher / command line here"
_FP16 = (
    "same meaning; with use_amp at the top level and no amp_bf16, fp16 (traiNNer-redux's default) is used "
    "(on a CPU: bf16 where native, else fp32)"
)
_FORK = "traiNNer-redux fork option (automatic tuning): not implemented here"
TOP: dict[str, Rule] = {
    "use_amp": _map("train.use_amp"),
    "amp_bf16": _map("train.amp_bf16", _FP16),
    "use_channels_last": _map("train.use_channels_last"),
    "fast_matmul": _ignore("TF32/reduced-precision matmul is not switched on here", False),
    "use_compile": _ignore("torch.compile is not used by the trainer", False),
    "compile_mode": _ignore("only used with use_compile", _ANY),
    "detect_anomaly": _ignore(
        "autograd anomaly detection is off (non-finite steps are skipped and counted)", False
    ),
    "find_unused_parameters": _ignore("DDP always runs with find_unused_parameters=False", False),
    "launcher": _ignore(f"{_LAUNCH} (--launcher)", None, "none"),
    "auto_resume": _ignore(f"{_LAUNCH} (--auto_resume)", None, False),
    "resume": _ignore("use path.resume_state or --auto_resume", 0),
    "watch": _ignore("file watching is not implemented", False),
    "root_path": _ignore("set at run time by traiNNer-redux; use path.root", None),
    "input_pixel_format": Rule("refuse", "only rgb input is supported", inert=("rgb",)),
    "output_pixel_format": Rule("refuse", "only rgb output is supported", inert=("rgb",)),
    "network_ae": Rule("refuse", "autoencoder (latent) training is not supported", inert=(None,)),
    "onnx": _ignore("export settings: use `paragonsr export`", None),
    "deterministic": Rule("drop_none", "same meaning; ~ = default (false)"),
    "manual_seed": Rule("drop_none", "same meaning; ~ = default"),
    "dist": Rule("drop_none", _LAUNCH),
    "rank": Rule("drop_none", _LAUNCH),
    "world_size": Rule("drop_none", _LAUNCH),
    "is_train": Rule("drop_none", "accepted"),
    "dist_params": Rule("drop_none", "same meaning; ~ = default"),
    "logger": Rule("drop_none", "same meaning; ~ = default"),
    "high_order_degradation": Rule(
        "otf", "true with an OTF train dataset (RealESRGANDataset): LQ made on the fly"
    ),
    "high_order_degradations_debug": _ignore(
        "OTF debug images are not saved; use `paragonsr degrade`", False
    ),
    "high_order_degradations_debug_limit": _ignore("only used with high_order_degradations_debug", _ANY),
    "dataroot_lq_prob": _ignore("mixing paired LQ into OTF training is not implemented", 0, 0.0),
    "lq_usm": _ignore("unsharp-masking the LQ is not implemented", False),
    "lq_usm_radius_range": _ignore("only used with lq_usm", _ANY),
    "thicklines_prob": _ignore("the ThickLines filter is not implemented", 0, 0.0),
    "auto_vram_management": _ignore(_FORK, None),
    # the degradation keys below are read by the OTF translation (trainner_otf); listed here for the doc
    **{
        k: Rule("otf", note)
        for k, note in {
            "blur_prob": "probability of the first blur (ours: always 1)",
            "blur_prob2": "probability of the second blur -> second_blur_prob",
            "jpeg_prob": "probability of the first JPEG (ours: always 1)",
            "jpeg_prob2": "probability of the second JPEG (ours: always 1)",
            "resize_mode_list": "first-resize modes (ours: area / bilinear / bicubic, equally likely)",
            "resize_mode_prob": "weights of resize_mode_list",
            "resize_mode_list2": "second-resize modes",
            "resize_mode_prob2": "weights of resize_mode_list2",
            "resize_mode_list3": "final-resize modes",
            "resize_mode_prob3": "weights of resize_mode_list3",
        }.items()
    },
}

DATASET: dict[str, Rule] = {
    "accum_iter": _map("train.accum_iter", "same meaning (gradient accumulation); read from datasets.train"),
    "dataset_enlarge_ratio": Rule(
        "special", "`auto` -> 1 (an epoch boundary costs nothing extra here); integers: same"
    ),
    "phase": _ignore("set from the datasets key", _ANY),
    "scale": Rule("special", "must equal the top-level scale"),
    "mean": _ignore("input normalisation is part of the network here", None),
    "std": _ignore("input normalisation is part of the network here", None),
    "num_prefetch_queue": _ignore("CUDA prefetch queue: pinned non-blocking copies are used", 1),
    "prefetch_factor": _ignore("DataLoader default prefetch is used", 2),
    "clip_size": Rule("refuse", "video datasets are not supported", inert=(None,)),
    "kernel_range": _ignore("kernel sizes here: odd sizes 7..blur_kernel_size", _ANY),
    "kernel_range2": _ignore("kernel sizes here: odd sizes 7..blur_kernel_size2", _ANY),
    "final_kernel_range": _ignore("final sinc sizes here: odd sizes 7..blur_kernel_size", _ANY),
    "io_backend": Rule("drop_none", "same meaning"),
    "prefetch_mode": Rule("drop_none", "same meaning"),
    "num_worker_per_gpu": Rule("drop_none", "same meaning; ~ = default"),
    "batch_size_per_gpu": Rule("drop_none", "same meaning; ~ = default"),
    "gt_size": Rule("drop_none", "same meaning"),
    "lq_size": Rule("drop_none", "same meaning"),
    "meta_info": Rule("drop_none", "same meaning"),
    "color": Rule("drop_none", "same meaning (`y` is refused)"),
}

PATH: dict[str, Rule] = {
    **{
        k: _ignore("folder set at run time by traiNNer-redux; here see path.experiments_root", None)
        for k in ("models", "resume_models", "training_states", "log", "visualization", "results_root")
    },
    "pretrain_network_g_path": _ignore("set at run time by traiNNer-redux", None),
    "pretrain_network_ae_path": _ignore("set at run time by traiNNer-redux", None),
    "pretrain_network_g_ema": _ignore("not loaded: the EMA starts from network_g's weights", None),
    "pretrain_network_ae": Rule("refuse", "autoencoder training is not supported", inert=(None,)),
    "pretrain_network_ae_ema": Rule("refuse", "autoencoder training is not supported", inert=(None,)),
    "pretrain_network_ae_decoder": Rule("refuse", "autoencoder training is not supported", inert=(None,)),
    "pretrain_network_ae_decoder_ema": Rule("refuse", "autoencoder training is not supported", inert=(None,)),
    "ignore_resume_networks": _ignore("every network is resumed", None, []),
    "param_key_g": Rule(
        "drop_none", "same meaning; ~ = `auto` (params_ema, then params, ... as found)", "auto"
    ),
    "param_key_d": Rule("drop_none", "same meaning; ~ = `auto`", "auto"),
    "pretrain_network_g": Rule("drop_none", "same meaning"),
    "pretrain_network_d": Rule("drop_none", "same meaning"),
    "resume_state": Rule("drop_none", "same meaning"),
}

TRAIN: dict[str, Rule] = {
    "optim_ae": Rule("refuse", "autoencoder training is not supported", inert=(None,)),
    "use_moa": _ignore("mixture of augmentations (MoA) is not implemented", False),
    "moa_augs": _ignore("only used with use_moa", _ANY),
    "moa_probs": _ignore("only used with use_moa", _ANY),
    "moa_debug": _ignore("only used with use_moa", _ANY),
    "moa_debug_limit": _ignore("only used with use_moa", _ANY),
    "adaptive_d": _ignore("adaptive discriminator updates are not implemented (see net_d_iters)", False),
    "ema_switch_iter": _ignore("the EMA is never switched into the online model", 0, None),
    "ema_power": _ignore("EMA warm-up power (traiNNer-redux fork): a fixed ema_decay is used"),
    "training_automations": _ignore(_FORK, None),
    "dynamic_loss_scheduling": _ignore(_FORK, None),
    "losses": Rule("special", "list of {type, loss_weight, ...}: see the loss table"),
    "grad_clip": Rule("drop_none", "same meaning (true = max norm 1.0)"),
    "scheduler": Rule("drop_none", "same meaning"),
    "optim_d": Rule("drop_none", "same meaning"),
    "warmup_iter": Rule("drop_none", "same meaning"),
}

VAL: dict[str, Rule] = {
    "val_enabled": Rule("special", "false: no validation, and the val/test datasets are not opened"),
    "metrics_enabled": Rule(
        "special", "false (traiNNer-redux's default when val_enabled is given): no metrics"
    ),
    "tile_size": Rule("special", "LR px per tile; with tile_overlap O: tile_size - 2*(O // 2) (same input)"),
    "tile_overlap": Rule("special", "O = LR px adjacent tiles share -> tile_pad = O // 2 (context per side)"),
    "val_freq": Rule("drop_none", "same meaning; ~ = default"),
    "metrics": Rule("drop_none", "same meaning"),
    "suffix": Rule("drop_none", "same meaning"),
}

LOGGER: dict[str, Rule] = {
    "save_checkpoint_format": _ignore("networks are always saved as safetensors", "safetensors"),
    "wandb": Rule("drop_none", "same meaning"),
}

_R2 = ("resize_prob", "resize_range", "gaussian_noise_prob", "noise_range", "poisson_scale_range", "gray_noise_prob",
       "jpeg_range")  # fmt: skip
_K2 = (
    "blur_kernel_size",
    "kernel_list",
    "kernel_prob",
    "sinc_prob",
    "blur_sigma",
    "betag_range",
    "betap_range",
)
# traiNNer-redux keys that exist here unchanged (for the doc; a test checks each is in our schema).
SAME: dict[str, tuple[str, ...]] = {
    "": ("name", "scale", "num_gpu", "manual_seed", "deterministic", "dist", "rank", "world_size", "is_train",
         "path", "network_g", "network_d", "datasets", "train", "val", "logger", "dist_params", "queue_size",
         *_R2, *(k + "2" for k in _R2)),
    "datasets.*": ("name", "type", "io_backend", "num_worker_per_gpu", "batch_size_per_gpu", "use_hflip", "use_rot",
                   "gt_size", "lq_size", "color", "prefetch_mode", "pin_memory", "persistent_workers", "dataroot_gt",
                   "dataroot_lq", "meta_info", "filename_tmpl", "final_sinc_prob", *_K2, *(k + "2" for k in _K2)),
    "path": ("experiments_root", "pretrain_network_g", "param_key_g", "strict_load_g", "resume_state",
             "pretrain_network_d", "param_key_d", "strict_load_d"),
    "train": ("total_iter", "optim_g", "optim_d", "ema_decay", "grad_clip", "warmup_iter", "scheduler", "losses"),
    "val": ("save_img", "val_freq", "suffix", "metrics", "pbar"),
    "logger": ("print_freq", "save_checkpoint_freq", "use_tb_logger", "wandb"),
}  # fmt: skip

# (section title, where it sits, table). The order is the doc's.
SECTIONS: list[tuple[str, str, dict[str, Rule]]] = [
    ("top level", "", TOP),
    ("datasets.<phase>", "datasets.*", DATASET),
    ("path", "path", PATH),
    ("train", "train", TRAIN),
    ("val", "val", VAL),
    ("logger", "logger", LOGGER),
]


def known_keys(loc: tuple[Any, ...]) -> list[str]:
    """traiNNer-redux keys accepted in the section at ``loc`` (for did-you-mean hints)."""
    where = ".".join(str(p) for p in loc)
    if len(loc) == 2 and loc[0] == "datasets":
        where = "datasets.*"
    return sorted({*next((t for _, w, t in SECTIONS if w == where), {}), *SAME.get(where, ())})


# ---------------------------------------------------------------- translation
def _set(tr: Translation, path: str, value: Any, origin: str) -> None:
    node = tr.data
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            tr.errors.append(f"{origin}: cannot be moved to {path} ({p} is not a section)")
            return
        node = nxt
    if parts[-1] in node and node[parts[-1]] != value:
        tr.errors.append(f"{origin}: {value!r} disagrees with {path}: {node[parts[-1]]!r}; give only one")
        return
    node[parts[-1]] = value


def is_inert(value: Any, inert: tuple[Any, ...]) -> bool:
    """Is ``value`` one of ``inert`` (same type too: ``0`` is not ``False``)? ``_ANY`` matches everything."""
    return _ANY in inert or any(value == v and type(value) is type(v) for v in inert)


def _apply(tr: Translation, sec: dict[str, Any], where: str, table: dict[str, Rule]) -> None:
    """The generic actions of ``table`` on one section dict (special/otf keys are left for their handlers)."""
    for key in [k for k in sec if k in table]:
        rule, origin = table[key], f"{where}.{key}" if where else key
        value = sec[key]
        if rule.action == "map":
            del sec[key]
            if rule.target.startswith("."):
                sec[rule.target[1:]] = value
            elif where.startswith("datasets.") and where != "datasets.train":
                continue  # accum_iter of a val set means nothing
            else:
                _set(tr, rule.target, value, origin)
        elif rule.action == "ignore":
            del sec[key]
            if not is_inert(value, rule.inert):
                tr.warn(origin, f"{value!r} has no effect here ({rule.note}); ignored")
        elif rule.action == "refuse":
            if is_inert(value, rule.inert):
                del sec[key]
            else:
                tr.errors.append(f"{origin}: {value!r} is not supported ({rule.note})")
        elif rule.action == "drop_none" and value is None:
            if rule.target:  # ~ means this value in traiNNer-redux
                sec[key] = rule.target
            else:
                del sec[key]


def _datasets(tr: Translation, scale: Any) -> None:
    datasets = tr.data.get("datasets")
    if not isinstance(datasets, dict):
        return
    for phase, ds in datasets.items():
        if not isinstance(ds, dict):
            continue
        where = f"datasets.{phase}"
        if ds.get("dataset_enlarge_ratio") in ("auto", None):
            ds.pop("dataset_enlarge_ratio", None)
        if "scale" in ds:
            if ds["scale"] not in (None, scale):
                tr.errors.append(f"{where}.scale: {ds['scale']!r} differs from the top-level scale {scale!r}")
            ds.pop("scale")
        _apply(tr, ds, where, DATASET)


def _val(tr: Translation) -> None:
    val = tr.data.get("val")
    if not isinstance(val, dict):
        return
    given = set(val)
    if val.pop("val_enabled", True) is False:
        tr.data["val"] = None  # traiNNer-redux ignores the val section and the val datasets then
        datasets = tr.data.get("datasets")
        if isinstance(datasets, dict):
            for k in [k for k in datasets if k != "train"]:
                del datasets[k]
        return
    # traiNNer-redux's metrics_enabled defaults to false; a file without val_enabled is one of ours: metrics on
    if val.pop("metrics_enabled", "val_enabled" not in given) is False:
        val.pop("metrics", None)
    _val_tiles(tr, val)
    _apply(tr, val, "val", VAL)


def _val_tiles(tr: Translation, val: dict[str, Any]) -> None:
    """traiNNer-redux steps ``tile_size`` px windows by ``tile_size - O`` (neighbours share O px); here tiles get
    ``tile_pad`` px of context per side (neighbours share 2*tile_pad): pad O // 2, tile_size - 2*pad, same window."""
    overlap, size = val.pop("tile_overlap", None), val.get("tile_size")
    if overlap is None:
        return
    if type(overlap) is not int or overlap < 0 or (type(size) is int and 0 < size <= overlap):
        why = f"below val.tile_size {size} " if type(size) is int and size > 0 else ""
        tr.errors.append(f"val.tile_overlap: {overlap!r} must be a number of pixels >= 0 {why}(it is the overlap "
                         "of adjacent tiles: traiNNer-redux steps them by tile_size - tile_overlap)")  # fmt: skip
        return
    if val.setdefault("tile_pad", overlap // 2) != overlap // 2:
        tr.errors.append(
            f"val.tile_overlap: {overlap} means tile_pad {overlap // 2}, not {val['tile_pad']!r}; give one"
        )
    elif type(size) is int and size > 0:
        val["tile_size"] = size - 2 * (overlap // 2)


def translate(data: dict[str, Any]) -> Translation:
    """Rewrite a traiNNer-redux option dict (any mix with our own keys) into this project's schema.

    Returns the rewritten copy with one warning per ignored key that would have had an effect, and the errors
    (keys whose value cannot be honoured here). The input dict is not modified.
    """
    from paragonsr.train.trainner_losses import model_type, translate_losses, translate_network
    from paragonsr.train.trainner_otf import translate_otf

    tr = Translation(copy.deepcopy(data))
    d = tr.data
    if "use_amp" in d and "amp_bf16" not in d and "amp_bf16" not in (d.get("train") or {}):
        d["amp_bf16"] = False  # traiNNer-redux's default precision for use_amp is fp16
    translate_otf(tr)
    _apply(tr, d, "", {k: r for k, r in TOP.items() if r.action != "otf"})
    _val(tr)  # first: val_enabled: false drops the val datasets, whose keys then need no warnings
    _datasets(tr, d.get("scale", 4))
    for key, table in (("path", PATH), ("logger", LOGGER)):
        if isinstance(d.get(key), dict):
            _apply(tr, d[key], key, table)
    if d.get("path", 0) is None:
        del d["path"]
    if isinstance(d.get("train"), dict):
        _apply(tr, d["train"], "train", TRAIN)
        translate_losses(tr, d["train"])
    model_type(d)
    for key in ("network_g", "network_d"):
        if isinstance(d.get(key), dict):
            translate_network(tr, d[key], key)
    return tr
