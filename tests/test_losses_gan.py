"""GAN losses: closed-form values, R3GAN pairing + R1/R2 against an independent autograd reference, lazy
regularisation, and loud failures when the discriminator cannot double-backward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from paragonsr.losses import build_loss
from paragonsr.losses.gan import GANLoss, R3GANLoss, RaHingeGANLoss

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


class TinyD(nn.Module):
    """Non-linear per-pixel critic small enough for exact references."""

    def __init__(self, op: str = "none") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.op = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1), op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.c1(x))
        if self.op == "once":
            h = _OnceSquare.apply(h)
        elif self.op == "cdist":
            h = torch.cdist(h.flatten(2), h.flatten(2)).mean(-1, keepdim=True).unsqueeze(-1).expand_as(h)
        elif self.op == "detach":
            h = h.detach()
        return self.c2(h)


class _OnceSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class ConstD(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1), self.value) + 0 * self.w + 0 * x.sum((1, 2, 3)).unsqueeze(1)


def test_classic_gan_losses_known_values():
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    v = build_loss({"type": "GANLoss", "gan_type": "vanilla", "loss_weight": 0.1})
    assert isinstance(v, GANLoss)
    loss, logs = v.d_loss(ConstD(0.0), real, fake)
    assert float(loss.detach()) == pytest.approx(2 * math.log(2), abs=1e-6)  # BCE at logit 0, real + fake
    assert float(v.g_loss(ConstD(0.0), real, fake)) == pytest.approx(0.1 * math.log(2), abs=1e-6)
    assert set(logs) == {"l_d_real", "l_d_fake", "out_d_real", "out_d_fake"}
    ls = build_loss({"type": "GANLoss", "gan_type": "lsgan"})
    assert float(ls(torch.full((3,), 0.5), True, is_disc=True)) == pytest.approx(0.25)
    hinge = build_loss({"type": "GANLoss", "gan_type": "hinge", "loss_weight": 2.0})
    assert isinstance(hinge, GANLoss)
    assert float(hinge.d_loss(ConstD(0.5), real, fake)[0]) == pytest.approx(
        0.5 + 1.5
    )  # relu(1-.5) + relu(1+.5)
    assert float(hinge.g_loss(ConstD(0.5), real, fake)) == pytest.approx(-1.0)  # -mean * weight
    # BasicSR forward: the weight applies to G only
    assert float(hinge(torch.tensor([0.5]), True, is_disc=True)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="gan_type"):
        build_loss({"type": "GANLoss", "gan_type": "wgan-gp"})


def _reference_penalty(net_d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """E_n ||∇_x mean(D(x_n))||², one sample at a time (a different path from the batched implementation)."""
    total = torch.zeros(())
    for n in range(x.shape[0]):
        xn = x[n : n + 1].detach().clone().requires_grad_()
        (g,) = torch.autograd.grad(net_d(xn).mean(), xn, create_graph=True)
        total = total + (g**2).sum()
    return total / x.shape[0]


def test_r3gan_matches_autograd_reference():
    d = TinyD()
    real, fake = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.rand(3, 3, 8, 8)
    loss_fn = R3GANLoss(loss_weight=0.5, r1_gamma=2.0, r2_gamma=0.5)
    loss, logs = loss_fn.d_loss(d, real, fake.requires_grad_())
    adv = F.softplus(d(fake.detach()) - d(real)).mean()
    r1, r2 = _reference_penalty(d, real), _reference_penalty(d, fake)
    ref = adv + 2.0 / 2 * r1 + 0.5 / 2 * r2
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert logs["r1"] == pytest.approx(float(r1), rel=1e-5) and logs["r2"] == pytest.approx(
        float(r2), rel=1e-5
    )
    # the penalty trains D: parameter gradients equal the reference's (double backward through the convs)
    got = torch.autograd.grad(loss, list(d.parameters()))
    want = torch.autograd.grad(ref, list(d.parameters()))
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-7)
    assert fake.grad is None  # fake is detached inside d_loss
    # generator side: softplus(D(real) - D(fake)) * weight, gradient reaches the fake
    fake_g = fake.detach().clone().requires_grad_()
    lg = loss_fn.g_loss(d, real, fake_g)
    assert float(lg) == pytest.approx(0.5 * float(F.softplus(d(real) - d(fake_g)).mean()), rel=1e-6)
    lg.backward()
    assert fake_g.grad is not None and fake_g.grad.abs().sum() > 0


def test_r3gan_lazy_interval():
    d = TinyD()
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    eager = R3GANLoss(r1_gamma=1.0, r2_gamma=0.0)
    lazy = R3GANLoss(r1_gamma=1.0, r2_gamma=0.0, lazy_interval=4)
    full, logs = eager.d_loss(d, real, fake)
    adv = float(F.softplus(d(fake) - d(real)).mean())
    pen = logs["r1"]
    l0, logs0 = lazy.d_loss(d, real, fake, step=8)  # due: scaled by 4
    assert float(l0) == pytest.approx(adv + 4 * 0.5 * pen, rel=1e-5) and "r1" in logs0
    l1, logs1 = lazy.d_loss(d, real, fake, step=9)
    assert float(l1) == pytest.approx(adv, rel=1e-6) and "r1" not in logs1
    assert lazy.d_loss(d, real, fake)[1].get("r1") is None  # internal counter continues at 10
    assert float(full) == pytest.approx(adv + 0.5 * pen, rel=1e-5)
    with pytest.raises(ValueError, match="lazy_interval"):
        R3GANLoss(lazy_interval=0)


@pytest.mark.parametrize("op,match", [("once", "once_differentiable"), ("cdist", "no double backward"),
                                      ("detach", "does not depend")])  # fmt: skip
def test_r3gan_fails_loudly_without_double_backward(op, match):
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match=match):
        R3GANLoss(r1_gamma=1.0).d_loss(TinyD(op), real, fake)
    # without penalties the same D trains (nothing to double-backward)
    loss, logs = R3GANLoss(r1_gamma=0.0, r2_gamma=0.0).d_loss(TinyD(op), real, fake)
    assert torch.isfinite(loss) and "r1" not in logs


def test_rahinge_variant():
    d = TinyD()
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    g = build_loss({"type": "RaHingeGANLoss", "r1_gamma": 1.0})
    assert isinstance(g, RaHingeGANLoss)
    loss, logs = g.d_loss(d, real, fake)
    dr, df = d(real), d(fake)
    ref = F.relu(1 - (dr - df.mean())).mean() + F.relu(1 + (df - dr.mean())).mean()
    assert logs["l_d_adv"] == pytest.approx(float(ref), rel=1e-5) and "r1" in logs
    assert float(loss) == pytest.approx(float(ref) + 0.5 * logs["r1"], rel=1e-5)
    with pytest.raises(TypeError, match="g_loss"):
        g(real, fake)


def test_r3gan_options_from_yaml_names():
    g = build_loss({"type": "r3gan", "gamma": 3.0, "loss_weight": 0.05})
    assert (g.r1_gamma, g.r2_gamma, g.loss_weight) == (3.0, 3.0, 0.05)
    g = build_loss({"type": "R3GANLoss", "r1_gamma": 2.0})
    assert g.r2_gamma == 2.0
    with pytest.raises(ValueError, match="r1_gamma"):
        build_loss({"type": "R3GANLoss", "r1_gamma": -1.0})


def _param_grads(net_d: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = list(net_d.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # a last-layer bias has no input gradient
    return [torch.zeros_like(p) if g is None else g.clone() for g, p in zip(grads, params)]


def test_lazy_penalty_gradients_are_k_times_the_eager_ones_every_k_steps():
    """Lazy R1/R2 (lazy_interval k): the due step's D gradient is adversarial + k·(γ/2)·∇penalty, the other k-1
    steps carry the adversarial gradient only, so over k steps on the same D and data the summed gradient equals
    k eager steps exactly (same expected gradient, penalties k× rarer)."""
    d, k = TinyD(), 3
    g = torch.Generator().manual_seed(3)
    real, fake = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    eager = R3GANLoss(r1_gamma=1.5, r2_gamma=0.5)
    lazy = R3GANLoss(r1_gamma=1.5, r2_gamma=0.5, lazy_interval=k)
    g_eager = _param_grads(d, eager.d_loss(d, real, fake)[0])
    adv = _param_grads(d, F.softplus(d(fake) - d(real)).mean())
    pen = _param_grads(d, 1.5 / 2 * _reference_penalty(d, real) + 0.5 / 2 * _reference_penalty(d, fake))
    steps = [_param_grads(d, lazy.d_loss(d, real, fake, step=s)[0]) for s in range(k)]
    for i, (a, p) in enumerate(zip(adv, pen)):
        assert p.abs().sum() > 0 or i == 3  # the penalty reaches every parameter but the last bias
        assert torch.allclose(steps[0][i], a + k * p, rtol=1e-4, atol=1e-7)  # due: scaled by k
        for s in range(1, k):
            assert torch.allclose(steps[s][i], a, rtol=1e-5, atol=1e-8)  # not due: no penalty at all
        summed = torch.stack([st[i] for st in steps]).sum(0)
        assert torch.allclose(summed, k * g_eager[i], rtol=1e-4, atol=1e-7)


def test_penalised_steps_run_in_fp32_under_bf16_autocast():
    """Under bf16 autocast the R1/R2 parameter gradients through MUNet are mostly lost (measured: cosine 0.4 to the
    fp32 gradient, 0.3 of its norm), so a penalised D step runs in fp32 inside the loss: same loss and gradients
    as without autocast. Plain (not due) steps keep the caller's bf16."""
    from paragonsr.archs import build_arch

    torch.manual_seed(0)
    d = build_arch("munet", num_feat=8).train()
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    state = {k: v.clone() for k, v in d.state_dict().items()}  # spectral norm's power iteration moves u, v
    runs = {}
    for step in (0, 1):  # lazy_interval 2: step 0 penalised, step 1 plain
        for bf16 in (False, True):
            d.load_state_dict(state)
            loss_fn = R3GANLoss(r1_gamma=10.0, r2_gamma=10.0, lazy_interval=2)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, logs = loss_fn.d_loss(d, real, fake, step=step)
            runs[step, bf16] = (float(loss.detach()), _param_grads(d, loss), logs)
    (l32, g32, logs32), (l16, g16, logs16) = runs[0, False], runs[0, True]
    assert logs16["r1"] > 0 and logs16["r2"] > 0
    assert l16 == pytest.approx(l32, rel=1e-6) and logs16["r1"] == pytest.approx(logs32["r1"], rel=1e-5)
    for a, b in zip(g32, g16):
        assert b.dtype == torch.float32 and torch.allclose(a, b, rtol=1e-5, atol=1e-9)
    # the plain step really ran in bf16 (its logits carry bf16 rounding), and has no penalty
    assert "r1" not in runs[1, True][2] and runs[1, True][0] != runs[1, False][0]
    assert runs[1, True][0] == pytest.approx(runs[1, False][0], rel=1e-2)
