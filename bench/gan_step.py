"""CPU cost of one GAN training iteration, part by part, for committed GAN configs (fp32, and bf16 where native).

Each recipe is a training option file (default: the shipped ``configs/2x_ParagonSR2_Nano_perceptual.yml`` and the
CPU recipe ``configs/2x_ParagonSR2_Nano_perceptual_default.yml``) built into the real :class:`GANModel` with its
losses, MUNet and optimizers; only the data folder (``--data``, loaded in this process, image cache filled first),
the start weights (random: the cost does not depend on them) and the backbone weights (random when absent: same
cost) differ from a training run. One iteration is replayed in the model's own order, each part timed alone in
process CPU seconds (``time.process_time``: on a shared machine wall time mostly measures the neighbours):

* ``data``: making the batch with the config's OTF dataset (crop, flips, its degradation pipeline);
* ``G forward`` / ``G backward``: the generator (the backward from the summed loss gradient at its output);
* ``pixel losses``: L1, MS-SSIM, focal frequency, consistency ... forward + backward to the output;
* ``perceptual backbone``: frozen-network losses (LPIPS, VGG, DISTS ...) forward on both images + backward;
* ``MUNet G side``: the adversarial term of the G step (D on real without grad, on fake with grad to the input);
* ``MUNet D step``: D forward on real + fake and backward, on a step without penalties;
* ``R1/R2``: the extra cost of a penalised D step (double backward), and that divided by ``lazy_interval``;
* ``optimizers + EMA``: clipping, AdamW steps of G and D, the EMA update.

``total`` sums the parts with the penalty amortised; ``check: trainer step`` times ``GANModel.optimize_parameters``
as a whole on a plain iteration, plus the data and amortised R1/R2 rows: it should match ``total``.
``h for 1000 it`` assumes the 2 cores of the CI machine run 2 CPU-s per second (the loader worker beside the step).
Recipes and precisions are interleaved round by round and the median of the rounds is reported.

    python bench/gan_step.py [--config CFG ...] [--force KEY=VALUE ...] [--precision fp32 bf16] [--rounds 2]
                             [--threads 1] [--data PHOTOS]
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from paragonsr.infer.backends import cpu_has_native_bf16
from paragonsr.losses.backbones import FrozenNet
from paragonsr.train.gan_model import GANModel
from paragonsr.train.option_io import apply_force, parse_options, read_yaml
from paragonsr.train.options import Options
from paragonsr.utils.malloc import tune_malloc

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (
    REPO / "configs/2x_ParagonSR2_Nano_perceptual.yml",
    REPO / "configs/2x_ParagonSR2_Nano_perceptual_default.yml",
)
PARTS = ("data", "G forward", "pixel losses", "perceptual backbone", "MUNet G side", "G backward",
         "MUNet D step", "R1/R2 when due", "R1/R2 amortised", "optimizers + EMA")  # fmt: skip
SUMMED = [p for p in PARTS if p != "R1/R2 when due"]


def recipe_options(config: Path, data: Path, precision: str, force: list[str]) -> Options:
    """The config as a training run would see it, but: training data = ``data`` (no meta_info, loaded in this
    process), no validation sets, random start weights, random backbones (``pretrained: false``), and the
    precision forced (fp32 = no autocast, NCHW; bf16 = bf16 autocast + channels_last)."""
    raw = read_yaml(config)
    raw["datasets"] = {"train": raw["datasets"]["train"]}
    tr = raw["datasets"]["train"]
    tr.update(dataroot_gt=str(data), meta_info=None, num_worker_per_gpu=0)
    raw.setdefault("path", {}).update(pretrain_network_g=None, pretrain_network_d=None)
    raw["val"], raw["logger"] = None, {"use_tb_logger": False}
    bf16 = precision == "bf16"
    raw["train"].update(use_amp=bf16, amp_bf16=True, use_channels_last=bf16)
    raw = apply_force(raw, force)
    _randomise_backbones(raw["train"])
    return parse_options(raw, source=str(config))


def _randomise_backbones(train: dict[str, Any]) -> None:
    from paragonsr.registry import LOSS_REGISTRY

    for key, loss in list(train.items()):
        if not (key.endswith("_opt") and isinstance(loss, dict) and "type" in loss):
            continue
        if "pretrained" in inspect.signature(LOSS_REGISTRY.get(loss["type"])).parameters:
            loss["pretrained"] = False  # a frozen backbone costs the same with random weights


def is_backbone_loss(loss: torch.nn.Module) -> bool:
    return any(
        isinstance(m, FrozenNet) or m.__class__.__name__.endswith("FeatureExtractor") for m in loss.modules()
    )


class Recipe:
    """One config at one precision: its GANModel, its dataset, and a per-part clock."""

    def __init__(self, label: str, opt: Options) -> None:
        from paragonsr.data.build import build_dataset

        self.label, self.opt = label, opt
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "RANDOM backbone": intended here
            self.model = GANModel(opt, torch.device("cpu"))
        self.ds = build_dataset(opt, "train", seed=0)
        self.ds.fill_cache()  # as `paragonsr train` does before its workers start: timed rows crop, not decode
        self.batch_size = opt.datasets["train"].batch_size_per_gpu
        self.lazy = int(getattr(self.model.gan_loss, "lazy_interval", 1))
        self.penalised = any(getattr(self.model.gan_loss, a, 0) > 0 for a in ("r1_gamma", "r2_gamma"))
        self.pos = 0
        self.it = 1

    def next_batch(self) -> dict[str, Any]:
        items = [self.ds[(0, (self.pos + i) % len(self.ds))] for i in range(self.batch_size)]
        self.pos += self.batch_size
        keys = [k for k in ("gt", "lq", "gt_usm") if k in items[0]]
        return {k: torch.stack([x[k] for x in items]) for k in keys}

    def parts(self) -> dict[str, float]:
        """One iteration in GANModel's order, each part timed alone (CPU seconds)."""
        m, t = self.model, defaultdict[str, float](float)

        @contextlib.contextmanager
        def clock(name: str) -> Iterator[None]:
            c0 = time.process_time()
            yield
            t[name] += time.process_time() - c0

        with clock("data"):
            b = m.to_device(self.next_batch())
        m._set_d_grad(False)
        m.optimizer_g.zero_grad(set_to_none=True)
        with clock("G forward"), m.autocast():
            sr = m.net_g(b["lq"])
        sr = sr.float()
        out = sr.detach().requires_grad_(True)
        for _name, loss, target in m.losses:
            with clock("perceptual backbone" if is_backbone_loss(loss) else "pixel losses"):
                loss(out, b.get(target, b["gt"]), lq=b["lq"]).backward()
        real = b.get(m.gan_target, b["gt"])
        with clock("MUNet G side"):
            with m._d_autocast():
                l_g = m.gan_loss.g_loss(m.net_d, real, out)
            l_g.backward()
        with clock("G backward"):
            sr.backward(out.grad)
        with clock("optimizers + EMA"):
            m._finish_step(list(m.net_g.parameters()), m.optimizer_g, m.net_g, True)
            if m.ema is not None:
                m.ema.update(m.net_g)
        m._set_d_grad(True)
        fake = out.detach()
        for name, step in (("MUNet D step", 1), ("R1/R2 when due", 0)):
            if name.startswith("R1") and not self.penalised:
                continue
            m.optimizer_d.zero_grad(set_to_none=True)
            with clock(name):
                with m._d_autocast():
                    l_d, _ = m.gan_loss.d_loss(m.net_d, real, fake, step=step)
                l_d.backward()
        t["R1/R2 when due"] = max(t["R1/R2 when due"] - t["MUNet D step"], 0.0) if self.penalised else 0.0
        t["R1/R2 amortised"] = t["R1/R2 when due"] / self.lazy
        with clock("optimizers + EMA"):
            m._finish_step(list(m.net_d.parameters()), m.optimizer_d, m.net_d, True)
        return dict(t)

    def trainer_step(self) -> float:
        """``GANModel.optimize_parameters`` as a whole on a plain (not penalised) iteration, CPU seconds."""
        b = self.model.to_device(self.next_batch())
        self.it += 1
        if self.penalised and self.it % self.lazy == 0:
            self.it += 1
        c0 = time.process_time()
        self.model.optimize_parameters([b], self.it)
        return time.process_time() - c0


