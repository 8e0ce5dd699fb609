"""Nothing goes out: export, upscale (ONNX backend) and eval run with no network access and leave no telemetry.

One subprocess runs the three commands on a tiny model and image, with a fresh HOME and three independent
checks, each used when the machine allows it:

- Python: a ``sitecustomize`` records every ``socket.connect`` / ``getaddrinfo`` / ``create_connection`` call;
- native code (onnxruntime's telemetry is C++): ``strace`` records ``connect``/``sendto``/``sendmsg`` to an
  internet address (a DNS look-up shows as one to port 53) or to the name-service cache daemon;
- ``unshare -rn`` runs it in a network namespace with no interfaces, so that a call could not leave anyway.

And onnxruntime's telemetry store (``~/.cache/Microsoft/...``, written at import unless disabled) must not appear,
and no package that goes online by itself (hub clients, HTTP libraries, wandb, pyiqa) may be imported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = """
import os, socket
_LOG = os.environ["NET_LOG"]
def _record(what):
    with open(_LOG, "a") as f:
        f.write(what + "\\n")
_connect, _gai, _cc = socket.socket.connect, socket.getaddrinfo, socket.create_connection
def connect(self, address):
    if self.family != socket.AF_UNIX:
        _record(f"connect {address!r}")
    return _connect(self, address)
def getaddrinfo(host, *a, **k):
    _record(f"getaddrinfo {host!r}")
    return _gai(host, *a, **k)
def create_connection(address, *a, **k):
    _record(f"create_connection {address!r}")
    return _cc(address, *a, **k)
socket.socket.connect, socket.getaddrinfo, socket.create_connection = connect, getaddrinfo, create_connection
"""

DRIVER = """
import sys
from pathlib import Path
import numpy as np, torch
from paragonsr.archs import build_arch
from paragonsr.checkpoint import save_model
from paragonsr.cli import main
from paragonsr.io.files import write_image_native

torch.manual_seed(0)
tmp = Path(sys.argv[1])
ckpt = save_model(tmp / "2xTiny.safetensors", build_arch("compact", num_feat=8, num_conv=2, upscale=2))
rng = np.random.default_rng(0)
for i in range(2):
    write_image_native(tmp / "gt" / f"{i}.png", (rng.random((48, 48, 3)) * 255).astype(np.uint8))
rcs = [
    main(["export", str(ckpt), "-o", str(tmp / "rel"), "--latency-size", "0", "--crop", "24"]),
    main(["upscale", str(tmp / "gt" / "0.png"), "-o", str(tmp / "up.png"), "-m",
          str(tmp / "rel" / "2xTiny_fp32.onnx"), "--provider", "cpu", "-q"]),
    main(["eval", "--gt", str(tmp / "gt"), "--scale", "2", "--model", str(tmp / "rel" / "2xTiny_fp32.onnx"),
          "-o", str(tmp / "ev"), "--no-crops"]),
]
print("RCS", rcs)
# packages that talk to the network on their own (hub downloads, upload clients) must not even be imported
online = {"huggingface_hub", "transformers", "timm", "requests", "urllib3", "wandb", "pyiqa", "torchvision"}
print("ONLINE_MODULES", sorted(m for m in sys.modules if m.split(".")[0] in online))
"""

# connect/sendto/sendmsg to an internet address, or to nscd (the first step of a host name look-up)
_NET_SYSCALL = re.compile(r"(connect|sendto|sendmsg)\(.*(AF_INET6?|nscd)")


def _usable(cmd: list[str]) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    try:
        return subprocess.run([*cmd, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_export_upscale_eval_make_no_network_call_and_write_no_telemetry(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    home, work, site = tmp_path / "home", tmp_path / "work", tmp_path / "site"
    for d in (home, work, site):
        d.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "driver.py").write_text(DRIVER)
    net_log, strace_log = tmp_path / "net.log", tmp_path / "strace.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "PARAGONSR_"))}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        MPLCONFIGDIR=str(home / ".mpl"),
        NET_LOG=str(net_log),
        PYTHONPATH=os.pathsep.join([str(site), str(REPO / "src")]),
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, str(tmp_path / "driver.py"), str(work)]
    used = ["sitecustomize socket hooks"]
    if _usable(["strace", "-f", "-qq", "-e", "trace=connect"]):
        cmd = ["strace", "-f", "-qq", "-e", "signal=none", "-e", "trace=connect,sendto,sendmsg",
               "-o", str(strace_log), *cmd]  # fmt: skip
        used.append("strace")
    if _usable(["unshare", "-rn"]):
        cmd = ["unshare", "-rn", *cmd]
        used.append("unshare -rn")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "RCS [0, 0, 0]" in res.stdout, (
        used,
        res.stdout[-2000:],
        res.stderr[-3000:],
    )
    assert (work / "up.png").is_file() and (work / "ev" / "report.md").is_file()
    assert "ONLINE_MODULES []" in res.stdout, res.stdout[-1000:]
    calls = net_log.read_text().splitlines() if net_log.exists() else []
    assert calls == [], f"Python-level network calls: {calls[:5]}"
    if strace_log.exists():
        native = [ln for ln in strace_log.read_text().splitlines() if _NET_SYSCALL.search(ln)]
        assert native == [], f"network syscalls: {native[:5]}"
    telemetry = sorted(str(p.relative_to(home)) for p in home.rglob("*") if "Microsoft" in str(p))
    assert telemetry == [], f"onnxruntime telemetry files: {telemetry}"
