"""Every registered architecture survives save -> load-by-file with its hyperparameters, whoever built it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import attr_dict, narrow
from paragonsr.archs import ARCH_REGISTRY, build_arch
from paragonsr.archs.paragonsr2 import ParagonSR2, paragonsr2_nano
from paragonsr.archs.paragonsr_v1 import ParagonSR
from paragonsr.archs.rrdbnet import RRDBNet
from paragonsr.archs.span import SPAN
from paragonsr.checkpoint import load_model, save_model

_P2 = {"scale": 2, "num_feat": 8, "num_groups": 1, "num_blocks": 1, "hr_blocks": 1}
_V1 = {"scale": 2, "num_feat": 8, "num_groups": 1, "num_blocks": 1, "upsampler_alpha": 0.5}
_SPAN = {"feature_channels": 8, "scale": 2, "norm": True, "img_range": 1.0, "rgb_mean": [0.5, 0.4, 0.3]}

# Non-default hyperparameters for every registered name (small widths). A newly registered arch fails
# test_every_registered_arch_has_a_case until it gets an entry here.
CASES: dict[str, dict[str, Any]] = {
    "munet": {"num_in_ch": 1, "num_feat": 4, "ch_mult": [1, 2, 2, 4], "upsampler_alpha": 0.25},
    "paragonsr2": {
        **_P2,
        "ffn_expansion": 1.5,
        "band_kernel_size": 5,
        "upsampler_alpha": 0.0,
        "image_residual": False,
        "layer_scale_init": 0.1,
        "kernel_momentum": 0.2,
    },
    **{
        f"paragonsr2_{v}": {**_P2, "upsampler_alpha": 0.25, "image_residual": False}
        for v in ("nano", "anime", "tiny", "s", "m", "l", "xl")
    },
    **{f"paragonsr_{v}": dict(_V1) for v in ("anime", "nano", "tiny", "xs", "s", "m", "l", "xl")},
    "rrdbnet": {
        "num_in_ch": 1,
        "num_out_ch": 1,
        "scale": 2,
        "num_feat": 8,
        "num_block": 1,
        "num_grow_ch": 4,
        "num_upconv": 1,
    },
    "span": dict(_SPAN),
    "span_s": {**_SPAN, "norm": False},
    "srvggnetcompact": {
        "num_in_ch": 1,
        "num_out_ch": 1,
        "num_feat": 8,
        "num_conv": 2,
        "upscale": 3,
        "act_type": "leakyrelu",
    },
    "unetdiscriminatorsn": {"num_in_ch": 1, "num_feat": 4, "skip_connection": False},
}


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights (a fresh init hides layers that start at ~0, e.g. LayerScale)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _input(model: nn.Module) -> torch.Tensor:
    return torch.rand(1, narrow(int, model.in_ch), 16, 16, generator=torch.Generator().manual_seed(1))


def _round_trip(model: nn.Module, path: Path) -> nn.Module:
    save_model(path, model)
    loaded = load_model(path)  # from the file alone: no arch, no kwargs
    x = _input(model)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # (load_model adds the recorded scale where the kwargs leave it to the default)
    recorded, reloaded = attr_dict(model, "arch_kwargs"), attr_dict(loaded, "arch_kwargs")
    assert loaded.arch_name == model.arch_name and recorded.items() <= reloaded.items()
    return loaded


def test_every_registered_arch_has_a_case() -> None:
    assert sorted(CASES) == ARCH_REGISTRY.names()
    for name, kwargs in CASES.items():  # every case sets something the registered name would not
        params = inspect.signature(ARCH_REGISTRY.get(name)).parameters
        assert any(k not in params or params[k].default != v for k, v in kwargs.items()), name


@pytest.mark.parametrize("name", ARCH_REGISTRY.names())
def test_registered_arch_round_trips_with_its_hyperparameters(name: str, tmp_path: Path) -> None:
    model = _perturb(ARCH_REGISTRY.get(name)(**CASES[name]))  # built directly, not through build_arch
    assert model.arch_name == name and model.arch_kwargs == CASES[name]
    _round_trip(model, tmp_path / "m.safetensors")
    fuse = getattr(model, "fuse_for_release", None)
    if fuse is not None:
        loaded = _round_trip(fuse(), tmp_path / "fused.safetensors")
        assert attr_dict(loaded, "checkpoint_meta")["fused"] is True


def test_paragonsr2_built_directly_keeps_alpha_and_residual(tmp_path: Path) -> None:
    model = _perturb(
        ParagonSR2(num_feat=8, num_groups=1, num_blocks=1, upsampler_alpha=0, image_residual=False)
    )
    loaded = _round_trip(model, tmp_path / "p2.pth")
    loaded_p2 = narrow(ParagonSR2, loaded)
    assert loaded_p2.upsampler.alpha == 0 and loaded_p2.image_residual is False


@pytest.mark.parametrize(
    ("cls", "kwargs", "arch", "recorded"),
    [
        # SPAN's class defaults (48 wide, normalised) differ from the `span` factory's (52, no norm).
        (
            SPAN,
            {"feature_channels": 8, "scale": 2},
            "span",
            {"feature_channels": 8, "scale": 2, "norm": True},
        ),
        (
            RRDBNet,
            {"num_feat": 8, "num_block": 1, "scale": 2},
            "rrdbnet",
            {"num_feat": 8, "num_block": 1, "scale": 2},
        ),
    ],
)
def test_classes_built_by_factories_record_the_factory(
    cls: type[nn.Module], kwargs: dict[str, Any], arch: str, recorded: dict[str, Any], tmp_path: Path
) -> None:
    model = _perturb(cls(**kwargs))
    assert (model.arch_name, model.arch_kwargs) == (arch, recorded)
    _round_trip(model, tmp_path / "m.safetensors")


def test_paragonsr_v1_class_built_directly_round_trips(tmp_path: Path) -> None:
    model = _perturb(ParagonSR(scale=2, num_feat=8, num_groups=1, num_blocks=2, band_kernel_size=5))
    assert model.arch_name == "paragonsr_s" and attr_dict(model, "arch_kwargs")["num_blocks"] == 2
    _round_trip(model, tmp_path / "v1.safetensors")


def test_outermost_registered_call_and_canonical_name_are_recorded() -> None:
    m = paragonsr2_nano(scale=2, hr_blocks=1)
    assert (m.arch_name, m.arch_kwargs) == ("paragonsr2_nano", {"scale": 2, "hr_blocks": 1})
    esrgan = build_arch("ESRGAN", num_feat=8, num_block=1)
    assert (esrgan.arch_name, esrgan.arch_kwargs) == ("rrdbnet", {"num_feat": 8, "num_block": 1})

    class Wider(ParagonSR2):  # an unregistered subclass: its layout is unknown to the registry
        pass

    assert not hasattr(Wider(num_feat=8), "arch_name")


PLUGIN = """
import sys
from torch import nn
import paragonsr.archs.options  # the option models already exist (an option file or checkpoint was read)
from paragonsr.checkpoint import load_model, save_model
from paragonsr.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register("plugin_up")
class PluginUp(nn.Module):
    def __init__(self, scale: int = 4, num_feat: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.conv(x))


save_model(sys.argv[1], PluginUp(scale=2, num_feat=4))
back = load_model(sys.argv[1])
print(type(back).__name__, back.scale)
"""


def test_an_arch_registered_later_loads_from_its_file(tmp_path: Path) -> None:
    """A plugin architecture registered after the arch option models were generated still loads (at its recorded
    scale). In a subprocess: the registry of this test process must not gain an entry."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PLUGIN, str(tmp_path / "plugin.safetensors")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["PluginUp", "2"]
