"""traiNNer-redux loss and architecture names -> ours (the table behind :mod:`paragonsr.train.trainner_compat`).

Losses come as ``train.losses: [{type: msssiml1loss, loss_weight: 1, ...}]`` (traiNNer-redux's current form) or as
BasicSR ``train.<name>_opt`` sections; both are rewritten into one ``losses`` list of our registered losses. A loss
whose effective weight is 0 (``loss_weight: 0``, or a perceptual loss with both ``perceptual_weight`` and
``style_weight`` 0; traiNNer-redux templates list disabled losses that way) is dropped, so it needs no weights. A
traiNNer-redux loss with no counterpart here is an error when its weight is not 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paragonsr.train.trainner_compat import _ANY, is_inert

if TYPE_CHECKING:
    from paragonsr.train.trainner_compat import Translation

__all__ = ["ARCHS", "LOSSES", "UNSUPPORTED_LOSSES", "model_type", "translate_losses", "translate_network"]


@dataclass(frozen=True)
class LossRule:
    ours: str
    note: str = "same meaning"
    rename: dict[str, str] = field(default_factory=dict)  # traiNNer kwarg -> ours
    # kwargs with no effect here: name -> (traiNNer-redux default, values accepted silently)
    ignore: dict[str, tuple[Any, tuple[Any, ...]]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # traiNNer-redux defaults that differ from ours


_THIRD = 1 / 3
LOSSES: dict[str, LossRule] = {
    "l1loss": LossRule("L1Loss"),
    "mseloss": LossRule("MSELoss"),
    "charbonnierloss": LossRule("CharbonnierLoss"),
    "ganloss": LossRule("GANLoss"),
    "ssimloss": LossRule(
        "SSIMLoss",
        "SSIM on RGB channels",
        ignore={
            "channels": (3, (3,)),
            "downsample": (False, (False,)),
            "test_y_channel": (True, (False,)),
            "color_space": ("yiq", (_ANY,)),
            "crop_border": (0, (0, 0.0)),
        },
    ),
    "mssimloss": LossRule(
        "MSSSIMLoss",
        "MS-SSIM on RGB channels",
        rename={"window_size": "win_size", "l": "data_range"},
        ignore={
            "in_channels": (3, (3,)),
            "k1": (0.01, (0.01,)),
            "k2": (0.03, (0.03,)),
            "padding": (None, (None,)),
            "cosim": (True, (False,)),
            "cosim_lambda": (5, (_ANY,)),
        },
    ),
    "msssiml1loss": LossRule(
        "MSSSIML1Loss",
        "same formula (alpha * (1 - MS-SSIM) + (1 - alpha) * Gaussian-weighted L1, Zhao et al. 2017)",
        ignore={"cuda_dev": (0, (_ANY,))},
    ),
    "perceptualloss": LossRule(
        "PerceptualLoss",
        "VGG feature distance; criterion l1/charbonnier as given, pd+l1 and fd+l1 keep their l1 part (warning), "
        "pd/fd alone are refused; without layer_weights our default (conv5_4) is used",
        ignore={
            "w_lambda": (0.01, (_ANY,)),
            "alpha": (None, (_ANY,)),
            "num_proj_fd": (256, (_ANY,)),
            "phase_weight_fd": (1.0, (_ANY,)),
            "stride_fd": (1, (_ANY,)),
            "clip_min": (0, (0, 0.0)),
        },
    ),
    "hsluvloss": LossRule(
        "HSLuvLoss",
        "same meaning; traiNNer-redux's default term weights (1/3 each) are kept",
        ignore={"criterion": ("l1", ("l1",)), "downscale_factor": (1, (1,))},
        defaults={"hue_weight": _THIRD, "saturation_weight": _THIRD, "lightness_weight": _THIRD},
    ),
    "distsloss": LossRule(
        "DISTSLoss",
        ignore={
            "as_loss": (True, (True,)),
            "load_weights": (True, (True,)),
            "use_input_norm": (True, (True,)),
            "clip_min": (0, (0, 0.0)),
        },
    ),
    "ffloss": LossRule("FocalFrequencyLoss", "same meaning", defaults={"ave_spectrum": True}),
}
# traiNNer-redux losses with no counterpart here (accepted only with loss_weight 0).
UNSUPPORTED_LOSSES = (
    "adistsloss", "aesoploss", "averageloss", "bcewithlogitsdiceloss", "bicubicloss", "colorloss",
    "contextualloss", "cosimloss", "fliploss", "gradientvarianceloss", "ldlloss", "linedistillerloss", "lumaloss",
    "multiscaleganloss", "nccloss", "psnrloss", "perceptualanimeloss", "perceptualfp16loss", "topiqloss",
    "dinov2loss", "hrinversionloss",
)  # fmt: skip
_KEEP = {"name", "target", "type", "loss_weight"}

# traiNNer-redux architecture names whose arguments differ from ours: name -> (our type, fixed kwargs, renames).
ARCHS: dict[str, tuple[str, dict[str, Any], dict[str, str]]] = {
    "compact": ("SRVGGNetCompact", {}, {"scale": "upscale"}),
    "ultracompact": ("SRVGGNetCompact", {"num_feat": 64, "num_conv": 8}, {"scale": "upscale"}),
    "superultracompact": ("SRVGGNetCompact", {"num_feat": 24, "num_conv": 8}, {"scale": "upscale"}),
}
_ARCH_IGNORE = {"learn_residual": (True,)}  # spandrel's Compact option; ours always adds the upsampled input


def _number(value: Any) -> float | None:
    """``value`` as a float; None when it is not a number (the schema then reports the key by name)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _weight(item: dict[str, Any]) -> float | None:
    """The loss's effective weight: 0 for a loss that is switched off, None when a weight is not a number."""
    w = _number(item.get("loss_weight", 1.0) or 0.0)
    if str(item.get("type", "")).lower() in ("perceptualloss", "perceptual", "vggperceptualloss"):
        pw, sw = _number(item.get("perceptual_weight", 1.0)), _number(item.get("style_weight", 0.0))
        if pw == 0 and sw == 0:
            return 0.0
    return w


