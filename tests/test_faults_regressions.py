"""One regression test per kind of fault in issue 26, in process, on inputs generated here: long output names,
``.avif`` in folder scans, HDR float TIFFs, output claims, full-disk writes, degrade pairs, ``--auto_resume``
fallback, the loaded-weights log line, and a foreign U-Net ONNX file that needs H, W divisible by 4."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import imread
from paragonsr.cli import main
from paragonsr.utils.atomic import WriteError, atomic_write_bytes, temp_prefix
from paragonsr.utils.claims import OutputClaim, claim_path, clean_claims


def _png(path: Path, size: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3)).astype(np.uint8))
    return path


# ----------------------------------------------------------------------------------------------- names, formats


@pytest.mark.parametrize("stem", ["a" * 247, "é" * 123], ids=["ascii", "utf8"])
def test_legal_long_output_names_get_a_legal_temp_name(tmp_path: Path, stem: str) -> None:
    (tmp_path / "in").mkdir()
    src = _png(tmp_path / "in" / f"{stem}.png")  # 251 / 250 bytes: legal, and so is its output name
    assert len(src.name.encode()) <= 255
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "in"), "-o", str(out), "--resampler", "bicubic", "-q"]) == 0
    assert [p.name for p in out.iterdir()] == [src.name]
    prefix = temp_prefix(out / src.name)
    assert len(prefix.encode()) + 40 <= 255 and prefix.startswith(".") and prefix.endswith(f".{os.getpid()}.")
    prefix.encode("utf-8")  # cut on a character boundary


def test_avif_files_are_found_by_folder_scans(tmp_path: Path) -> None:
    from PIL import Image, features

    if not features.check("avif") and not hasattr(cv2, "IMWRITE_AVIF_QUALITY"):
        pytest.skip("neither Pillow nor OpenCV has an AVIF codec here")
    from paragonsr.commands.upscale import collect_inputs
    from paragonsr.io.files import list_images
    from paragonsr.io.image_io import read_image

    yy, xx = np.mgrid[0:12, 0:10]
    rgb = np.stack([yy * 20, xx * 25, 255 - yy * 10], axis=2).astype(np.uint8)  # smooth: survives 4:2:0
    Image.fromarray(rgb).save(tmp_path / "pic.AVIF", format="AVIF", quality=100)
    _png(tmp_path / "b.png")
    assert [p.name for p in list_images(tmp_path)] == ["b.png", "pic.AVIF"]
    found, problems = collect_inputs([str(tmp_path)], recursive=False)
    assert sorted(rel.name for _, rel in found) == ["b.png", "pic.AVIF"] and problems == []
    img, info = read_image(tmp_path / "pic.AVIF")
    assert info.format == "avif" and img.shape == (12, 10, 3)
    with Image.open(tmp_path / "pic.AVIF") as ref:  # the reference decoder's pixels
        assert np.abs(img * 255 - np.asarray(ref.convert("RGB"), np.float32)).max() <= 2


def test_hdr_float_tiff_clamp_is_announced_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = np.linspace(0, 4, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)  # values up to 4: HDR
    assert cv2.imwrite(str(tmp_path / "hdr.tif"), img)
    assert main(["upscale", str(tmp_path / "hdr.tif"), "-o", str(tmp_path / "out.tif"), "--resampler", "bicubic",
                 "-q"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert notes == [f"note: {tmp_path / 'hdr.tif'}: float image with values in [0, 4] (HDR or out of range); "
                     "the result is clamped to [0, 1]"]  # fmt: skip
    out = imread(str(tmp_path / "out.tif"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.float32 and out.shape == (32, 32, 3) and float(out.max()) <= 1.0


# ----------------------------------------------------------------------------------------------- claims


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    first, second = OutputClaim(out), OutputClaim(out)
    assert first.acquire() and claim_path(out).is_file()
    assert not second.acquire() and second.holder is not None and second.holder["pid"] == os.getpid()
    first.release()
    assert not claim_path(out).exists() and second.acquire()
    second.release()

    dead = {"pid": _dead_pid(), "host": socket.gethostname(), "started": None, "time": time.time()}
    claim_path(out).write_text(json.dumps(dead))
    taker = OutputClaim(out)
    assert taker.acquire()  # the claimant is gone: taken over
    assert json.loads(claim_path(out).read_text())["pid"] == os.getpid()
    taker.release()

    other = {"pid": 1, "host": "elsewhere", "time": time.time()}
    claim_path(out).write_text(json.dumps(other))
    assert not OutputClaim(out).acquire()  # another machine's fresh claim is honoured
    old = time.time() - 2 * 86400
    os.utime(claim_path(out), (old, old))
    assert OutputClaim(out).acquire()  # ... until it is stale

    long_name = tmp_path / ("b" * 250 + ".png")
    assert len(claim_path(long_name).name) < 60 and OutputClaim(long_name).acquire()
    dead["pid"] = _dead_pid()
    claim_path(tmp_path / "c.png").write_text(json.dumps(dead))
    assert clean_claims(tmp_path) == [claim_path(tmp_path / "c.png")]


def test_upscale_skips_an_output_another_live_run_claimed(tmp_path: Path, capsys) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", seed=1)
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        claim_path(out / "a.png").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), "--resampler",
                     "bicubic", "-q"]) == 0  # fmt: skip
    finally:
        other.kill()
        other.wait()
    captured = capsys.readouterr()
    assert f"skip: {out / 'a.png'} is being written by another run (pid {other.pid} on" in captured.err
    assert "1 left to another run writing them" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [".a.png.claim", "b.png"]


# ----------------------------------------------------------------------------------------------- full disk


def test_a_failed_write_names_the_file_keeps_the_old_one_and_leaves_no_temp(
    tmp_path: Path, monkeypatch
) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(WriteError) as info:
        atomic_write_bytes(target, b"new")
    assert str(info.value) == f"{target}: cannot write (No space left on device); the previous version, if any, " \
                              "is kept"  # fmt: skip
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.safetensors"
    ]


def test_degrade_pair_is_whole_or_absent(tmp_path: Path, monkeypatch) -> None:
    import paragonsr.utils.atomic as atomic
    from paragonsr.commands.degrade import write_pair

    real = atomic.atomic_write_bytes

    def gt_only(path: Path, data: bytes) -> Path:
        if "lq" in Path(path).parts:
            raise WriteError(errno.ENOSPC, f"{path}: cannot write (No space left on device)")
        return real(path, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", gt_only)
    img = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(WriteError, match="lq"):
        write_pair(tmp_path, Path("x.png"), img, (np.zeros((16, 16, 3), np.float32), 8))
    assert not (tmp_path / "gt" / "x.png").exists() and not (tmp_path / "lq" / "x.png").exists()
    monkeypatch.setattr(atomic, "atomic_write_bytes", real)
    write_pair(tmp_path, Path("x.png"), img, (np.zeros((16, 16, 3), np.float32), 8))
    assert (tmp_path / "gt" / "x.png").is_file() and (tmp_path / "lq" / "x.png").is_file()


# ----------------------------------------------------------------------------------------------- resume


def _tiny_run(root: Path) -> Path:
    import yaml

    for sub, size in (("gt", 32), ("lq", 16)):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            _png(root / sub / f"{i}.png", size, seed=i)
    opt = {
        "name": "r", "scale": 2, "manual_seed": 0,
        "datasets": {"train": {"type": "PairedImageDataset", "dataroot_gt": str(root / "gt"),
                               "dataroot_lq": str(root / "lq"), "gt_size": 16, "batch_size_per_gpu": 2}},
        "network_g": {"type": "compact", "num_feat": 4, "num_conv": 1},
        "path": {"experiments_root": str(root / "exp")},
        "train": {"total_iter": 4, "optim_g": {"type": "Adam", "lr": 1e-3}, "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 2, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }  # fmt: skip
    (root / "o.yml").write_text(yaml.safe_dump(opt))
    return root / "o.yml"


def test_auto_resume_says_what_it_skipped_and_falls_back_past_bad_states_and_network_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paragonsr.train.state import find_latest_state

    opt = _tiny_run(tmp_path)
    assert main(["train", "-opt", str(opt), "--force", "train.total_iter=6"]) == 0
    exp = tmp_path / "exp"
    net6 = exp / "models" / "net_g_6.safetensors"
    net6.write_bytes(net6.read_bytes()[:-7])  # truncated network file of the newest state
    state4 = exp / "training_states" / "4.state"
    state4.write_bytes(state4.read_bytes()[:100])  # truncated training state
    skipped: list[str] = []
    assert find_latest_state(exp, skipped) == exp / "training_states" / "2.state"
    assert skipped[0].startswith(
        f"{exp / 'training_states' / '6.state'}: its network file is unreadable: {net6}"
    )
    assert skipped[1].startswith(f"{state4}: unreadable state file (")
    capsys.readouterr()
    assert main(["train", "-opt", str(opt), "--auto_resume", "--force", "train.total_iter=6"]) == 0
    log = capsys.readouterr().out
    warned = [ln.split("WARNING: ", 1)[1] for ln in log.splitlines() if "WARNING: auto_resume" in ln]
    assert warned[0].startswith(
        f"auto_resume: skipped {exp / 'training_states' / '6.state'}: its network file is unreadable: {net6}"
    )
    assert (
        warned[1].startswith(f"auto_resume: skipped {state4}: unreadable state file (") and len(warned) == 2
    )
    assert f"resuming from {exp / 'training_states' / '2.state'} (iter 2)" in log
    from paragonsr.checkpoint import load_state_dict

    assert load_state_dict(net6)[0]  # rewritten whole by the resumed run


def test_pretrained_log_names_the_entry_actually_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.train.sr_model import load_pretrained

    net = build_arch("compact", num_feat=4, num_conv=1, upscale=2)
    flat, nested = tmp_path / "flat.pth", tmp_path / "nested.pth"
    torch.save(net.state_dict(), flat)
    torch.save({"params_ema": net.state_dict()}, nested)
    caplog.set_level(logging.INFO, logger="paragonsr.train")
    load_pretrained(net, str(flat), "params", True, "network_g")
    load_pretrained(net, str(nested), "params_ema", True, "network_g")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded network_g")]
    assert lines[0].startswith(f"loaded network_g from {flat} [flat state dict]: ")
    assert lines[1].startswith(f"loaded network_g from {nested} [params_ema]: ")


# ----------------------------------------------------------------------------------------------- foreign ONNX


class _UNet(nn.Module):
    """Two pooling levels and skip concatenations: H and W must be divisible by 4; x2 by pixel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(i, 4, 3, padding=1) for i in (3, 4, 4))
        self.up = nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        b = self.b(F.max_pool2d(a, 2))
        c = F.interpolate(self.c(F.max_pool2d(b, 2)), scale_factor=2.0, mode="nearest")
        b = F.interpolate(torch.cat([b, c], 1), scale_factor=2.0, mode="nearest")
        return F.pixel_shuffle(self.up(torch.cat([a, b], 1)), 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the classic exporter, as foreign tools use
def test_foreign_unet_onnx_needing_a_size_multiple_works(tmp_path: Path, capfd) -> None:
    from paragonsr.infer.onnx_backend import OnnxBackend

    torch.manual_seed(0)
    model = _UNet().eval()
    path = tmp_path / "unet.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})  # fmt: skip
    backend = OnnxBackend(path, provider="cpu")
    assert (backend.scale, backend.size_multiple) == (2, 4)  # found by probing the graph
    assert "onnxruntime" not in capfd.readouterr().err  # the refused probe sizes print nothing
    x = torch.rand(1, 3, 13, 22)
    with torch.no_grad():
        want = model(F.pad(x, (0, 2, 0, 3), mode="replicate"))[..., :26, :44]
    assert torch.allclose(backend(x), want, atol=1e-5)
    assert OnnxBackend(path, provider="cpu", size_multiple=8).size_multiple == 8  # declared: not probed

    img = (np.random.default_rng(1).random((75, 57, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), img)
    for extra in ([], ["--tile", "32", "--tile-overlap", "8"], ["--size-multiple", "4"]):
        out = tmp_path / f"out{len(extra)}.png"
        assert main(["upscale", str(tmp_path / "in.png"), "-o", str(out), "-m", str(path), "-q", *extra]) == 0
        assert imread(str(out)).shape == (150, 114, 3)
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png"), "-m", str(path),
                 "--size-multiple", "0"]) == 2  # fmt: skip
    assert "--size-multiple must be a whole number of pixels in [1, 1024], got 0" in capfd.readouterr().err


def test_an_interrupt_inside_a_finalizer_is_raised_again_not_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import signal

    from paragonsr.utils.procs import Terminated, terminate_as_interrupt

    old_term, old_hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook

    class Finalized:
        def __del__(self) -> None:  # SIGTERM arriving while a finalizer runs (e.g. tqdm's)
            raise Terminated()

    try:
        terminate_as_interrupt()
        with pytest.raises(Terminated):
            Finalized()  # collected at once: its __del__ raises, Python would print and drop it
            deadline = time.monotonic() + 10  # the re-sent SIGTERM is raised here, in ordinary code
            while time.monotonic() < deadline:
                pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        sys.unraisablehook = old_hook
    assert "Exception ignored" not in capsys.readouterr().err