def describe(opt: Options) -> str:
    tr = opt.datasets["train"]
    d = opt.network_d.kwargs() if opt.network_d is not None else {}
    gan = next(
        (lo for lo in opt.train.losses if lo.type.lower().startswith(("r3gan", "gan", "rahinge"))), None
    )
    lazy = gan.kwargs().get("lazy_interval", 1) if gan is not None else "-"
    deg = getattr(tr, "degradation", "paired")
    return (f"batch {tr.batch_size_per_gpu}, GT {tr.gt_size}, {deg}, MUNet {d.get('num_feat', 64)}, lazy R1/R2 "
            f"{lazy}, losses: {', '.join(lo.type for lo in opt.train.losses)}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, nargs="+", default=list(CONFIGS), help="GAN option files to cost")
    ap.add_argument("--force", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                    help="override options of every config, e.g. network_d.num_feat=24")  # fmt: skip
    native = cpu_has_native_bf16()
    ap.add_argument("--precision", nargs="+", choices=("fp32", "bf16"),
                    default=["fp32", "bf16"] if native else ["fp32"],
                    help="bf16 only makes sense on a CPU with native bf16 (default: fp32, + bf16 when native)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    default_data = os.environ.get("PARAGONSR_PHOTOS", REPO.parent / "shared/data/photos")
    ap.add_argument("--data", type=Path, default=Path(default_data), help="HR photo folder")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        ap.error(f"--data {args.data}: not a folder of HR photos (set PARAGONSR_PHOTOS)")
    malloc = tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipes = []
    for cfg in args.config:
        for prec in args.precision:
            opt = recipe_options(cfg, args.data, prec, args.force)
            recipes.append(Recipe(f"{cfg.stem.removeprefix('2x_ParagonSR2_Nano_')} {prec}", opt))
            print(f"{recipes[-1].label}: {describe(opt)}", flush=True)
    for r in recipes:  # warm-up: allocator, oneDNN primitive caches, the double-backward probe
        r.parts()
    rows: dict[str, dict[str, list[float]]] = {r.label: defaultdict(list) for r in recipes}
    for rnd in range(args.rounds):
        for r in recipes:
            for k, v in r.parts().items():
                rows[r.label][k].append(v)
            rows[r.label]["trainer step"].append(r.trainer_step())
            print(f"round {rnd + 1}/{args.rounds}: {r.label} done", flush=True)
    med = {lab: {k: statistics.median(v) for k, v in d.items()} for lab, d in rows.items()}
    load = os.getloadavg()[0]
    print(f"\nCPU-s per iteration (median of {args.rounds} rounds), {torch.get_num_threads()} thread(s), "
          f"malloc tuning: {malloc}, native bf16: {native}, load average {load:.1f} on {os.cpu_count()} cores")  # fmt: skip
    labels = [r.label for r in recipes]
    width = max(14, *(len(lab) for lab in labels))
    print(f"{'part':>22} " + " ".join(f"{lab:>{width}}" for lab in labels))
    for part in PARTS:
        print(f"{part:>22} " + " ".join(f"{med[lab].get(part, 0.0):>{width}.3f}" for lab in labels))
    totals = {lab: sum(med[lab].get(p, 0.0) for p in SUMMED) for lab in labels}
    print(f"{'total':>22} " + " ".join(f"{totals[lab]:>{width}.3f}" for lab in labels))
    check = {lab: med[lab]["trainer step"] + med[lab]["data"] + med[lab]["R1/R2 amortised"] for lab in labels}
    print(f"{'check: trainer step':>22} " + " ".join(f"{check[lab]:>{width}.3f}" for lab in labels))
    gan = ("MUNet G side", "MUNet D step", "R1/R2 amortised")
    print(
        f"{'MUNet + R1/R2 share':>22} "
        + " ".join(f"{sum(med[lab][p] for p in gan) / totals[lab]:>{width}.0%}" for lab in labels)
    )
    print(
        f"{'backbone share':>22} "
        + " ".join(f"{med[lab].get('perceptual backbone', 0.0) / totals[lab]:>{width}.0%}" for lab in labels)
    )
    print(
        f"{'h for 1000 it, 2 cores':>22} "
        + " ".join(f"{totals[lab] * 1000 / 2 / 3600:>{width}.2f}" for lab in labels)
    )
    print(
        f"{'it in 3 h, 2 cores':>22} "
        + " ".join(f"{3 * 3600 * 2 / totals[lab]:>{width}.0f}" for lab in labels)
    )
    for lab in labels:  # each recipe against the first config at the same precision
        base = next(b for b in labels if b.split()[-1] == lab.split()[-1])
        if base != lab:
            print(f"{lab}: {totals[base] / totals[lab]:.1f}x cheaper per iteration than {base}")


if __name__ == "__main__":
    main()