def _one(tr: Translation, item: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """One traiNNer loss dict -> our loss dicts (possibly several, or none)."""
    kind = str(item.get("type", "")).lower()
    if _weight(item) == 0:
        return []
    if kind in UNSUPPORTED_LOSSES:
        tr.errors.append(
            f"{where}.type: traiNNer-redux loss {item['type']!r} has no equivalent here; set its loss_weight to 0 "
            f"or replace it (available: {', '.join(sorted(LOSSES))} and the registered losses)"
        )
        return []
    rule = LOSSES.get(kind)
    if rule is None:
        return [item]  # one of ours (or a typo: the registry check gives the did-you-mean)
    out = {**rule.defaults, **{rule.rename.get(k, k): v for k, v in item.items()}}
    for key, (default, inert) in rule.ignore.items():
        value = out.pop(key, default)
        if not is_inert(value, inert):
            tr.warn(f"{where}.{key}", f"{value!r} has no effect here ({kind}: {rule.note}); ignored")
    if kind == "perceptualloss":
        crit = str(out.get("criterion", "l1")).lower()
        if crit in ("pd+l1", "fd+l1"):
            tr.warn(f"{where}.criterion", f"{crit!r}: only its l1 part is available here; using 'l1'")
            out["criterion"] = "l1"
        elif crit in ("pd", "fd"):
            tr.errors.append(f"{where}.criterion: {crit!r} is not available here (use l1 or charbonnier)")
    out["type"] = rule.ours
    return [out]


def translate_losses(tr: Translation, train: dict[str, Any]) -> None:
    """Rewrite ``train.losses`` and every ``train.<name>_opt`` loss into one ``losses`` list of our losses."""
    items: list[tuple[str, Any]] = [
        (f"train.losses.{i}", it) for i, it in enumerate(train.get("losses") or [])
    ]
    for key in [k for k in train if k.endswith("_opt") and k not in ("optim_g", "optim_d")]:
        val = train.pop(key)
        if isinstance(val, dict):
            items.append((f"train.{key}", {"name": key.removesuffix("_opt"), **val}))
        elif val is not None:
            items.append((f"train.{key}", val))
    if not items and "losses" not in train:
        return
    out: list[Any] = []
    for where, item in items:
        out += _one(tr, item, where) if isinstance(item, dict) and "type" in item else [item]
    train["losses"] = out


def translate_network(tr: Translation, net: dict[str, Any], where: str) -> None:
    """traiNNer-redux architecture names with other defaults or argument names (``ultracompact``, ...)."""
    spec = ARCHS.get(str(net.get("type", "")).lower())
    if spec is None:
        return
    ours, fixed, rename = spec
    for key, inert in _ARCH_IGNORE.items():
        if key in net and net.pop(key) not in inert:
            tr.errors.append(f"{where}.{key}: only {inert[0]!r} is supported here")
    given = {rename.get(k, k): v for k, v in net.items() if k != "type"}
    net.clear()
    net.update({"type": ours, **fixed, **given})


_GAN_LOSSES = (
    "ganloss",
    "gan",
    "vanillagan",
    "r3ganloss",
    "r3gan",
    "rahingeganloss",
    "rahinge",
    "relativistic_hinge",
)


def model_type(d: dict[str, Any]) -> None:
    """``model_type`` from ``network_d`` and the GAN losses (traiNNer-redux has none); rewrites ``d`` in place."""
    # traiNNer-redux has no model_type: a network_d with an active GAN loss makes a GAN run; a network_d whose GAN
    # loss weighs 0 (the SPAN/Compact templates) trains nothing that reaches the generator, so it is dropped.
    if "model_type" in d or not isinstance(d.get("network_d"), dict) or not isinstance(d.get("train"), dict):
        return
    losses = d["train"].get("losses") or []
    gan = [lo for lo in losses if isinstance(lo, dict) and str(lo.get("type", "")).lower() in _GAN_LOSSES]
    if any(float(lo.get("loss_weight", 1.0)) != 0 for lo in gan):
        d["model_type"] = "GANModel"
    else:
        del d["network_d"]
        d["train"]["losses"] = [lo for lo in losses if not any(lo is g for g in gan)]
        d["train"].pop("optim_d", None)
