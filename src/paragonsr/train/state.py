"""Training-state files: ``training_states/<iter>.state`` (optimizers, schedulers, scaler, iteration, RNG
states, data position, best metrics) next to the networks in ``models/`` (safetensors).

Write order makes a checkpoint *complete* only when its state file exists: networks first, then the state
(temp file + ``os.replace``). ``--auto_resume`` takes the newest state whose network files are all present.
Everything is stored as tensors / plain Python so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from paragonsr.utils.atomic import atomic_write_bytes

STATE_EXT = ".state"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + CUDA) RNG states in a weights_only-safe form."""
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple form
    state: dict[str, Any] = {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    keys, version, gauss = state["python"]
    random.setstate((version, tuple(int(k) for k in keys), gauss))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically; serialised in memory first, so a full disk raises
    :class:`~paragonsr.utils.atomic.WriteError` naming ``path`` (torch's zip writer would raise a RuntimeError)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume_state not found: {path}")
    try:
        return torch.load(str(path), map_location=device, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"{path}: unreadable training state ({exc})") from None


def state_problem(path: Path, models_dir: Path) -> str | None:
    """Why the training state at ``path`` cannot be resumed from (None: it can): the state file is unreadable
    (truncated, corrupt), or a network file it names is missing or unreadable. Network files are read in full
    (header and every tensor), so a truncated one is found here and not halfway through the resume. Raises
    :class:`~paragonsr.checkpoint.NonFiniteWeightsError` for NaN/inf weights (refused, not skipped)."""
    try:
        st = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        return f"unreadable state file ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
    if not isinstance(st, dict) or "iter" not in st:
        return "not a training state (no 'iter' entry)"
    from paragonsr.checkpoint import NonFiniteWeightsError, load_state_dict

    for fname in dict(st.get("net_files", {})).values():
        net = models_dir / str(fname)
        if not net.is_file():
            return f"its network file {net} is missing"
        try:
            load_state_dict(net)
        except NonFiniteWeightsError:
            raise  # a diverged run's weights are refused, not passed over (the user must decide)
        except Exception as exc:  # CheckpointError (truncated, corrupt, non-finite) or an OS error
            return f"its network file is unreadable: {exc}"
    return None


def state_complete(path: Path, models_dir: Path) -> bool:
    """True when the training state at ``path`` and its network files are all readable."""
    return state_problem(path, models_dir) is None


def find_latest_state(exp_root: str | Path, skipped: list[str] | None = None) -> Path | None:
    """Newest complete ``training_states/<iter>.state`` of an experiment (None when there is none). Every newer
    state passed over is appended to ``skipped`` as ``"<path>: <why>"``."""
    root = Path(exp_root)
    states = root / "training_states"
    if not states.is_dir():
        return None
    cands = []
    for p in states.glob(f"*{STATE_EXT}"):
        if p.stem.isdigit():
            cands.append((int(p.stem), p))
    for _, p in sorted(cands, reverse=True):
        why = state_problem(p, root / "models")
        if why is None:
            return p
        if skipped is not None:
            skipped.append(f"{p}: {why}")
    return None
