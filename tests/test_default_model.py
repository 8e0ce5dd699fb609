"""The packaged default model: present, checksummed, loads offline, upscales a bundled sample, and is
really trained — it beats bicubic on a held-out photo it never saw."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from conftest import attr_dict, imread, load_photo_crop
from paragonsr.checkpoint import load_model
from paragonsr.cli import main
from paragonsr.infer import default_model_path, sample_images
from paragonsr.ops.resample import resize


def _psnr_y(a: np.ndarray, b: np.ndarray, border: int = 2) -> float:
    def y(img: np.ndarray) -> np.ndarray:
        img = np.round(np.clip(img, 0, 1) * 255) / 255
        return 16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]

    d = (y(a) - y(b))[border:-border, border:-border]
    return 10 * math.log10(255.0**2 / float(np.mean(d**2)))


def test_packaged_models_are_listed_with_checksums() -> None:
    path = default_model_path()
    assert path is not None, "the package must ship assets/models/default.safetensors"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert set(manifest) >= {"default.safetensors", "default_unfused.safetensors"}
    assert default_model_path("default_unfused.safetensors") is not None


def _packaged(name: str = "default.safetensors") -> Path:
    path = default_model_path(name)
    assert path is not None, f"the package must ship assets/models/{name}"
    return path


def test_default_model_loads_fused_and_matches_unfused() -> None:
    fused = load_model(_packaged())
    unfused = load_model(_packaged("default_unfused.safetensors"))
    assert attr_dict(fused, "checkpoint_meta")["fused"] and not attr_dict(unfused, "checkpoint_meta")["fused"]
    assert fused.arch_name == "paragonsr2_nano" and fused.scale == 2
    x = torch.rand(1, 3, 21, 17)
    with torch.no_grad():
        assert (fused(x) - unfused(x)).abs().max().item() <= 1e-4


def test_default_model_beats_bicubic_on_a_held_out_photo(photos_dir: Path) -> None:
    # aitzgorri is in the validation split (every 8th photo by name) the model never trained on
    path = photos_dir / "lomiri_aitzgorri_by_Aitzol_Berasategi.jpg"
    gt = load_photo_crop(path, 192, 96, 96)
    t = torch.from_numpy(gt).permute(2, 0, 1)[None]
    lq = (resize(t, scale=0.5, kernel="bicubic").clamp(0, 1) * 255).round() / 255
    model = load_model(_packaged())
    with torch.no_grad():
        sr = model(lq)[0].permute(1, 2, 0).numpy()
    bic = resize(lq, scale=2, kernel="bicubic")[0].permute(1, 2, 0).numpy()
    assert _psnr_y(sr, gt) > _psnr_y(bic, gt) + 0.5


def test_upscale_cli_uses_the_default_model_offline(tmp_path: Path, capsys) -> None:
    sample = sample_images()[0]
    out = tmp_path / "out.png"
    assert main(["upscale", str(sample), "-o", str(out), "-q"]) == 0

    h, w = imread(str(sample)).shape[:2]
    assert imread(str(out)).shape == (2 * h, 2 * w, 3)


def test_demo_adds_the_default_model_column(tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "comparison.png").is_file()
    assert any((tmp_path / "demo").glob("*model*/*.png")) or any((tmp_path / "demo").glob("default*/*.png"))


def test_packaged_model_names_resolve_to_the_packaged_files(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from paragonsr.infer import PACKAGED_MODELS, packaged_model

    monkeypatch.chdir(tmp_path)
    assert packaged_model("default") == default_model_path()
    assert packaged_model("some/file.safetensors") == Path("some/file.safetensors")
    for name, file in PACKAGED_MODELS.items():
        if default_model_path(file) is None:
            with pytest.raises(FileNotFoundError) as exc:
                packaged_model(name)
            assert str(exc.value) == f"--model {name}: this install has no packaged {name} model"
        else:
            assert packaged_model(name) == default_model_path(file)
    (tmp_path / "default").write_bytes(b"")  # a file of that name wins over the packaged model
    assert packaged_model("default") == Path("default")
