"""DDP on CPU: torchrun with 2 gloo processes trains a few iterations; ranks see different data but their
weights (and ParagonSR2's tracked-kernel buffers) stay identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from conftest import imread, load_photo_crop

SCRIPT = """
import json, os, sys, torch
from paragonsr.train.option_io import parse_options
from paragonsr.train.trainer import Trainer
from paragonsr.train.distributed import cleanup
opt = parse_options(json.loads(open(sys.argv[1]).read()))
t = Trainer(opt, launcher="pytorch")
res = t.train()
rank = t.rank
torch.save({k: v.clone() for k, v in t.model.net_g.state_dict().items()}, f"{sys.argv[2]}/rank{rank}.pt")
json.dump([lo["l_pixel"] for lo in res.losses], open(f"{sys.argv[2]}/losses{rank}.json", "w"))
cleanup()
# native threads left once the group is destroyed (gloo's must be gone: alive, they meet interpreter shutdown)
tasks = "/proc/self/task"
names = [open(f"{tasks}/{t}/comm").read().strip() for t in os.listdir(tasks)] if os.path.isdir(tasks) else []
json.dump(names, open(f"{sys.argv[2]}/threads{rank}.json", "w"))
"""


def test_ddp_two_cpu_ranks_stay_identical(tmp_path: Path, photo_paths: list[Path]) -> None:
    for sub in ("gt", "lq"):
        (tmp_path / sub).mkdir()
    for p in photo_paths[:4]:
        h, w = imread(str(p)).shape[:2]
        gt = (load_photo_crop(p, 32, h // 2, w // 2) * 255).round().astype(np.uint8)[:, :, ::-1]
        cv2.imwrite(str(tmp_path / "gt" / f"{p.stem}.png"), gt)
        cv2.imwrite(
            str(tmp_path / "lq" / f"{p.stem}.png"), cv2.resize(gt, (16, 16), interpolation=cv2.INTER_AREA)
        )
    paired = {
        "type": "PairedImageDataset",
        "dataroot_gt": str(tmp_path / "gt"),
        "dataroot_lq": str(tmp_path / "lq"),
    }
    opt = {
        "name": "ddp",
        "scale": 2,
        "datasets": {"train": {**paired, "gt_size": 16, "batch_size_per_gpu": 1}},
        "network_g": {"type": "paragonsr2_nano"},
        "path": {"experiments_root": str(tmp_path / "exp")},
        "train": {
            "total_iter": 3,
            "optim_g": {"type": "Adam", "lr": 1e-3},
            "pixel_opt": {"type": "L1Loss"},
            "ema_decay": 0.9,
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 3, "use_tb_logger": False},
        "dist_params": {"backend": "nccl"},  # falls back to gloo without CUDA
    }
    (tmp_path / "opt.json").write_text(json.dumps(opt))
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port: parallel test workers must not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           str(tmp_path / "run.py"), str(tmp_path / "opt.json"), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert any("tracked_kernel" in k for k in w0)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    l0 = json.loads((tmp_path / "losses0.json").read_text())
    l1 = json.loads((tmp_path / "losses1.json").read_text())
    assert len(l0) == len(l1) == 3 and l0 != l1  # each rank trained on its own shard
    # destroy_process_group really stopped the gloo threads (nothing kept the group alive)
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"threads{rank}.json").read_text())
        assert not [t for t in threads if "gloo" in t], threads
    from paragonsr.checkpoint import load_state_dict

    saved, _ = load_state_dict(tmp_path / "exp" / "models" / "net_g_3.safetensors")  # written by rank 0 only
    assert all(torch.equal(saved[k], w0[k]) for k in saved)
    assert not (tmp_path / "exp" / "models" / "net_g_3.safetensors.tmp").exists()
