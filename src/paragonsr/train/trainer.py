"""The training loop: experiment folders, data loaders, model, resume, periodic log/validation/checkpoint.

Layout (BasicSR): ``experiments/<name>/{models,training_states,visualization,tb_logger}`` + ``train_<name>.log``.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from paragonsr.data.build import build_dataset, build_pair_pool, build_train_loader, build_val_loaders
from paragonsr.train.distributed import barrier, cleanup, get_dist_info, init_dist, reduce_mean
from paragonsr.train.logger import (
    MessageLogger,
    close_tb,
    finish_wandb,
    get_logger,
    init_tb,
    init_wandb,
    plot_curves,
)
from paragonsr.train.options import Options
from paragonsr.train.state import atomic_torch_save, find_latest_state, load_state, rng_state, set_rng_state
from paragonsr.train.validation import BestTracker, validate
from paragonsr.utils.atomic import WriteError, atomic_output, atomic_write_text
from paragonsr.utils.procs import term_blocked_for_children

log = logging.getLogger("paragonsr.train")


@dataclass
class DataPosition:
    """Where the training stream is: epoch and batches consumed in it (per rank)."""

    epoch: int = 0
    batch: int = 0


@dataclass
class RunResult:
    exp_root: Path
    iters: int
    losses: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def experiment_root(opt: Options) -> Path:
    if opt.path.experiments_root:
        return Path(opt.path.experiments_root)
    return Path(opt.path.root or ".") / "experiments" / opt.name


class Trainer:
    def __init__(self, opt: Options, launcher: str = "none", auto_resume: bool = False) -> None:
        self.opt = opt
        if launcher != "none":
            init_dist(launcher, opt.dist_params.backend)
        self.rank, self.world = get_dist_info()
        opt.dist, opt.rank, opt.world_size = self.world > 1, self.rank, self.world
        self.device = self._device()
        self.root = experiment_root(opt)
        skipped: list[str] = []
        state_path = find_latest_state(self.root, skipped) if auto_resume else None
        if state_path is None and opt.path.resume_state:
            state_path = Path(opt.path.resume_state)
        self.resume = load_state(state_path) if state_path is not None else None
        self.state_path = state_path
        self.last_saved: Path | None = state_path
        if self.rank == 0:
            self._make_dirs()
        barrier()
        stamp = time.strftime("%Y%m%d_%H%M%S")
        get_logger(self.root / f"train_{opt.name}_{stamp}.log", self.rank)
        for line in skipped:  # --auto_resume passed over these: say which and why
            log.warning(f"auto_resume: skipped {line}")
        if auto_resume and state_path is None and skipped:
            log.warning("auto_resume: no complete training state left; starting from scratch")
        if state_path is not None and self.resume is not None:
            log.info(f"resuming from {state_path} (iter {self.resume['iter']})")
        seed = opt.manual_seed if opt.manual_seed is not None else random.randrange(2**31)
        if self.world > 1 and opt.manual_seed is None:  # every rank must shuffle with the same seed
            t = torch.tensor([seed], dtype=torch.int64, device=self.device)
            torch.distributed.broadcast(t, src=0)
            seed = int(t.item())
        self.seed = seed
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        if opt.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        log.info(f"{opt.name}: {opt.model_type} x{opt.scale} on {self.device} (rank {self.rank}/{self.world}), "
                 f"seed {seed}")  # fmt: skip

        train_set = build_dataset(opt, "train", seed)
        self.loader, self.sampler = build_train_loader(opt, train_set, seed, self.rank, self.world)
        self.val_loaders = build_val_loaders(opt, seed)
        self.model = opt.model_class(opt, self.device)  # MODEL_REGISTRY entry of model_type
        self.pool = build_pair_pool(opt)
        self.tracker = BestTracker()
        self.pos = DataPosition()
        self.iter = 0
        self.history: list[dict[str, float]] = []  # printed losses, for training_curves.png
        self.val_history: list[dict[str, float]] = []
        if self.resume is not None:
            self._restore(self.resume)
        self.tb = init_tb(self.root / "tb_logger") if self.rank == 0 and opt.logger.use_tb_logger else None
        self.wandb = None
        wb = opt.logger.wandb
        if self.rank == 0 and wb is not None and wb.project:
            self.wandb = init_wandb(
                wb.project, opt.name, opt.model_dump(mode="json"), wb.resume_id, wb.entity
            )
        self.msg = MessageLogger(opt.train.total_iter, self.iter, self.tb, self.wandb)
        log.info(f"{len(train_set)} training images, {len(self.loader)} batches per epoch per rank")

    def _device(self) -> torch.device:
        if torch.cuda.is_available() and self.opt.num_gpu != 0:
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _make_dirs(self) -> None:
        if self.resume is None and self.root.exists() and any(self.root.iterdir()):
            archived = self.root.with_name(f"{self.root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
            shutil.move(str(self.root), str(archived))
            print(f"experiment folder exists; moved to {archived}")
        for sub in ("models", "training_states", "visualization"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "options.yml", _dump_yaml(self.opt))

    # ------------------------------------------------------------------ data stream
    def _start_stream(self) -> None:
        bs = self.opt.datasets["train"].batch_size_per_gpu
        self.sampler.set_epoch(self.pos.epoch, skip=self.pos.batch * bs)
        with term_blocked_for_children():  # the loader's workers start here
            self._it = iter(self.loader)

    def _next_batch(self) -> dict[str, Any]:
        try:
            batch = next(self._it)
        except StopIteration:
            self.pos = DataPosition(self.pos.epoch + 1, 0)
            self._start_stream()
            batch = next(self._it)
        self.pos.batch += 1
        return batch

    def _prepare(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = self.model.to_device(batch)
        if self.pool is not None:
            batch = self.pool({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
        return batch

    # ------------------------------------------------------------------ checkpoints
    def refuse_non_finite(self, it: int) -> None:
        """Raise NonFiniteError when a network or optimizer state holds NaN/inf: such a checkpoint is never
        written, so the newest one on disk (the --auto_resume point) stays a good one. Runs on every rank."""
        from paragonsr.train.sr_model import NonFiniteError
        from paragonsr.utils.finite import first_non_finite

        parts: dict[str, Any] = {n: net.state_dict() for n, net in self.model.networks().items()}
        parts["optimizer state"] = self.model.state_dict()["optimizers"]
        for name, tensors in parts.items():
            bad = first_non_finite(tensors)
            if bad is not None:
                last = self.last_saved or "none in this experiment"
                raise NonFiniteError(
                    f"stopping at iter {it}: {name} holds {bad[1]} values ('{bad[0]}'); checkpoint {it} not "
                    f"written. The last good checkpoint ({last}) stays the --auto_resume point"
                )

    def save(self, it: int) -> None:
        self.refuse_non_finite(it)
        if self.rank != 0:
            return
        files: dict[str, str] = {}
        try:
            self._save_files(it, files)
        except WriteError as exc:  # full disk / file size limit: no half set, the last complete one stays
            for fname in files.values():
                (self.root / "models" / fname).unlink(missing_ok=True)
            last = self.last_saved or "none in this experiment"
            raise WriteError(
                exc.errno,
                f"{exc}; stopped at iter {it} without checkpoint {it}: the last complete one ({last}) is the "
                "--auto_resume point",
            ) from None
        self.last_saved = self.root / "training_states" / f"{it}.state"
        log.info(f"saved checkpoint @ iter {it}: {', '.join(files.values())}")

    def _save_files(self, it: int, files: dict[str, str]) -> None:
        from paragonsr.checkpoint import save_model

        for name, net in self.model.networks().items():
            key = "params_ema" if name.endswith("_ema") else "params"
            fname = f"{name}_{it}.safetensors"
            meta = {"param_key": key, "iter": it, **self.model.precision.meta()}  # how it was trained
            save_model(self.root / "models" / fname, net, metadata=meta)
            files[name] = fname  # written: removed again if a later file of this set fails
        state = {
            "iter": it,
            "epoch": self.pos.epoch,
            "batch_in_epoch": self.pos.batch,
            "seed": self.seed,
            "world_size": self.world,
            "rng": rng_state(),
            "model": self.model.state_dict(),
            "best": self.tracker.state_dict(),
            "net_files": files,
            "history": self.history,
            "val_history": self.val_history,
            "precision": self.model.precision.meta(),
        }
        if self.pool is not None:  # the queue is training state too: without it a resume is not exact
            state["pair_pool"] = {"count": self.pool.count, "pool": dict(self.pool.pool)}
        atomic_torch_save(state, self.root / "training_states" / f"{it}.state")

    def _restore(self, st: dict[str, Any]) -> None:
        from paragonsr.checkpoint import load_weights

        nets = self.model.networks()
        for name, fname in st["net_files"].items():
            if name not in nets:
                raise ValueError(f"resume state has {name} but the model ({self.opt.model_type}) does not")
            # networks live in the models/ folder beside the state's training_states/ folder
            load_weights(
                nets[name], Path(cast(Path, self.state_path)).resolve().parents[1] / "models" / fname
            )
        if st.get("world_size", self.world) != self.world:
            log.warning(
                f"resuming a {st['world_size']}-process run with {self.world} processes: data order changes"
            )
        self.model.load_state_dict(st["model"])
        self.tracker.load_state_dict(st.get("best", {}))
        self.history, self.val_history = list(st.get("history", [])), list(st.get("val_history", []))
        self.iter = int(st["iter"])
        self.pos = DataPosition(int(st["epoch"]), int(st["batch_in_epoch"]))
        set_rng_state(st["rng"])
        if self.pool is not None and "pair_pool" in st:
            self.pool.count = int(st["pair_pool"]["count"])
            self.pool.pool = {k: v.to(self.device) for k, v in st["pair_pool"]["pool"].items()}

    # ------------------------------------------------------------------ loop
    def validate(self, it: int) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if self.opt.val is None or not self.val_loaders:
            return out
        if self.rank == 0:
            net = self.model.eval_model(calibrate=self.opt.val.calibrate)
            fmt = (
                self.model.precision.memory_format
            )  # fp32 for the metrics, in the layout the hardware prefers
            for name, loader in self.val_loaders.items():
                out[name] = validate(net, loader, name, self.opt.val, self.opt.scale, it, self.device,
                                     self.root / "visualization", self.tracker, self.msg, fmt)  # fmt: skip
        barrier()
        return out

    def train(self) -> RunResult:
        opt, t = self.opt, self.opt.train
        result = RunResult(self.root, self.iter)
        self._start_stream()
        accum = t.accum_iter
        log.info(f"start training from iter {self.iter} to {t.total_iter}")
        try:
            while self.iter < t.total_iter:
                batches = [self._prepare(self._next_batch()) for _ in range(accum)]
                self.iter += 1
                logs = self.model.optimize_parameters(batches, self.iter)
                result.losses.append(logs)
                if self.iter % opt.logger.print_freq == 0:
                    mean = reduce_mean(logs, self.device)
                    self.msg(self.iter, self.pos.epoch, self.model.lrs(), mean)
                    self.history.append({"iter": self.iter, **mean})
                # validate before saving so the checkpoint carries this iteration's best metrics
                if opt.val is not None and (self.iter % opt.val.val_freq == 0 or self.iter == t.total_iter):
                    result.metrics = self.validate(self.iter)
                    for name, vals in result.metrics.items():
                        self.val_history.append(
                            {"iter": self.iter, **{f"{name}/{k}": v for k, v in vals.items()}}
                        )
                    if self.rank == 0:
                        plot_curves(self.history, self.val_history, self.root / "training_curves.png")
                if self.iter % opt.logger.save_checkpoint_freq == 0 or self.iter == t.total_iter:
                    if self.model.ema is not None:  # the saved EMA (release weights) gets calibrated kernels
                        self.model.eval_model(calibrate=opt.val.calibrate if opt.val else True)
                    self.save(self.iter)
        finally:
            del self._it  # the loader's workers are shut down now, not left to the interpreter's exit
            close_tb(self.msg.tb)  # None when a write error already turned TB logging off
            finish_wandb(self.msg.wandb)  # None when a write error already turned wandb logging off
        result.iters = self.iter
        if self.rank == 0:
            plot_curves(self.history, self.val_history, self.root / "training_curves.png")
            for name in self.model.networks():
                src = self.root / "models" / f"{name}_{self.iter}.safetensors"
                if src.is_file():
                    with atomic_output(self.root / "models" / f"{name}_latest.safetensors") as tmp:
                        shutil.copyfile(src, tmp)
        log.info(
            f"end of training: {self.iter} iterations, {self.model.skipped_steps} non-finite steps skipped"
        )
        return result


def _dump_yaml(opt: Options) -> str:
    import yaml

    return yaml.safe_dump(opt.model_dump(mode="json", exclude_none=True), sort_keys=False)


def train_pipeline(opt: Options, launcher: str = "none", auto_resume: bool = False) -> RunResult:
    """Train from validated options; returns what happened (used by the CLI and the tests)."""
    ok = False
    try:
        result = Trainer(opt, launcher, auto_resume).train()
        ok = True
        return result
    finally:
        if launcher != "none":
            cleanup(sync=ok)  # no barrier after an error: the other ranks may never reach it
