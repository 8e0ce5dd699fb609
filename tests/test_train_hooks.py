"""The training loop stays architecture- and loss-agnostic: archs opt into calibration with a
``calibrate_for_eval`` hook, losses declare the GT they compare against (``gt_usm_group``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from paragonsr.train.option_io import parse_options
from paragonsr.train.sr_model import SRModel


def _opt(net: dict[str, Any], losses: list[dict[str, Any]], **top: Any) -> Any:
    return parse_options({
        "name": "hooks", "scale": 2,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": "g", "dataroot_lq": "l", "gt_size": 16}},
        "network_g": net, "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "losses": losses}, **top,
    })  # fmt: skip


def test_loss_targets_come_from_the_loss_class_and_the_gt_usm_switches() -> None:
    losses: list[dict[str, Any]] = [
        {"type": "L1Loss", "name": "a"},
        {"type": "CharbonnierLoss", "name": "b"},
        {"type": "PerceptualLoss", "name": "c", "pretrained": False, "layer_weights": {"conv1_2": 1.0}},
        {"type": "SSIMLoss", "name": "l1_named_but_ssim"},  # a name is a label, not a target
        {"type": "L1Loss", "name": "d", "target": "gt"},  # an explicit target wins
        {"type": "GANLoss", "name": "gan"},
    ]
    net = {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1}
    with pytest.warns(UserWarning):  # random VGG backbone
        model = SRModel(_opt(net, losses, l1_gt_usm=True, percep_gt_usm=False, gan_gt_usm=True),
                        torch.device("cpu"))  # fmt: skip
    targets = {name: t for name, _, t in model.losses + model.gan_losses}
    assert targets == {
        "a": "gt_usm",
        "b": "gt_usm",
        "c": "gt",
        "l1_named_but_ssim": "gt",
        "d": "gt",
        "gan": "gt_usm",
    }
    with pytest.warns(UserWarning):
        model = SRModel(_opt(net, losses, l1_gt_usm=False, percep_gt_usm=True, gan_gt_usm=False),
                        torch.device("cpu"))  # fmt: skip
    targets = {name: t for name, _, t in model.losses + model.gan_losses}
    assert targets == {"a": "gt", "b": "gt", "c": "gt_usm", "l1_named_but_ssim": "gt", "d": "gt", "gan": "gt"}


def _with_recent(net: dict[str, Any], calibrate_iters: int = 2) -> SRModel:
    opt = _opt(net, [{"type": "L1Loss"}])
    opt.train.calibrate_iters = calibrate_iters
    model = SRModel(opt, torch.device("cpu"))
    torch.manual_seed(0)
    model.recent_lq.extend(torch.rand(1, 3, 8, 8) for _ in range(2))
    return model


def test_eval_model_runs_the_arch_calibration_hook_only_when_asked() -> None:
    model = _with_recent({"type": "paragonsr2_nano"})
    before = {k: v.clone() for k, v in model.eval_model(calibrate=False).state_dict().items()}
    after = model.eval_model(calibrate=True).state_dict()
    changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
    assert changed and all("tracked" in k or "kernel" in k for k in changed), changed
    assert not any(isinstance(p, nn.Parameter) and k in changed for k, p in model.net_g.named_parameters())


def test_eval_model_calls_any_arch_hook_with_the_recent_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.archs.compact import SRVGGNetCompact

    seen: list[int] = []
    monkeypatch.setattr(SRVGGNetCompact, "calibrate_for_eval",
                        lambda self, batches, device=None: seen.append(len(batches)), raising=False)  # fmt: skip
    model = _with_recent({"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1})
    model.eval_model(calibrate=False)
    assert seen == []
    model.eval_model(calibrate=True)
    assert seen == [2]


def test_pair_pool_is_built_for_on_the_fly_training_data_only() -> None:
    from paragonsr.data.build import build_pair_pool
    from paragonsr.degrade import PairPool

    net = {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1}
    paired = _opt(net, [{"type": "L1Loss"}], queue_size=8)
    assert build_pair_pool(paired) is None  # fixed pairs: nothing to mix
    otf = paired.model_copy(deep=True)
    otf.datasets["train"] = parse_options({
        "name": "o", "scale": 2, "queue_size": 8,
        "datasets": {"train": {"type": "RealESRGANDataset", "dataroot_gt": "g", "gt_size": 16}},
        "network_g": net, "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "losses": [{"type": "L1Loss"}]},
    }).datasets["train"]  # fmt: skip
    pool = build_pair_pool(otf)
    assert isinstance(pool, PairPool) and pool.size == 8
    otf.queue_size = 0
    assert build_pair_pool(otf) is None
