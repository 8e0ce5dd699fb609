"""Fidelity SR model (BasicSR ``SRModel`` / ``RealESRNetModel``): generator, losses, optimizer + schedule,
EMA, gradient accumulation, clipping, AMP (bf16 on CPU/CUDA, fp16 + GradScaler on CUDA), channels_last and a
non-finite guard. Precision and layout follow :func:`paragonsr.precision.resolve`: what ``use_amp`` /
``amp_bf16`` / ``use_channels_last`` ask, downgraded (with one log line) where the device only emulates it.
Multi-process training averages gradients (and float buffers such as tracked kernels) over ranks explicitly, which
also works with the double-backward R1/R2 penalties of the GAN model."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections import deque
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from paragonsr.errors import ParagonSRError
from paragonsr.precision import asked_by_train_options, log_decision, resolve
from paragonsr.registry import MODEL_REGISTRY
from paragonsr.train.distributed import any_rank, get_dist_info
from paragonsr.train.ema import ModelEMA
from paragonsr.train.optim import IterScheduler, build_optimizer
from paragonsr.train.options import NetworkOpt, Options

log = logging.getLogger("paragonsr.train")


class NonFiniteError(ParagonSRError, RuntimeError):
    pass


def build_network(net_opt: NetworkOpt, scale: int | None, where: str) -> nn.Module:
    """Build an arch from its options; inject ``scale``/``upscale`` when the YAML leaves it to the top level."""
    import paragonsr.archs as archs

    kwargs = net_opt.kwargs()
    if scale is not None:
        params = type(net_opt).model_fields  # the arch's generated option model: its keyword arguments
        for key in ("scale", "upscale"):
            if key in params and key not in kwargs:
                kwargs[key] = scale
    model = archs.build_arch(net_opt.type, **kwargs)
    got = getattr(model, "scale", scale)
    if scale is not None and got != scale:
        raise ValueError(
            f"{where}: {net_opt.type} builds a x{got} model but the option file says scale: {scale}"
        )
    return model


def load_pretrained(net: nn.Module, path: str, param_key: str, strict: bool, what: str) -> None:
    from paragonsr.checkpoint import load_weights

    p = Path(path)
    # Our own checkpoints keep EMA weights in a sibling safetensors file (net_g_ema_<iter>): follow it.
    if param_key == "params_ema" and p.suffix == ".safetensors" and "_ema" not in p.stem:
        sib = p.with_name(p.stem.replace("net_g_", "net_g_ema_", 1) + p.suffix)
        if sib.is_file():
            p = sib
    key = None if p.suffix == ".safetensors" else param_key
    report = load_weights(net, p, strict=strict, param_key=key)
    # the entry actually read: a flat state dict (or a .safetensors file) has none, whatever param_key said
    used = report.param_key or ("safetensors" if p.suffix == ".safetensors" else "flat state dict")
    log.info(f"loaded {what} from {p} [{used}]: {report}")


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


@MODEL_REGISTRY.register("SRModel", aliases=("RealESRNetModel", "sr"))
class SRModel:
    """One training iteration = ``accum_iter`` micro-batches + one optimizer step."""

    needs_discriminator = False  # GAN models train a network_d too

    def __init__(self, opt: Options, device: torch.device) -> None:
        self.opt, self.device = opt, device
        t = opt.train
        self.rank, self.world = get_dist_info()
        self.net_g = build_network(opt.network_g, opt.scale, "network_g").to(device)
        if opt.path.pretrain_network_g:
            load_pretrained(self.net_g, opt.path.pretrain_network_g, opt.path.param_key_g, opt.path.strict_load_g,
                            "network_g")  # fmt: skip
        # one decision for every command: bf16/fp16 autocast only where the device runs it natively, the layout
        # that is faster on it (use_channels_last is a speed hint; the hardware decides)
        self.precision = resolve(asked_by_train_options(t.use_amp, t.amp_bf16), device, t.use_channels_last)
        log_decision(self.precision, "training", log)
        self.memory_format = self.precision.memory_format
        self.net_g = self.net_g.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self._broadcast(self.net_g)
        self.net_g.train()
        self.ema = ModelEMA(self.net_g, t.ema_decay) if t.ema_decay > 0 else None
        self.losses, self.gan_losses = self._build_losses()
        self.optimizer_g = build_optimizer(self.net_g.parameters(), t.optim_g)
        self.sched_g = IterScheduler(self.optimizer_g, t.scheduler, t.total_iter, t.warmup_iter)
        self.amp_dtype: torch.dtype | None = self.precision.autocast_dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.nonfinite_streak = 0
        self.nonfinite_streaks: dict[str, int] = {}
        self.skipped_steps = 0
        self.recent_lq: deque[Tensor] = deque(maxlen=max(1, t.calibrate_iters))

    # ------------------------------------------------------------------ setup helpers
    def _build_losses(self) -> tuple[list[tuple[str, nn.Module, str]], list[tuple[str, nn.Module, str]]]:
        from paragonsr.losses import build_loss

        pix: list[tuple[str, nn.Module, str]] = []
        gan: list[tuple[str, nn.Module, str]] = []
        for i, lo in enumerate(self.opt.train.losses):
            name = lo.name or f"{lo.type}_{i}"
            mod = build_loss({"type": lo.type, "loss_weight": lo.loss_weight, **lo.kwargs()}).to(self.device)
            target = lo.target or self._default_target(mod)
            (gan if hasattr(mod, "d_loss") else pix).append((name, mod, target))
        return pix, gan

    def _default_target(self, loss: nn.Module) -> str:
        """The GT a loss compares against: its class declares ``gt_usm_group`` (``l1`` / ``percep`` / ``gan``)
        and Real-ESRGAN's ``l1_gt_usm`` / ``percep_gt_usm`` / ``gan_gt_usm`` switch that group to the
        USM-sharpened GT; losses without a group see the plain GT."""
        o = self.opt
        use_usm = {"l1": o.l1_gt_usm, "percep": o.percep_gt_usm, "gan": o.gan_gt_usm}
        return "gt_usm" if use_usm.get(getattr(loss, "gt_usm_group", None) or "", False) else "gt"

    def _broadcast(self, net: nn.Module) -> None:
        if self.world > 1:
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=0)

    def _sync_grads(self, net: nn.Module) -> None:
        """Average gradients over ranks (one flat all-reduce)."""
        if self.world == 1:
            return
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([cast(Tensor, p.grad).reshape(-1) for p in params])  # all set above
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p in params:
            n = p.numel()
            grad = cast(Tensor, p.grad)
            grad.copy_(flat[off : off + n].view_as(grad))
            off += n

    def _sync_buffers(self, net: nn.Module) -> None:
        if self.world == 1:
            return
        for b in net.buffers():
            if b.is_floating_point():
                dist.all_reduce(b.data)
                b.data /= self.world

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ training
    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in batch.items():
            if isinstance(v, Tensor):
                v = v.to(self.device, non_blocking=True)
                if v.dim() == 4:
                    v = v.contiguous(memory_format=self.memory_format)
            out[k] = v
        return out

    def generator_losses(self, sr: Tensor, batch: dict[str, Any], logs: dict[str, float]) -> Tensor:
        total = sr.new_zeros(())
        for name, loss, target in self.losses:
            gt = batch.get(target, batch["gt"])
            val = loss(sr, gt, lq=batch["lq"])
            logs[f"l_{name}"] = logs.get(f"l_{name}", 0.0) + float(val.detach())
            total = total + val
        return total

    def _micro_step(self, batch: dict[str, Any], it: int, scale: float, logs: dict[str, float]) -> Tensor:
        with self.autocast():
            sr = self.net_g(batch["lq"])
        sr = sr.float()
        total = self.generator_losses(sr, batch, logs)
        self.scaler.scale(total * scale).backward()
        return total.detach()

    def _finish_step(self, params: list[nn.Parameter], optimizer: torch.optim.Optimizer, net: nn.Module,
                     loss_ok: bool) -> tuple[bool, float]:  # fmt: skip
        """Sync, unscale, clip and step; returns (stepped, grad_norm). Non-finite steps are skipped."""
        self._sync_grads(net)
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)
        max_norm = self.opt.train.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # A non-finite loss is always a skipped step. Non-finite gradients with a GradScaler (fp16) are its normal
        # loss-scale search: the scaler skips those steps itself and they do not count against the guard.
        bad_grads = not bool(torch.isfinite(norm)) and not self.scaler.is_enabled()
        if any_rank(not loss_ok or bad_grads, self.device):
            optimizer.zero_grad(set_to_none=True)
            return False, float(norm)
        self.scaler.step(optimizer)
        return True, float(norm)

    def _guard(self, stepped: bool, it: int, what: str) -> None:
        # One streak per network: a GAN whose D steps keep failing while G's succeed must still stop.
        streaks = self.nonfinite_streaks
        if stepped:
            streaks[what] = 0
            self.nonfinite_streak = max(streaks.values())
            return
        streaks[what] = streaks.get(what, 0) + 1
        self.nonfinite_streak = streaks[what]
        self.skipped_steps += 1
        log.warning(
            f"iter {it}: non-finite {what} loss/gradients, step skipped ({self.nonfinite_streak} in a row)"
        )
        limit = self.opt.train.max_nonfinite_steps
        if self.nonfinite_streak >= limit:
            raise NonFiniteError(
                f"stopping: {self.nonfinite_streak} consecutive non-finite steps at iter {it} ({what}). Lower the "
                f"learning rate, enable train.grad_clip, switch AMP off (train.use_amp: false) or check the data; "
                f"resume from the last checkpoint with --auto_resume"
            )

    def optimize_parameters(self, batches: list[dict[str, Any]], it: int) -> dict[str, float]:
        logs: dict[str, float] = {}
        self.optimizer_g.zero_grad(set_to_none=True)
        buffers = BufferSnapshot(self.net_g)
        total = 0.0
        for b in batches:
            total += float(self._micro_step(b, it, 1.0 / len(batches), logs))
        logs = {k: v / len(batches) for k, v in logs.items()}
        stepped, norm = self._finish_step(list(self.net_g.parameters()), self.optimizer_g, self.net_g,
                                          math.isfinite(total) and buffers.finite())  # fmt: skip
        self.keep_or_restore(stepped, buffers, batches)
        self.after_step(stepped, it, "generator")
        logs["grad_norm_g"] = norm
        return logs

    def keep_or_restore(self, stepped: bool, buffers: BufferSnapshot, batches: list[dict[str, Any]]) -> None:
        """After the step is known: a skipped step puts the forward-updated buffers (ParagonSR2's tracked
        kernels, BatchNorm statistics) back, so a non-finite forward leaves no trace; a finite one keeps them and
        its LQ batches become calibration data."""
        if not stepped:
            buffers.restore()
            return
        for b in batches:
            self.recent_lq.append(b["lq"].detach()[:4].cpu())

    def after_step(self, stepped: bool, it: int, what: str) -> None:
        self.scaler.update()
        self._guard(stepped, it, what)
        self.sched_g.step()  # the schedule follows iterations, stepped or not
        self._sync_buffers(self.net_g)
        if self.ema is not None and stepped:
            self.ema.update(self.net_g)

    # ------------------------------------------------------------------ eval / release
    def eval_model(self, calibrate: bool = True) -> nn.Module:
        """EMA (or a copy of the generator) in eval mode; archs with a ``calibrate_for_eval`` hook are calibrated
        on recent training LQ batches first."""
        net = self.ema.module if self.ema is not None else copy.deepcopy(unwrap(self.net_g))
        hook = getattr(net, "calibrate_for_eval", None)  # the optional arch hook (see paragonsr.archs)
        if calibrate and self.opt.train.calibrate_iters > 0 and self.recent_lq and hook is not None:
            hook(list(self.recent_lq), device=self.device)
        return net.eval()

    def lrs(self) -> list[float]:
        return self.sched_g.get_lr()

    # ------------------------------------------------------------------ state
    def networks(self) -> dict[str, nn.Module]:
        nets = {"net_g": unwrap(self.net_g)}
        if self.ema is not None:
            nets["net_g_ema"] = self.ema.module
        return nets

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {"g": self.optimizer_g.state_dict()},
            "schedulers": {"g": self.sched_g.state_dict()},
            "scaler": self.scaler.state_dict(),
            "nonfinite_streak": self.nonfinite_streak,
            "nonfinite_streaks": dict(self.nonfinite_streaks),
            "skipped_steps": self.skipped_steps,
            "recent_lq": list(self.recent_lq),  # calibration batches: a resumed run calibrates identically
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer_g.load_state_dict(state["optimizers"]["g"])
        self.sched_g.load_state_dict(state["schedulers"]["g"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.nonfinite_streaks = {str(k): int(v) for k, v in state.get("nonfinite_streaks", {}).items()}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.recent_lq.clear()
        self.recent_lq.extend(state.get("recent_lq", []))


class BufferSnapshot:
    """Copies of a network's floating-point buffers taken before a forward pass that may update them.

    Cheap for the archs here (ParagonSR2's tracked kernels are hidden·k² floats per block)."""

    def __init__(self, net: nn.Module) -> None:
        self.pairs = [(b, b.detach().clone()) for b in net.buffers() if b.is_floating_point()]

    def finite(self) -> bool:
        """True when every buffer (as updated since the snapshot) is finite."""
        if not self.pairs:
            return True
        return bool(torch.stack([torch.isfinite(b).all() for b, _ in self.pairs]).all())

    @torch.no_grad()
    def restore(self) -> None:
        for b, saved in self.pairs:
            b.copy_(saved)
