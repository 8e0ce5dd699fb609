"""Adversarial losses behind one interface, so the trainer treats every GAN type the same:

    loss, logs = gan_loss.d_loss(net_d, real, fake, step=None)   # unweighted D loss (+ penalties), float logs
    l_g = gan_loss.g_loss(net_d, real, fake)                     # generator loss * loss_weight

* ``fake`` is detached inside ``d_loss``; ``real`` never needs gradients from the caller.
* ``g_loss`` back-propagates into ``fake``; the trainer freezes D's parameters (``requires_grad_(False)``) during the
  G step as BasicSR does — the loss does not touch them.
* ``step`` is the D-step index (the training iteration is fine); only the lazy R1/R2 penalties use it. Pass it
  for exact resume; without it an internal counter is used.
* Penalised D steps run in fp32 even under autocast (bf16 loses most of the penalties' second-order
  gradients); the other steps keep the caller's precision.
* The first penalised step probes once per discriminator that R1/R2 really double-backward (one extra
  ``autograd.grad`` over D's parameters) and raises a clear error otherwise: penalties are never dropped silently.
* ``loss_weight`` scales only the generator loss (BasicSR convention: D losses are never weighted).

Types: ``GANLoss`` (BasicSR names ``vanilla`` = BCE-with-logits, ``lsgan``, ``hinge``, ``wgan``, ``wgan_softplus``;
also keeps BasicSR's ``forward(pred, target_is_real, is_disc=False)``), ``R3GANLoss`` (Huang et al. 2024), and
``RaHingeGANLoss`` (relativistic-average hinge + optional R1/R2: what the traiNNer fork calls "R3GAN").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paragonsr.registry import LOSS_REGISTRY


def _mean(x: Tensor) -> float:
    return float(x.detach().float().mean())


@LOSS_REGISTRY.register("GANLoss", aliases=("gan", "vanillagan"))
class GANLoss(nn.Module):
    """BasicSR GAN loss on logits: vanilla (BCE-with-logits), lsgan (MSE to labels), hinge, wgan, wgan_softplus.

    Args:
        gan_type: ``vanilla``, ``lsgan``, ``hinge``, ``wgan`` or ``wgan_softplus``.
        real_label_val: target of real samples (vanilla, lsgan).
        fake_label_val: target of fake samples (vanilla, lsgan).
        loss_weight: factor of the generator's adversarial term in the total.

    Raises:
        ValueError: an unknown gan_type.
    """

    TYPES = ("vanilla", "lsgan", "hinge", "wgan", "wgan_softplus")
    gt_usm_group: ClassVar[str] = "gan"  # D sees the USM-sharpened GT as real when gan_gt_usm is set

    def __init__(
        self,
        gan_type: str = "vanilla",
        real_label_val: float = 1.0,
        fake_label_val: float = 0.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if gan_type not in self.TYPES:
            raise ValueError(f"GANLoss: gan_type must be one of {self.TYPES}, got {gan_type!r}")
        self.gan_type, self.loss_weight = gan_type, float(loss_weight)
        self.real_label_val, self.fake_label_val = float(real_label_val), float(fake_label_val)

    def criterion(self, pred: Tensor, target_is_real: bool, is_disc: bool) -> Tensor:
        t = self.gan_type
        if t == "hinge":
            if is_disc:
                return F.relu(1 - pred).mean() if target_is_real else F.relu(1 + pred).mean()
            return -pred.mean()
        if t == "wgan":
            return -pred.mean() if target_is_real else pred.mean()
        if t == "wgan_softplus":
            return F.softplus(-pred).mean() if target_is_real else F.softplus(pred).mean()
        label = torch.full_like(pred, self.real_label_val if target_is_real else self.fake_label_val)
        if t == "vanilla":
            return F.binary_cross_entropy_with_logits(pred, label)
        return F.mse_loss(pred, label)

    def forward(self, pred: Tensor, target_is_real: bool, is_disc: bool = False) -> Tensor:
        """BasicSR signature: the weight applies to the generator only."""
        loss = self.criterion(pred, target_is_real, is_disc)
        return loss if is_disc else loss * self.loss_weight

    def d_loss(
        self, net_d: nn.Module, real: Tensor, fake: Tensor, step: int | None = None
    ) -> tuple[Tensor, dict]:
        d_real, d_fake = net_d(real), net_d(fake.detach())
        l_real, l_fake = self.criterion(d_real, True, True), self.criterion(d_fake, False, True)
        logs = {
            "l_d_real": _mean(l_real),
            "l_d_fake": _mean(l_fake),
            "out_d_real": _mean(d_real),
            "out_d_fake": _mean(d_fake),
        }
        return l_real + l_fake, logs

    def g_loss(self, net_d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return self.loss_weight * self.criterion(net_d(fake), True, False)


# --------------------------------------------------------------------------------------- gradient penalties
_DOUBLE_BACKWARD_HINT = (
    "R1/R2 gradient penalties need double backward through the discriminator. Replace that op, or set "
    "r1_gamma/r2_gamma to 0 to train without penalties; the penalty is never skipped silently."
)


def _walk(fn: Any) -> Iterable[Any]:
    seen: set[int] = set()
    stack = [fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(nxt for nxt, _ in getattr(node, "next_functions", ()))


def _is_once_differentiable(node: Any) -> bool:
    backward = getattr(getattr(node, "_forward_cls", None), "backward", None)
    code = getattr(backward, "__code__", None)
    return bool(
        code is not None
        and code.co_name == "wrapper"
        and code.co_filename.replace("\\", "/").endswith("autograd/function.py")
    )


def check_double_backward(d_out: Tensor, penalty: Tensor, params: list[Tensor], what: str) -> None:
    """Fail loudly when R1/R2 cannot be trained correctly through this discriminator:

    * a custom ``autograd.Function`` whose backward is ``@once_differentiable`` (autograd would silently treat its
      gradient as a constant inside the penalty: wrong second-order terms, no error);
    * an op without a double-backward formula (probed by differentiating the penalty w.r.t. D's parameters once);
    * a penalty that does not depend on D's parameters at all.
    """
    for node in _walk(d_out.grad_fn):
        if _is_once_differentiable(node):
            raise RuntimeError(
                f"{what}: the discriminator uses {type(node).__name__}, a custom autograd.Function marked "
                f"@once_differentiable. {_DOUBLE_BACKWARD_HINT}"
            )
    if not params:
        raise RuntimeError(f"{what}: the discriminator has no trainable parameters to penalise")
    try:
        grads = torch.autograd.grad(penalty, params, retain_graph=True, allow_unused=True)
    except (RuntimeError, NotImplementedError) as exc:
        raise RuntimeError(
            f"{what}: an op in the discriminator has no double backward ({exc}). {_DOUBLE_BACKWARD_HINT}"
        ) from exc
    if all(g is None for g in grads):
        raise RuntimeError(
            f"{what}: the gradient penalty does not depend on the discriminator's parameters (graph cut by "
            f"no_grad/detach inside D?), so it would train nothing. {_DOUBLE_BACKWARD_HINT}"
        )


def gradient_penalty(d_out: Tensor, inputs: Tensor, what: str = "R1") -> Tensor:
    """Zero-centred penalty E_n ||∇_x D(x_n)||² with create_graph=True (so it trains D).

    ``d_out`` may be per-sample (N,) / (N, 1) or per-pixel (N, 1, H, W) logits: the critic value of a sample is the
    mean of its logits, which makes γ independent of the logit map's size."""
    per_sample = d_out.reshape(d_out.shape[0], -1).mean(1)
    if not per_sample.requires_grad:
        raise RuntimeError(
            f"{what}: the discriminator output does not depend on its input (detached?). {_DOUBLE_BACKWARD_HINT}"
        )
    (grad,) = torch.autograd.grad(per_sample.sum(), inputs, create_graph=True, allow_unused=True)
    if grad is None:
        raise RuntimeError(
            f"{what}: the discriminator output does not depend on its input (detach/no_grad inside D?). "
            + _DOUBLE_BACKWARD_HINT
        )
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


class _PenalisedRelativisticLoss(nn.Module):
    """Shared body of the paired (relativistic) GAN losses with optional zero-centred R1/R2 penalties.

    A subclass only defines ``_relativistic(pos, neg)``, the loss that pushes ``pos`` logits above ``neg`` ones:
    D minimises it with (real, fake), G with (fake, real) and the real logits held constant.

    Args:
        loss_weight: factor of the generator's adversarial term in the total.
        r1_gamma: weight γ1 of the zero-centred gradient penalty on real samples (0 = off).
        r2_gamma: weight γ2 of the zero-centred gradient penalty on fake samples (0 = off).
        lazy_interval: compute the penalties every this many D steps, scaled by it (1 = every step).

    Raises:
        ValueError: negative gammas or a lazy_interval below 1.
    """

    gt_usm_group: ClassVar[str] = "gan"  # D sees the USM-sharpened GT as real when gan_gt_usm is set

    def __init__(self, loss_weight: float, r1_gamma: float, r2_gamma: float, lazy_interval: int) -> None:
        super().__init__()
        name = type(self).__name__
        if r1_gamma < 0 or r2_gamma < 0:
            raise ValueError(f"{name}: r1_gamma/r2_gamma must be >= 0, got {r1_gamma}/{r2_gamma}")
        if int(lazy_interval) != lazy_interval or lazy_interval < 1:
            raise ValueError(f"{name}: lazy_interval must be an integer >= 1, got {lazy_interval}")
        self.loss_weight, self.r1_gamma, self.r2_gamma = float(loss_weight), float(r1_gamma), float(r2_gamma)
        self.lazy_interval, self._d_steps = int(lazy_interval), 0
        self._verified: set[int] = set()

    @staticmethod
    def _relativistic(pos: Tensor, neg: Tensor) -> Tensor:
        raise NotImplementedError

    def d_loss(
        self, net_d: nn.Module, real: Tensor, fake: Tensor, step: int | None = None
    ) -> tuple[Tensor, dict]:
        due = self._penalty_due(step)
        penalised = due and (self.r1_gamma > 0 or self.r2_gamma > 0)
        # A penalised step runs in fp32 even under autocast: the R1/R2 parameter gradients are second-order terms
        # of small input gradients, and bf16 loses them (measured through MUNet: cosine 0.4-0.7 to the fp32
        # gradient at 0.1-0.3 of its norm, i.e. most of the penalty silently gone). With lazy_interval k the fp32
        # step is 1 in k; the others keep the caller's precision.
        fp32 = torch.autocast(real.device.type, enabled=False) if penalised else contextlib.nullcontext()
        with fp32:
            real = real.detach().float().requires_grad_(due and self.r1_gamma > 0)
            fake = fake.detach().float().requires_grad_(due and self.r2_gamma > 0)
            d_real, d_fake = net_d(real), net_d(fake)
            adv = self._relativistic(d_real.float(), d_fake.float())
            logs = {"l_d_adv": _mean(adv), "out_d_real": _mean(d_real), "out_d_fake": _mean(d_fake)}
            loss = adv + self._penalties(net_d, d_real, d_fake, real, fake, logs, due)
        logs["l_d_total"] = _mean(loss)
        return loss, logs

    def g_loss(self, net_d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        with torch.no_grad():  # the real logits are a constant for G
            d_real = net_d(real.detach())
        return self.loss_weight * self._relativistic(net_d(fake), d_real)

    def forward(self, pred: Tensor, target: Tensor, **ctx: Any) -> Tensor:
        raise TypeError(
            f"{type(self).__name__} needs the discriminator: use g_loss(net_d, real, fake) / d_loss(...)"
        )

    def _penalty_due(self, step: int | None) -> bool:
        if step is None:
            step = self._d_steps
        self._d_steps = step + 1
        return step % self.lazy_interval == 0

    def _penalties(
        self,
        net_d: nn.Module,
        d_real: Tensor,
        d_fake: Tensor,
        real: Tensor,
        fake: Tensor,
        logs: dict,
        due: bool,
    ) -> Tensor:
        total = d_real.new_zeros(())
        if not due:
            return total
        name = type(self).__name__
        for tag, gamma, out, inp in (
            ("r1", self.r1_gamma, d_real, real),
            ("r2", self.r2_gamma, d_fake, fake),
        ):
            if gamma <= 0:
                continue
            pen = gradient_penalty(out, inp, f"{name} {tag.upper()}")
            if (
                id(net_d) not in self._verified
            ):  # probe once per discriminator: an extra backward, not every step
                params: list[Tensor] = [p for p in net_d.parameters() if p.requires_grad]
                check_double_backward(out, pen, params, f"{name} {tag.upper()}")
            total = total + gamma / 2 * pen * self.lazy_interval
            logs[tag] = float(pen.detach())
        self._verified.add(id(net_d))
        return total


@LOSS_REGISTRY.register("R3GANLoss", aliases=("r3gan",))
class R3GANLoss(_PenalisedRelativisticLoss):
    """R3GAN (Huang et al. 2024): relativistic pairing + zero-centred R1 (real) and R2 (fake) penalties.

    ``L_D = E softplus(D(fake) − D(real)) + γ1/2 E‖∇D(real)‖² + γ2/2 E‖∇D(fake)‖²``,
    ``L_G = loss_weight · E softplus(D(real) − D(fake))`` on paired samples (per pixel for U-Net critics).
    Lazy regularisation: with ``lazy_interval = k`` the penalties are computed on D steps 0, k, 2k, … and scaled
    by k (same expected gradient, k× cheaper). ``r2_gamma`` defaults to ``r1_gamma``; ``gamma`` sets both (the paper
    uses one γ).

    Args:
        r2_gamma: weight γ2 of the fake-sample penalty (None: ``r1_gamma``).
        gamma: sets both γ1 and γ2 (None: use r1_gamma/r2_gamma).
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        r1_gamma: float = 1.0,
        r2_gamma: float | None = None,
        lazy_interval: int = 1,
        gamma: float | None = None,
    ) -> None:
        if gamma is not None:  # the paper's single γ for both penalties
            r1_gamma = r2_gamma = gamma
        super().__init__(loss_weight, r1_gamma, r1_gamma if r2_gamma is None else r2_gamma, lazy_interval)

    @staticmethod
    def _relativistic(pos: Tensor, neg: Tensor) -> Tensor:
        return F.softplus(neg - pos).mean()


@LOSS_REGISTRY.register("RaHingeGANLoss", aliases=("rahinge", "relativistic_hinge"))
class RaHingeGANLoss(_PenalisedRelativisticLoss):
    """Relativistic-average hinge (the traiNNer fork's "R3GAN"), with optional R1/R2 like :class:`R3GANLoss`:
    ``L_D = E relu(1 − (D(r) − E D(f))) + E relu(1 + (D(f) − E D(r)))``; ``L_G`` swaps real and fake."""

    def __init__(
        self, loss_weight: float = 1.0, r1_gamma: float = 0.0, r2_gamma: float = 0.0, lazy_interval: int = 1
    ) -> None:
        super().__init__(loss_weight, r1_gamma, r2_gamma, lazy_interval)

    @staticmethod
    def _relativistic(pos: Tensor, neg: Tensor) -> Tensor:
        return F.relu(1 - (pos - neg.mean())).mean() + F.relu(1 + (neg - pos.mean())).mean()
