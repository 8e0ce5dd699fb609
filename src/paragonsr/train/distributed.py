"""torch.distributed helpers: ``--launcher pytorch`` (torchrun env vars), gloo on CPU and nccl on CUDA."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

F = TypeVar("F", bound=Callable[..., Any])


def init_dist(launcher: str, backend: str = "nccl") -> tuple[int, int]:
    """Initialise the process group from torchrun's environment; returns ``(rank, world_size)``."""
    if launcher != "pytorch":
        raise ValueError(f"unsupported launcher {launcher!r}; use 'none' or 'pytorch' (torchrun)")
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"--launcher pytorch needs torchrun's environment ({', '.join(missing)} unset): run "
            "`torchrun --nproc_per_node=N -m paragonsr train -opt ... --launcher pytorch`"
        )
    use_cuda = torch.cuda.is_available()
    if not use_cuda or backend not in ("nccl", "gloo"):
        backend = "gloo"  # nccl needs CUDA; gloo works everywhere
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    if not dist.is_initialized():
        # torch.distributed.nn.functional binds ``group=group.WORLD`` as default arguments when it is first imported
        # (torch.optim pulls it in through torch._dynamo). Imported after init_process_group, those defaults keep
        # the default group alive past destroy_process_group: its gloo threads then run into interpreter shutdown,
        # which can abort the process ("terminate called without an active exception"). Import it first.
        importlib.import_module("torch.distributed.nn")

        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def get_dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return get_dist_info()[0] == 0


def master_only(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_main():
            return func(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar logs over ranks (for printing only)."""
    _, world = get_dist_info()
    if world == 1 or not values:
        return values
    keys = list(values)  # same insertion order on every rank (same code path)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is set on any rank (keeps the non-finite guard in lockstep across ranks)."""
    _, world = get_dist_info()
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def cleanup(sync: bool = True) -> None:
    """Destroy the process group (no-op without one). ``sync`` first waits for every rank (a barrier), so no rank
    tears down its connections while another still uses them; pass ``sync=False`` on an error path, where a rank
    that has died would leave the barrier waiting."""
    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()
