"""Model checkpoints: save/load ``.safetensors`` (default) and ``.pth`` with architecture metadata.

- ``save_model`` writes the state dict plus metadata (arch name, its kwargs as JSON, scale, channels, paragonsr
  version, fused flag, free-form extra) atomically. In ``.safetensors`` the metadata lives in the header (all
  values strings, as the format requires); in ``.pth`` it sits beside the weights under ``"paragonsr_meta"`` and the
  weights under ``param_key`` (BasicSR layout, so BasicSR/traiNNer can read our files too).
- ``load_state_dict`` accepts BasicSR/traiNNer/Real-ESRGAN layouts (``params``, ``params_ema``, ``net_g``, ...,
  ``module.``/``_orig_mod.`` prefixes). ``.pth`` files are only ever read with ``weights_only=True``.
- ``load_weights`` loads strictly or leniently and reports missing/unexpected/shape-mismatched keys.
- ``load_model`` rebuilds the architecture from the metadata, or for third-party files without metadata from the
  key layout (:func:`paragonsr.archs.detect.detect_arch`: Real-ESRGAN Compact, RRDBNet, ParagonSR v1 given
  ``scale=``), so ``paragonsr upscale --model file`` needs no further flags. Metadata encoding:
  :mod:`paragonsr.checkpoint.meta`. Metadata hyperparameters are checked (types, bounds, tensor names and shapes)
  before anything is built: :mod:`paragonsr.checkpoint.validate`. Every error names the file.

Metadata dict (``meta``) keys: ``arch`` (str|None), ``arch_kwargs`` (dict), ``scale``/``in_ch``/``out_ch``
(int|None), ``fused`` (bool|None: None = unknown), ``paragonsr_version`` (str|None), ``extra`` (dict),
``param_key`` (which entry of a ``.pth`` dict was used), ``format`` ("safetensors"|"pth"), ``path`` (str).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from paragonsr.archs.detect import detect_arch
from paragonsr.checkpoint.meta import (
    CheckpointError,
    LoadReport,
    NonFiniteWeightsError,
    decode_meta,
    encode_meta,
    model_is_fused,
    unwrap_model,
)
from paragonsr.checkpoint.validate import (
    check_hyperparameters,
    check_layout,
    check_top_level,
    not_checkpoint_message,
)
from paragonsr.utils.atomic import atomic_write_bytes

SAFETENSORS_EXTS = (".safetensors",)
PTH_EXTS = (".pth", ".pt", ".ckpt", ".bin")
# Preference order for param_key="auto": EMA weights are what BasicSR/traiNNer recommend for inference.
AUTO_PARAM_KEYS = ("params_ema", "params-ema", "params", "net_g_ema", "net_g", "state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_META_PTH_KEY = "paragonsr_meta"


# --------------------------------------------------------------------------------------------- saving


def save_model(
    path: str | os.PathLike[str],
    model_or_state: nn.Module | Mapping[str, Tensor],
    *,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    param_key: str = "params",
) -> Path:
    """Save weights + metadata atomically; the format follows the extension (``.safetensors`` or ``.pth``).

    ``metadata`` may set ``scale``/``in_ch``/``out_ch``/``fused`` explicitly; any other keys go to ``extra``.
    For a model, arch name/kwargs default to ``model.arch_name``/``model.arch_kwargs``, which every registered
    architecture records on its instances however they were built (:mod:`paragonsr.archs.hparams`).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SAFETENSORS_EXTS + PTH_EXTS:
        raise CheckpointError(
            f"{path}: unknown checkpoint extension '{path.suffix}' (use .safetensors, or .pth for BasicSR tools)"
        )
    meta: dict[str, Any] = {"arch": arch, "arch_kwargs": dict(arch_kwargs) if arch_kwargs else None}
    if isinstance(model_or_state, nn.Module):
        model = unwrap_model(model_or_state)
        state = model.state_dict()
        meta["arch"] = meta["arch"] or getattr(model, "arch_name", None)
        if meta["arch_kwargs"] is None:
            meta["arch_kwargs"] = dict(getattr(model, "arch_kwargs", None) or {})
        for key in ("scale", "in_ch", "out_ch"):
            val = getattr(model, key, None)
            meta[key] = int(val) if isinstance(val, int) else None
        meta["fused"] = model_is_fused(model)
    else:
        state = dict(model_or_state)
    extra: dict[str, Any] = {}
    for key, val in (metadata or {}).items():
        if key in ("scale", "in_ch", "out_ch", "fused", "arch", "arch_kwargs"):
            meta[key] = val
        elif key == "extra" and isinstance(val, Mapping):
            extra.update(val)
        else:
            extra[key] = val
    meta["extra"] = extra

    tensors: dict[str, Tensor] = {}
    seen_ptrs: set[int] = set()
    for key, val in state.items():
        if not isinstance(val, Tensor):
            raise CheckpointError(f"{path}: state entry '{key}' is a {type(val).__name__}, not a tensor")
        t = val.detach().to("cpu").contiguous()
        # safetensors refuses tensors sharing storage (tied weights): give duplicates their own copy.
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen_ptrs and t.numel() > 0:
            t = t.clone()
        seen_ptrs.add(ptr)
        tensors[key] = t
    _refuse_non_finite(tensors, path, "save")

    # Serialised in memory, then written with plain file I/O: a full disk is an OSError naming the file
    # (paragonsr.utils.atomic.WriteError), not a serialiser's RuntimeError/SafetensorError.
    if ext in SAFETENSORS_EXTS:
        from safetensors.torch import save

        data = save(tensors, metadata=encode_meta(meta))
    else:
        buf = io.BytesIO()
        torch.save({param_key: tensors, _META_PTH_KEY: encode_meta(meta)}, buf)
        data = buf.getvalue()
    atomic_write_bytes(path, data)
    return path


