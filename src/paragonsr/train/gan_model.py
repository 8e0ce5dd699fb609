"""GAN model (BasicSR ``SRGANModel`` / ``RealESRGANModel``): generator + discriminator (MUNet,
UNetDiscriminatorSN, ...), any adversarial loss following the ``d_loss``/``g_loss`` interface of
:mod:`paragonsr.losses.gan` (vanilla, LSGAN, hinge, R3GAN with R1/R2), ``net_d_iters``/``net_d_init_iters``.

Order per iteration (BasicSR): generator step with D frozen, then discriminator step on the detached output.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from paragonsr.registry import MODEL_REGISTRY
from paragonsr.train.optim import IterScheduler, build_optimizer
from paragonsr.train.options import Options
from paragonsr.train.sr_model import BufferSnapshot, SRModel, build_network, load_pretrained, log, unwrap


@MODEL_REGISTRY.register("GANModel", aliases=("SRGANModel", "ESRGANModel", "RealESRGANModel", "gan"))
class GANModel(SRModel):
    """:class:`SRModel` plus a discriminator (``network_d``) trained against the generator's output."""

    needs_discriminator = True

    def __init__(self, opt: Options, device: torch.device) -> None:
        super().__init__(opt, device)
        t = opt.train
        if opt.network_d is None:
            raise ValueError("network_d: a GAN model_type needs a discriminator")
        if not self.gan_losses:
            raise ValueError(
                "train: a GAN model needs an adversarial loss (gan_opt: {type: GANLoss|R3GANLoss})"
            )
        if len(self.gan_losses) > 1:
            raise ValueError(
                f"train: only one adversarial loss is supported, got {[g[0] for g in self.gan_losses]}"
            )
        self.net_d = build_network(opt.network_d, None, "network_d").to(device)
        if opt.path.pretrain_network_d:
            load_pretrained(self.net_d, opt.path.pretrain_network_d, opt.path.param_key_d, opt.path.strict_load_d,
                            "network_d")  # fmt: skip
        self.net_d = self.net_d.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self._broadcast(self.net_d)
        self.net_d.train()
        optim_d = t.optim_d or t.optim_g
        self.optimizer_d = build_optimizer(self.net_d.parameters(), optim_d)
        self.sched_d = IterScheduler(
            self.optimizer_d, t.scheduler_d or t.scheduler, t.total_iter, t.warmup_iter
        )
        self.gan_name, gan_loss, self.gan_target = self.gan_losses[0]
        self.gan_loss: Any = gan_loss  # an adversarial loss: g_loss(net_d, real, fake) / d_loss(...)

    def _set_d_grad(self, flag: bool) -> None:
        for p in self.net_d.parameters():
            p.requires_grad_(flag)

    def _d_autocast(self):
        # R1/R2 penalties need double backward; bf16 is safe there, fp16 without loss scaling is not.
        return (
            self.autocast()
            if self.amp_dtype == torch.bfloat16
            else torch.autocast(self.device.type, enabled=False)
        )

    def optimize_parameters(self, batches: list[dict[str, Any]], it: int) -> dict[str, float]:
        t = self.opt.train
        n = len(batches)
        train_g = it % t.net_d_iters == 0 and it > t.net_d_init_iters
        logs: dict[str, float] = {}
        fakes: list[Tensor] = []
        g_total = 0.0

        # ---- generator
        self._set_d_grad(False)
        self.optimizer_g.zero_grad(set_to_none=True)
        g_buffers, d_buffers = BufferSnapshot(self.net_g), BufferSnapshot(self.net_d)
        for b in batches:
            with torch.set_grad_enabled(train_g), self.autocast():
                sr = self.net_g(b["lq"])
            sr = sr.float()
            fakes.append(sr.detach())
            if not train_g:
                continue
            total = self.generator_losses(sr, b, logs)
            real = b.get(self.gan_target, b["gt"])
            with self._d_autocast():
                l_gan = self.gan_loss.g_loss(self.net_d, real, sr)
            logs[f"l_g_{self.gan_name}"] = logs.get(f"l_g_{self.gan_name}", 0.0) + float(l_gan.detach())
            total = total + l_gan
            self.scaler.scale(total / n).backward()
            g_total += float(total.detach())
        if train_g:
            stepped, norm = self._finish_step(list(self.net_g.parameters()), self.optimizer_g, self.net_g,
                                              math.isfinite(g_total) and g_buffers.finite())  # fmt: skip
            self.keep_or_restore(stepped, g_buffers, batches)
            logs["grad_norm_g"] = norm
            self._guard(stepped, it, "generator")
            if self.ema is not None and stepped:
                self.ema.update(self.net_g)
        else:  # D warm-up: no G step, but the forward still moved G's buffers
            ok = g_buffers.finite() and all(bool(torch.isfinite(f).all()) for f in fakes)
            self.keep_or_restore(ok, g_buffers, batches)
        self.sched_g.step()
        self._sync_buffers(self.net_g)

        # ---- discriminator
        self._set_d_grad(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        d_total = 0.0
        for b, fake in zip(batches, fakes):
            real = b.get(self.gan_target, b["gt"])
            with self._d_autocast():
                l_d, d_logs = self.gan_loss.d_loss(self.net_d, real, fake, step=it)
            self.scaler.scale(l_d / n).backward()
            d_total += float(l_d.detach())
            for k, v in d_logs.items():
                logs[k] = logs.get(k, 0.0) + float(v)
        logs["l_d_total"] = d_total
        stepped_d, norm_d = self._finish_step(list(self.net_d.parameters()), self.optimizer_d, self.net_d,
                                              math.isfinite(d_total) and d_buffers.finite())  # fmt: skip
        logs["grad_norm_d"] = norm_d
        if not stepped_d:
            d_buffers.restore()  # e.g. spectral-norm power-iteration vectors
        self.scaler.update()
        self._guard(stepped_d, it, "discriminator")
        self.sched_d.step()
        self._sync_buffers(self.net_d)
        return {k: (v / n if not k.startswith("grad_norm") else v) for k, v in logs.items()}

    def lrs(self) -> list[float]:
        return self.sched_g.get_lr() + self.sched_d.get_lr()

    def networks(self) -> dict[str, nn.Module]:
        return {**super().networks(), "net_d": unwrap(self.net_d)}

    def state_dict(self) -> dict[str, Any]:
        st = super().state_dict()
        st["optimizers"]["d"] = self.optimizer_d.state_dict()
        st["schedulers"]["d"] = self.sched_d.state_dict()
        return st

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.optimizer_d.load_state_dict(state["optimizers"]["d"])
        self.sched_d.load_state_dict(state["schedulers"]["d"])
        log.debug("restored discriminator optimizer/scheduler")
