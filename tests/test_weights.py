"""Weight files fetched on request: ``paragonsr train --allow-download`` reaches the weight resolver."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main


def test_train_allow_download_flag_reaches_weight_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import json

    from paragonsr.weights import ALLOW_DOWNLOAD_ENV, WeightsError, resolve_weights

    monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "0")  # recorded, so the flag's "1" is undone after the test
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    manifest = {"w": {"file": "w.bin", "url": src.resolve().as_uri(), "sha256": None}}
    wdir = tmp_path / "weights"
    with pytest.raises(WeightsError, match="--allow-download"):
        resolve_weights("w", wdir, manifest=manifest)
    opt = tmp_path / "o.yml"
    for sub in ("g", "l"):  # train checks its dataset folders before anything else
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), np.zeros((32, 32, 3), np.uint8))
    opt.write_text(
        json.dumps(
            {
                "name": "t",
                "scale": 2,
                "datasets": {
                    "train": {
                        "type": "PairedImageDataset",
                        "dataroot_gt": str(tmp_path / "g"),
                        "dataroot_lq": str(tmp_path / "l"),
                        "gt_size": 32,
                    }
                },
                "network_g": {"type": "SRVGGNetCompact", "num_feat": 4, "num_conv": 1, "upscale": 2},
                "train": {"total_iter": 1, "optim_g": {"type": "Adam"}, "pixel_opt": {"type": "L1Loss"}},
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr("paragonsr.train.trainer.train_pipeline", lambda *a, **k: None)
    assert main(["train", "-opt", str(opt), "--allow-download"]) == 0
    assert resolve_weights("w", wdir, manifest=manifest).read_bytes() == b"weights"


def test_download_checks_the_hash_while_streaming_and_names_the_url(tmp_path: Path) -> None:
    import hashlib

    from paragonsr.weights import WeightsError, resolve_weights

    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    entry = {"file": "w.bin", "url": src.resolve().as_uri(), "sha256": None, "sha256_prefix": good[:8]}
    path = resolve_weights("w", tmp_path / "ok", allow_download=True, manifest={"w": entry})
    assert path.read_bytes() == b"weights" and [p.name for p in (tmp_path / "ok").iterdir()] == ["w.bin"]
    wrong = {"w": {**entry, "sha256_prefix": "0" * 8 if good[:8] != "0" * 8 else "1" * 8}}
    with pytest.raises(WeightsError, match=r"weights 'w': the download from file:.* does not match"):
        resolve_weights("w", tmp_path / "bad", allow_download=True, manifest=wrong)
    assert list((tmp_path / "bad").iterdir()) == []  # neither the file nor a temp file is left
    gone = {"w": {**entry, "url": (tmp_path / "missing.bin").resolve().as_uri()}}
    with pytest.raises(WeightsError, match=r"weights 'w': cannot download file:.*missing\.bin"):
        resolve_weights("w", tmp_path / "gone", allow_download=True, manifest=gone)
    assert list((tmp_path / "gone").iterdir()) == []


def test_weight_source_resolves_like_resolve_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import paragonsr.weights as w

    monkeypatch.delenv(w.ALLOW_DOWNLOAD_ENV, raising=False)
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights")
    url = src.resolve().as_uri()
    manifest = {"w": {"file": "w.bin", "url": url, "sha256": None, "license": "MIT"}}
    wdir = tmp_path / "weights"
    source = w.WeightSource(wdir, manifest=manifest)
    with pytest.raises(w.WeightsError) as err:
        source.resolve("w")
    msg = str(err.value)
    for part in ("'w' not found", "w.bin", str(wdir), url, "--allow-download", "License: MIT."):
        assert part in msg
    with pytest.raises(w.WeightsError) as direct:
        w.resolve_weights("w", wdir, manifest=manifest)
    assert str(direct.value) == msg
    assert not wdir.exists()  # nothing fetched without allow_download
    fetched = w.WeightSource(wdir, True, manifest).resolve("w")
    assert fetched == wdir / "w.bin" and fetched.read_bytes() == b"weights"
    assert source.resolve("w") == w.resolve_weights("w", wdir, manifest=manifest) == fetched

    calls: list[tuple] = []

    def record(*a: object, **k: object) -> Path:
        calls.append((a, k))
        return Path("x")

    monkeypatch.setattr(w, "resolve_weights", record)
    assert w.WeightSource("d", True, "m.json").resolve("vgg19") == Path("x")
    assert calls == [(("vgg19",), {"weights_dir": "d", "allow_download": True, "manifest": "m.json"})]
    assert w.WeightSource() == w.WeightSource(None, False, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.allow_download = True  # type: ignore[misc]


def test_default_weight_source_uses_the_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paragonsr.weights import ALLOW_DOWNLOAD_ENV, ENV_VAR, WeightsError, WeightSource

    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(WeightsError, match=r"vgg16-397923af\.pth in .*env"):
        WeightSource().resolve("vgg16")
