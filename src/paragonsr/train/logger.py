"""Console/file logging, TensorBoard and (optional, lazily imported) wandb. Only rank 0 writes."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from paragonsr.utils.atomic import atomic_output

LOGGER_NAME = "paragonsr.train"


def get_logger(log_file: Path | None = None, rank: int = 0, level: int = logging.INFO) -> logging.Logger:
    """The training logger: stdout + ``train_<name>_<time>.log`` on rank 0, errors only elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    if rank != 0:
        logger.setLevel(logging.ERROR)
        return logger
    logger.setLevel(level)
    sh = logging.StreamHandler(sys.stdout)
    sh.setFormatter(fmt)
    logger.addHandler(sh)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = LogFileHandler(log_file, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class LogFileHandler(logging.FileHandler):
    """A log file that stops itself on a write error (full disk): one ``warning:`` line on stderr naming the
    file, instead of logging's "--- Logging error ---" traceback on every later message. The console log goes
    on; the run itself stops at its next checkpoint write if the disk stays full."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        if not self.failed:
            self.failed = True
            reason = exc.strerror or str(exc)
            print(f"warning: {self.baseFilename}: cannot write the log ({reason}); logging to the console only",
                  file=sys.stderr)  # fmt: skip

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)


class MessageLogger:
    """Formats the periodic training line: epoch, iter, lr, losses, it/s, ETA; mirrors scalars to TB/wandb."""

    def __init__(
        self, total_iter: int, start_iter: int, tb: Any | None = None, wandb: Any | None = None
    ) -> None:
        self.total_iter, self.start_iter = total_iter, start_iter
        self.tb, self.wandb = tb, wandb
        self.t0 = time.perf_counter()
        self.last_t, self.last_iter = self.t0, start_iter
        self.logger = logging.getLogger(LOGGER_NAME)

    def __call__(self, it: int, epoch: int, lrs: list[float], logs: dict[str, float]) -> str:
        now = time.perf_counter()
        its = (it - self.last_iter) / max(now - self.last_t, 1e-9)
        done = it - self.start_iter
        avg = done / max(now - self.t0, 1e-9)
        eta = (self.total_iter - it) / max(avg, 1e-9)
        self.last_t, self.last_iter = now, it
        parts = [f"[epoch:{epoch:3d}, iter:{it:8,d}, lr:({', '.join(f'{x:.3e}' for x in lrs)})]"]
        parts += [f"{k}: {v:.4e}" for k, v in logs.items()]
        parts.append(f"[{its:.2f} it/s, eta: {_fmt_eta(eta)}]")
        msg = " ".join(parts)
        self.logger.info(msg)
        scalars = {f"losses/{k}": v for k, v in logs.items()} | {"train/lr": lrs[0], "train/it_per_s": its}
        self.scalars(scalars, it)
        return msg

    def scalars(self, values: dict[str, float], it: int) -> None:
        if self.tb is not None:
            self._tb_call(lambda tb: [tb.add_scalar(k, v, it) for k, v in values.items()])
        if self.wandb is not None:
            self._wandb_call(lambda run: run.log(values, step=it))

    def image(self, tag: str, img_u8: np.ndarray, it: int) -> None:
        if self.tb is not None:
            self._tb_call(lambda tb: tb.add_image(tag, img_u8, it, dataformats="HWC"))

    def _tb_call(self, fn: Callable[[Any], Any]) -> None:
        """Run a TensorBoard write; a full disk or another write error (raised here, or re-raised from the
        writer's thread) turns TB logging off for the run with one line, instead of ending training."""
        try:
            fn(self.tb)
        except (OSError, RuntimeError) as exc:
            self.logger.warning(
                f"tensorboard: event file could not be written ({exc}); TB logging is off for this run"
            )
            tb, self.tb = self.tb, None
            close_tb(tb)

    def _wandb_call(self, fn: Callable[[Any], Any]) -> None:
        """Run a wandb call; a full disk or another write error (OSError, RuntimeError, wandb's own errors) turns
        wandb logging off for the run with one line, as for TensorBoard, instead of ending training."""
        try:
            fn(self.wandb)
        except _wandb_errors() as exc:
            self.logger.warning(f"wandb: could not log ({exc}); wandb logging is off for this run")
            run, self.wandb = self.wandb, None
            finish_wandb(run)


def _wandb_errors() -> tuple[type[BaseException], ...]:
    """OSError, RuntimeError and ``wandb.errors.Error`` (when wandb is loaded): what a failing wandb write raises."""
    import sys

    err = getattr(getattr(sys.modules.get("wandb"), "errors", None), "Error", None)
    extra = (err,) if isinstance(err, type) and issubclass(err, BaseException) else ()
    return (OSError, RuntimeError, *extra)


def finish_wandb(run: Any | None) -> None:
    """Finish a wandb run, ignoring write errors of its last sync (the run's own files are already safe)."""
    if run is None:
        return
    with contextlib.suppress(*_wandb_errors()):
        run.finish()


def close_tb(tb: Any | None) -> None:
    """Close a SummaryWriter, ignoring write errors of its last flush (the run's own files are already safe)."""
    if tb is None:
        return
    with contextlib.suppress(OSError, RuntimeError):
        tb.close()


def _fmt_eta(sec: float) -> str:
    sec = int(sec)
    d, rem = divmod(sec, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + f"{h:d}:{m:02d}:{s:02d}"


def init_tb(log_dir: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logging.getLogger(LOGGER_NAME).warning("tensorboard is not installed; TB logging disabled")
        return None
    return SummaryWriter(log_dir=str(log_dir))


def init_wandb(
    project: str, name: str, config: dict[str, Any], resume_id: str | None, entity: str | None
) -> Any:
    """A wandb run, or None (one warning line) when it cannot be started for an OSError (full disk). Raises
    RuntimeError when wandb is not installed."""
    try:
        import wandb  # optional dependency, imported only when logger.wandb.project is set
    except ImportError as exc:
        raise RuntimeError(
            "logger.wandb.project is set but wandb is not installed (pip install wandb)"
        ) from exc
    try:
        return wandb.init(project=project, name=name, config=config, id=resume_id, entity=entity,
                          resume="allow" if resume_id else None)  # fmt: skip
    except OSError as exc:  # a full disk or an unwritable run folder: train without it, as for TensorBoard
        logging.getLogger(LOGGER_NAME).warning(
            f"wandb: could not start ({exc}); wandb logging is off for this run"
        )
        return None


def plot_curves(history: list[dict[str, float]], metrics: list[dict[str, float]], path: Path) -> bool:
    """Loss curves (log scale) and validation metrics as one PNG, written atomically (matplotlib Agg).

    The plot is a convenience: any failure (matplotlib missing or broken, disk full, odd values) is logged as one
    warning line and training goes on. Returns whether the PNG was written.
    """
    try:
        _plot_curves(history, metrics, path)
    except Exception as exc:  # a plot must never end a training run
        logging.getLogger(LOGGER_NAME).warning(
            f"training curves not plotted ({path}): {type(exc).__name__}: {exc}"
        )
        return False
    return True


def _plot_curves(history: list[dict[str, float]], metrics: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_keys = sorted({k for h in history for k in h if k.startswith("l_")})
    metric_keys = sorted({k for m in metrics for k in m if k != "iter"})
    # one panel for the losses, one per validation metric (PSNR and SSIM have different scales)
    fig, axes = plt.subplots(1, 1 + max(1, len(metric_keys)), figsize=(5 + 4 * max(1, len(metric_keys)), 4))
    for k in loss_keys:
        pts = [(h["iter"], h[k]) for h in history if k in h and h[k] > 0]
        if pts:
            axes[0].plot(*zip(*pts), label=k)
    axes[0].set(xlabel="iteration", ylabel="loss", yscale="log", title="training losses")
    for ax, k in zip(axes[1:], metric_keys):
        pts = [(m["iter"], m[k]) for m in metrics if k in m]
        ax.plot(*zip(*pts), marker="o")
        ax.set(xlabel="iteration", title=f"validation {k}")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    try:  # closed also when the write fails: pyplot keeps every open figure alive (one per validation)
        fig.tight_layout()
        with atomic_output(path, suffix=".tmp.png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