# --------------------------------------------------------------------------------------------- loading


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def _pick_params(obj: Any, path: Path, param_key: str | None) -> tuple[dict[str, Tensor], str | None]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    if param_key not in (None, "auto", "") and not (param_key not in obj and _is_state_dict(obj)):
        # (a flat state dict has no sub-entries: any param_key is moot and it is used as is)
        if param_key not in obj:
            keys = [k for k in obj if not isinstance(obj[k], Tensor)] or list(obj)[:10]
            raise CheckpointError(f"{path}: no '{param_key}' entry; the file has {sorted(map(str, keys))}")
        sub = obj[param_key]
        if not _is_state_dict(sub):
            raise CheckpointError(f"{path}: entry '{param_key}' is not a dict of tensors")
        return dict(sub), param_key
    if _is_state_dict(obj):
        return dict(obj), None
    for key in AUTO_PARAM_KEYS:
        if key in obj and _is_state_dict(obj[key]):
            return dict(obj[key]), key
    nested = [k for k, v in obj.items() if _is_state_dict(v)]
    if len(nested) == 1:  # one weights entry under an unusual name
        return dict(obj[nested[0]]), str(nested[0])
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if tensors and all(isinstance(k, str) for k in tensors):
        # A flat state dict with a few non-tensor entries beside it (e.g. our metadata, an 'iter' counter).
        return tensors, None
    raise CheckpointError(
        f"{path}: could not find the weights; top-level keys are {sorted(map(str, obj))[:12]} "
        f"(pass param_key= one of them)"
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors or .pth file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty (0 bytes)")


def load_state_dict(
    path: str | os.PathLike[str], param_key: str | None = "auto"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read weights and metadata from ``.safetensors`` or ``.pth``/``.pt`` (weights_only) on the CPU."""
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as fh:
        head = fh.read(9)
    # Sniff the content rather than trusting the extension: a safetensors file starts with an 8-byte header
    # length followed by the JSON header's "{"; torch.save writes a zip ("PK") or a raw pickle.
    is_safetensors = len(head) == 9 and head[8:9] == b"{"
    if is_safetensors:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                raw = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors or torch file ({exc})") from None
        meta = decode_meta(raw, path, "safetensors")
        if not state:
            raise CheckpointError(f"{path}: the file holds no tensors")
        _refuse_non_finite(state, path, "load")
        return _strip_prefixes(state), meta
    try:
        # From an open file: torch.load given a *.safetensors path hands it to safetensors, whatever it holds.
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weights_only's "pickle protocol" notes: the error below says it
            obj = torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(not_checkpoint_message(path, head)) from None
        raise CheckpointError(
            f"{path}: refused to unpickle {found.group(1)} (torch files are loaded with weights_only=True for "
            f"safety; re-save the weights as a plain state dict or as .safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated torch file ({exc})") from None
    except Exception:  # the weights_only unpickler fails in many ways on data that is not a torch file
        raise CheckpointError(not_checkpoint_message(path, head)) from None
    raw_meta = obj.get(_META_PTH_KEY) if isinstance(obj, Mapping) else None
    state, used = _pick_params(obj, path, param_key)
    meta = decode_meta(raw_meta, path, "pth")
    meta["param_key"] = used
    _refuse_non_finite(state, path, "load")
    return _strip_prefixes(state), meta


def _refuse_non_finite(state: Mapping[str, Tensor], path: Path, verb: str) -> None:
    """NaN/inf weights (a diverged run) never go into or come out of a checkpoint file."""
    from paragonsr.utils.finite import first_non_finite

    bad = first_non_finite(state)
    if bad is not None:
        raise NonFiniteWeightsError(
            f"{path}: tensor '{bad[0]}' holds {bad[1]} values; refusing to {verb} non-finite weights "
            "(a diverged training run?)"
        )


def load_weights(
    model: nn.Module,
    path_or_state: str | os.PathLike[str] | Mapping[str, Tensor],
    strict: bool = True,
    param_key: str | None = "auto",
    source: str | None = None,
) -> LoadReport:
    """Load weights into ``model``. Strict: any missing/unexpected/mismatched key raises ``CheckpointError``
    naming them (and the file: ``source`` names where a state dict came from). Non-strict: every key whose name
    and shape match is loaded; the rest is reported."""
    meta: dict[str, Any] = {}
    used: str | None
    if isinstance(path_or_state, (str, os.PathLike)):
        state, meta = load_state_dict(path_or_state, param_key)
        source, used = str(path_or_state), meta.get("param_key")
    else:
        state, used = _pick_params(path_or_state, Path("<state dict>"), param_key)
        state = _strip_prefixes(state)
        source = source or "state dict"
    # Archs that accept third-party layouts (public ParagonSR v1, legacy ESRGAN) map them onto their own keys.
    convert = getattr(model, "convert_state_dict", None)
    if callable(convert):
        state = convert(state)
    own = model.state_dict()
    report = LoadReport(param_key=used)
    report.missing = [k for k in own if k not in state]
    report.unexpected = [k for k in state if k not in own]
    usable: dict[str, Tensor] = {}
    for key, val in state.items():
        if key not in own:
            continue
        if tuple(val.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(val.shape), tuple(own[key].shape)))
        else:
            usable[key] = val
    report.loaded = len(usable)
    if strict and not report.ok:
        hint = ""
        if meta.get("fused") is True and model_is_fused(model) is not True:
            hint = " The checkpoint is fused: call model.fuse_for_release() first, or use load_model()."
        elif meta.get("arch") and getattr(model, "arch_name", None) not in (None, meta["arch"]):
            hint = f" The checkpoint was saved from arch '{meta['arch']}', the model is '{model.arch_name}'."
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: {report.describe()}.{hint}")
    model.load_state_dict(usable, strict=False)
    return report


# --------------------------------------------------------------------------------------------- rebuilding


def load_model(
    path: str | os.PathLike[str],
    arch: str | None = None,
    device: str | torch.device = "cpu",
    param_key: str | None = "auto",
    strict: bool = True,
    scale_hint: int | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode, on ``device``).

    ``scale_hint`` is used only where neither the metadata nor the weights tell the scale (ParagonSR v1 files
    from other tools), e.g. the ``--scale`` a user passed to ``paragonsr upscale``.

    ``arch``/``arch_kwargs`` override the metadata; files without metadata need ``arch=`` unless their layout is
    recognised by :func:`detect_arch`. Checkpoints marked ``fused=true`` are loaded into
    ``build_arch(...).fuse_for_release()``. The result carries ``model.checkpoint_meta``.
    """
    from paragonsr.archs import ARCH_REGISTRY, build_arch

    state, meta = load_state_dict(path, param_key)
    name = arch or meta["arch"]
    kwargs: dict[str, Any] = {}
    detected = None
    if not meta["arch"]:
        try:
            scale = arch_kwargs.get("scale") or meta["scale"] or scale_hint
            detected = detect_arch(state, arch is None, scale=scale)
        except ValueError as exc:  # recognised but underdetermined (ParagonSR v1 without a scale)
            if arch is None:
                raise CheckpointError(f"{path}: {exc}") from None
    try:
        if name is None:
            if detected is None:
                raise CheckpointError(
                    f"{path}: no architecture metadata and the key layout is not recognised; pass the arch "
                    f"(--arch NAME). Known archs: {', '.join(ARCH_REGISTRY.names())}"
                )
            name, kwargs = detected
        elif meta["arch"] and ARCH_REGISTRY.canonical(name) == ARCH_REGISTRY.canonical(meta["arch"]):
            kwargs = dict(meta["arch_kwargs"])
        elif detected and ARCH_REGISTRY.canonical(name) == detected[0]:
            kwargs = dict(detected[1])
    except KeyError as exc:  # unknown arch name
        raise CheckpointError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    meta["detected"] = detected is not None and not meta["arch"]
    from_meta = bool(meta["arch"]) and ARCH_REGISTRY.canonical(name) == ARCH_REGISTRY.canonical(meta["arch"])
    if from_meta:  # text anyone can edit: types and bounds before anything is built (checkpoint.validate)
        check_top_level(path, meta)
        check_hyperparameters(path, name, kwargs, state)
    kwargs.update(arch_kwargs)
    if meta["scale"] and "scale" not in kwargs and "upscale" not in kwargs:
        # The recorded scale must not fall back to the arch default: ParagonSR2's weights are the same at every
        # scale, so a x2 file without arch kwargs (model built directly, not via build_arch) would load as x4.
        from paragonsr.archs.options import arch_options

        with contextlib.suppress(KeyError):
            if "scale" in arch_options(name).model_fields:
                kwargs["scale"] = meta["scale"]
    if from_meta and strict and not arch_kwargs:  # names/shapes from a build on the meta device (no memory)
        check_layout(path, name, kwargs, state, meta["fused"])
    try:
        model = build_arch(name, **kwargs)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build arch '{name}' with {kwargs}: {exc}") from None
    # Third-party layouts -> ours (see load_weights), before the fused-layout detection compares key sets.
    convert = getattr(model, "convert_state_dict", None)
    if callable(convert):
        try:
            state = convert(state)
        except (KeyError, ValueError) as exc:  # a layout the arch's converter does not know
            raise CheckpointError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    fused = meta["fused"]
    if fused is None and hasattr(model, "fuse_for_release"):
        # Unknown (third-party) file: a fused layout shows as keys the unfused model does not have.
        fused = set(state) != set(model.state_dict()) and _fits_fused(name, kwargs, state)
    if fused:
        if not hasattr(model, "fuse_for_release"):
            raise CheckpointError(f"{path}: marked fused but arch '{name}' has no fuse_for_release()")
        model = cast(Any, model).fuse_for_release()
    load_weights(model, state, strict=strict, source=str(path))
    meta["fused"] = bool(fused)
    cast(Any, model).checkpoint_meta = meta
    return model.eval().to(device)


def _fits_fused(name: str, kwargs: dict[str, Any], state: Mapping[str, Tensor]) -> bool:
    from paragonsr.archs import build_arch

    fused_keys = set(cast(Any, build_arch(name, **kwargs)).fuse_for_release().state_dict())
    return fused_keys == set(state)


__all__ = [
    "CheckpointError",
    "LoadReport",
    "detect_arch",
    "load_model",
    "load_state_dict",
    "load_weights",
    "save_model",
]
