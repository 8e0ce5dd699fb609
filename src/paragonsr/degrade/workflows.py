"""``workflows``: realistic capture-and-share chains (camera → internet → social media).

With probability ``p_clean`` the LQ is a clean downscale of the GT (kernel drawn from ``clean_kernel``): identity
learning at the LQ size, never LQ = GT at full size. Otherwise one of ``predefined_sequences`` is drawn by its
``probability`` (normalised, with a warning, when they do not sum to 1) and its steps run:

1. ``on: scene`` steps (warps, colour/user filters) in order on the GT; the warped GT is the returned target;
2. ``on: lq`` steps in order on that scene; ``downscale`` goes to the LQ size, ``resize`` is relative;
3. if the image is not at H/scale by then, a final resize (kernel from ``final_kernel``) gets it there.

Options: ``p_clean``, ``clean_kernel``, ``final_kernel``, ``use_presets`` (start from the six built-in sequences,
default true), ``predefined_sequences`` (``{name: {probability, steps}}``; a preset name with only
``probability`` re-weights it, with ``steps`` replaces it, a new name adds a sequence), ``round8``.
"""

from __future__ import annotations

import copy
import difflib
import warnings
from typing import Any

import numpy as np

from paragonsr.degrade import ops
from paragonsr.degrade.base import Degradation, Record, check_keys, crop_to_multiple, jsonable, note
from paragonsr.degrade.presets import P_CLEAN, PRESETS
from paragonsr.degrade.workflow_ops import OPS, STEP_KEYS, Ctx, check_value, sample_value
from paragonsr.registry import DEGRADATION_REGISTRY

DEFAULTS: dict[str, Any] = {
    "p_clean": P_CLEAN,
    "clean_kernel": ["bicubic", "lanczos3", "magic_sharp_2021", "area"],
    "final_kernel": ["bicubic", "bilinear", "lanczos3"],
    "use_presets": True,
    "predefined_sequences": {},
    "round8": True,
}
_GEOMETRIC = ("lens_distortion", "chromatic_aberration", "rolling_shutter")


