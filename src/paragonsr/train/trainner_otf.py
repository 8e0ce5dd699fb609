"""traiNNer-redux on-the-fly (OTF) degradation keys -> our degradation pipelines.

traiNNer-redux runs Real-ESRGAN's two-stage degradation with extra switches (``blur_prob``, ``jpeg_prob``,
``resize_mode_list``/``resize_mode_prob`` for each of the three resizes, ...). Two cases:

* every random stage is switched off (no blur, resize "keep", no noise, no JPEG, no final sinc) and the final resize
  has one mode: the LQ is a plain downscale of the GT, so the train set uses our ``bicubic`` pipeline (or
  ``resize`` with that kernel). This is what the ``*_OTF_bicubic*`` templates describe;
* otherwise our ``realesrgan`` pipeline gets the keys it shares; ``blur_prob2`` becomes ``second_blur_prob``;
  switches it does not have (first blur / JPEG probability, resize modes) are accepted with one warning each when
  they ask for something other than what it does.

Values missing from the file take traiNNer-redux's defaults (``redux_options.py``), not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paragonsr.data.options import OTFDatasetOpt
from paragonsr.degrade.realesrgan_opts import DATASET_KEYS, PIPELINE_TOP_KEYS
from paragonsr.registry import DATASET_REGISTRY

if TYPE_CHECKING:
    from paragonsr.train.trainner_compat import Translation

__all__ = ["REDUX_DEFAULTS", "translate_otf"]

_MODES4 = ["bilinear", "bicubic", "nearest-exact", "lanczos"]
# traiNNer-redux defaults of the keys read here (where they differ from Real-ESRGAN's / ours)
REDUX_DEFAULTS: dict[str, Any] = {
    "blur_prob": 0.0, "blur_prob2": 0.0, "jpeg_prob": 1.0, "jpeg_prob2": 1.0,
    "resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.4, 1.5], "resize_prob2": [0.3, 0.4, 0.3],
    "resize_range2": [0.6, 1.2], "gaussian_noise_prob": 0.0, "noise_range": [0, 0], "poisson_scale_range": [0, 0],
    "gaussian_noise_prob2": 0.0, "noise_range2": [0, 0], "poisson_scale_range2": [0, 0],
    "gray_noise_prob": 0.0, "gray_noise_prob2": 0.0, "jpeg_range": [75, 95], "jpeg_range2": [75, 95],
    "resize_mode_list3": _MODES4, "final_sinc_prob": 0.0,
}  # fmt: skip
_OTF_KEYS = (
    "blur_prob", "blur_prob2", "jpeg_prob", "jpeg_prob2", "resize_mode_list", "resize_mode_prob",
    "resize_mode_list2", "resize_mode_prob2", "resize_mode_list3", "resize_mode_prob3",
)  # fmt: skip
# top-level keys only the realesrgan pipeline reads (dropped with it); its datasets.train keys
_REALESRGAN_TOP = (*PIPELINE_TOP_KEYS, "l1_gt_usm", "percep_gt_usm", "gan_gt_usm")
_REALESRGAN_DS = DATASET_KEYS
# traiNNer-redux final-resize mode -> (our pipeline, its options)
_PLAIN = {
    "bicubic": ("bicubic", {}),
    "bilinear": ("resize", {"kernel": "bilinear"}),
    "nearest-exact": ("resize", {"kernel": "nearest"}),
    "lanczos": ("resize", {"kernel": "lanczos3"}),
}


def _no_noise(v: dict[str, Any], sfx: str) -> bool:
    gp = float(v["gaussian_noise_prob" + sfx])
    return (gp == 0 or max(v["noise_range" + sfx]) == 0) and (
        gp >= 1 or max(v["poisson_scale_range" + sfx]) == 0
    )


def _keeps_size(v: dict[str, Any], sfx: str) -> bool:
    up, down, _keep = v["resize_prob" + sfx]
    lo, hi = v["resize_range" + sfx]
    return (up == 0 or hi == 1) and (down == 0 or lo == 1)


def plain_resize_mode(values: dict[str, Any]) -> str | None:
    """The final-resize mode when every random stage is off (see the module docstring), else None."""
    v = {**REDUX_DEFAULTS, **{k: x for k, x in values.items() if x is not None}}
    modes = [
        m for m, p in zip(v["resize_mode_list3"], v.get("resize_mode_prob3") or [1] * 4, strict=False) if p
    ]
    if (
        float(v["blur_prob"]) == 0 and float(v["blur_prob2"]) == 0
        and float(v["jpeg_prob"]) == 0 and float(v["jpeg_prob2"]) == 0
        and float(v["final_sinc_prob"]) == 0
        and _no_noise(v, "") and _no_noise(v, "2") and _keeps_size(v, "") and _keeps_size(v, "2")
        and len(set(modes)) == 1 and modes[0] in _PLAIN
    ):  # fmt: skip
        return modes[0]
    return None


def _on_the_fly(name: Any) -> bool:
    """Whether the registered dataset ``name`` makes its LQ on the fly (its options are OTF options)."""
    import paragonsr.data.datasets  # noqa: F401  registers the datasets

    if name is None or name not in DATASET_REGISTRY:
        return False
    return issubclass(getattr(DATASET_REGISTRY.get(str(name)), "option_base", type(None)), OTFDatasetOpt)


def translate_otf(tr: Translation) -> None:
    d = tr.data
    hod = d.pop("high_order_degradation", None)
    given = {k: d.pop(k) for k in _OTF_KEYS if k in d}
    datasets = d["datasets"] if isinstance(d.get("datasets"), dict) else {}
    ds = datasets.get("train")
    otf = isinstance(ds, dict) and _on_the_fly(ds.get("type"))
    if not otf:
        if hod:
            tr.warn(
                "high_order_degradation", "true has no effect here: datasets.train is paired data; ignored"
            )
        return  # the OTF switches do nothing without OTF data in traiNNer-redux either
    assert isinstance(ds, dict)  # otf implies it
    if hod is None and not given:
        return  # a BasicSR / Real-ESRGAN file: nothing of traiNNer-redux's to translate
    if str(ds.get("degradation", "realesrgan")).lower() not in ("realesrgan", "real_esrgan"):
        for k in given:
            tr.warn(k, f"has no effect with degradation {ds['degradation']!r}; ignored")
        return
    values = {**{k: d[k] for k in _REALESRGAN_TOP if k in d}, **given}
    values.update({k: ds[k] for k in ("final_sinc_prob",) if k in ds})
    mode = plain_resize_mode(values)
    if mode is not None:
        pipeline, extra = _PLAIN[mode]
        ds["degradation"] = pipeline
        if extra:
            ds["degradation_opt"] = {**extra, **(ds.get("degradation_opt") or {})}
        for k in _REALESRGAN_DS:
            ds.pop(k, None)
        for k in _REALESRGAN_TOP:
            d.pop(k, None)
        return
    if "blur_prob2" in given:
        d.setdefault("second_blur_prob", given.pop("blur_prob2"))
    why = {
        "blur_prob": ("the first blur is always applied here", (1, 1.0)),
        "jpeg_prob": ("the first JPEG is always applied here", (1, 1.0)),
        "jpeg_prob2": ("the final JPEG is always applied here", (1, 1.0)),
    }
    for k, value in given.items():
        note, inert = why.get(k, ("resize modes here: area / bilinear / bicubic, equally likely", ([], None)))
        if k.startswith("resize_mode_prob") or value in inert:
            continue  # the warning on the matching resize_mode_list covers its weights
        tr.warn(k, f"{value!r} has no effect here ({note}); ignored")
    for sfx in ("", "2"):  # traiNNer-redux draws kernel sizes from kernel_range (default 5..17)
        lo, hi = ds.pop("kernel_range" + sfx, (5, 17))
        ds["blur_kernel_size" + sfx] = max(3, int(hi) - (1 - int(hi) % 2))
        if lo != 7:
            tr.warn(
                f"datasets.train.kernel_range{sfx}",
                f"kernel sizes here are the odd sizes 7..{hi}, not {lo}..{hi}",
            )
    for (
        k,
        default,
    ) in REDUX_DEFAULTS.items():  # missing keys mean traiNNer-redux's defaults, not Real-ESRGAN's
        if k in _REALESRGAN_TOP and k not in d:
            d[k] = default