def _validate_step(step: Any, seq: str, i: int) -> dict[str, Any]:
    where = f"workflows sequence '{seq}' step {i}"
    if not isinstance(step, dict) or "op" not in step:
        raise ValueError(f"{where}: each step must be a mapping with an 'op' key, got {step!r}")
    op = step["op"]
    if op not in OPS:
        close = difflib.get_close_matches(str(op), list(OPS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"{where}: unknown op '{op}'.{hint} Valid ops: {', '.join(sorted(OPS))}")
    spec = OPS[op]
    check_keys({k: v for k, v in step.items() if k not in STEP_KEYS}, spec.params, f"{where} ({op})")
    prob = step.get("prob", 1.0)
    if not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise ValueError(f"{where} ({op}): prob must be a number in [0, 1], got {prob!r}")
    on = step.get("on", spec.on)
    if on not in ("scene", "lq"):
        raise ValueError(f"{where} ({op}): 'on' must be 'scene' or 'lq', got {on!r}")
    if on == "lq" and op in _GEOMETRIC:
        warnings.warn(f"{where}: {op} on the LQ only misaligns the training pair", stacklevel=4)
    for name, default in spec.params.items():
        if name in step:
            check_value(step[name], default, spec.choices.get(name), f"{where} ({op}.{name})")
    return {**step, "prob": float(prob), "on": on}


def resolve_sequences(opt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Merge presets and user sequences, validate every step and normalise the probabilities."""
    seqs = copy.deepcopy(PRESETS) if opt["use_presets"] else {}
    user = opt["predefined_sequences"] or {}
    if not isinstance(user, dict):
        raise ValueError(
            f"workflows: predefined_sequences must be a mapping name -> {{probability, steps}}, got {type(user).__name__}"
        )
    for name, entry in user.items():
        if not isinstance(entry, dict):
            raise ValueError(f"workflows sequence '{name}': expected {{probability, steps}}, got {entry!r}")
        check_keys(entry, ("probability", "steps"), f"workflows sequence '{name}'")
        if name not in seqs and "steps" not in entry:
            known = ", ".join(sorted(seqs)) or "none (use_presets is false)"
            raise KeyError(f"workflows sequence '{name}' has no steps and is not a preset; presets: {known}")
        seqs[name] = {**seqs.get(name, {}), **entry}
    if not seqs:
        raise ValueError("workflows: no sequences (use_presets is false and predefined_sequences is empty)")
    for name, entry in seqs.items():
        p = entry.get("probability", 1.0)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or p < 0:
            raise ValueError(
                f"workflows sequence '{name}': probability must be a non-negative number, got {p!r}"
            )
        if not isinstance(entry.get("steps"), list):
            raise ValueError(f"workflows sequence '{name}': steps must be a list of {{op: ..., params}}")
        entry["steps"] = [_validate_step(s, name, i) for i, s in enumerate(entry["steps"])]
    total = sum(e.get("probability", 1.0) for e in seqs.values())
    if total <= 0:
        raise ValueError(f"workflows: sequence probabilities sum to 0 ({', '.join(seqs)})")
    if abs(total - 1.0) > 1e-6:
        warnings.warn(
            f"workflows: sequence probabilities sum to {total:g}; normalising them to 1", stacklevel=3
        )
    for e in seqs.values():
        e["probability"] = e.get("probability", 1.0) / total
    return seqs


@DEGRADATION_REGISTRY.register("workflows", aliases=("workflow", "realistic_workflows"))
class WorkflowDegradation(Degradation):
    name = "workflows"

    def __init__(self, opt: dict[str, Any] | None = None, scale: int = 4) -> None:
        super().__init__(scale)
        opt = dict(opt or {})
        check_keys(opt, DEFAULTS, "workflows options")
        self.opt = o = {**DEFAULTS, **opt}
        if not isinstance(o["p_clean"], (int, float)) or not 0 <= o["p_clean"] <= 1:
            raise ValueError(f"workflows: p_clean must be in [0, 1], got {o['p_clean']!r}")
        for key in ("clean_kernel", "final_kernel"):
            check_value(o[key], o[key], ops.RESIZE_KERNELS, f"workflows {key}")
        self.sequences = resolve_sequences(o)
        self._names = list(self.sequences)
        self._p = np.array([self.sequences[n]["probability"] for n in self._names])

    def _step(self, img: np.ndarray, step: dict, ctx: Ctx) -> np.ndarray:
        spec = OPS[step["op"]]
        params = {}
        for name, default in spec.params.items():
            value = step.get(name, default)
            params[name] = value if name in spec.raw else sample_value(value, default, ctx.rng)
        note(ctx.rec, step["op"], on=step["on"], **{k: v for k, v in params.items() if k not in spec.raw})
        return spec.fn(img, ctx, **params)

    def _run(self, gt: np.ndarray, rng: np.random.Generator, rec: Record | None, index: int | None) -> dict:
        o = self.opt
        gt = crop_to_multiple(gt, self.scale)
        h, w = gt.shape[:2]
        target = (h // self.scale, w // self.scale)
        if rng.uniform() < o["p_clean"]:
            kernel = str(sample_value(o["clean_kernel"], None, rng))
            note(rec, "clean", kernel=kernel)
            lq = ops.resize(gt, target, kernel)
            return {"lq": ops.round8(lq) if o["round8"] else lq, "gt": gt}
        name = self._names[int(rng.choice(len(self._names), p=self._p))]
        note(rec, "sequence", name=name)
        ctx = Ctx(rng, target, rec)
        steps = self.sequences[name]["steps"]
        runs = [rng.uniform() < s["prob"] for s in steps]  # decided up front: one draw per step, fixed order
        scene = gt
        for step, run in zip(steps, runs):
            if run and step["on"] == "scene":
                scene = self._step(scene, step, ctx)
        img = scene
        for step, run in zip(steps, runs):
            if run and step["on"] == "lq":
                img = self._step(img, step, ctx)
        if img.shape[:2] != target:
            kernel = str(sample_value(o["final_kernel"], None, rng))
            note(rec, "fit", kernel=kernel, size=jsonable(list(target)))
            img = ops.resize(img, target, kernel)
        return {"lq": ops.round8(img) if o["round8"] else img, "gt": scene}
