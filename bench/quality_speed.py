"""Quality versus CPU speed at ×2: PSNR-Y on a standard set against output megapixels/s measured on this machine.

    python bench/quality_speed.py --csv bench_x2/benchmark.csv --set Set5 -o docs/quality_speed_x2.png

Speed: every model is timed here, side by side and round-robin by ``bench/infer.py`` (fused where the model fuses,
each in its best precision among fp32 / fp32 channels_last / bf16 channels_last), on a ``--size``² LR input.
FSRCNN (Dong et al., ECCV 2016: d=56, s=12, m=4, 9×9 deconvolution) and VDSR (Kim et al., CVPR 2016: 20 3×3
convs of 64 channels on the bicubic-upscaled image) are timed with random weights, as their published layouts,
because only their speed is measured; their PSNR is the published one.

Quality: the project's models take their PSNR-Y from a ``paragonsr eval --benchmark`` CSV (``--csv``, columns
``set, method, psnr_y, ...``), matched by ``--method NAME=ARCH`` (e.g. ``default=paragonsr2_nano``); the
published rows below are quoted from the papers' ×2 tables.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import infer

# ×2 PSNR-Y, published: (Set5, Set14)
PUBLISHED = {"fsrcnn": {"Set5": 37.00, "Set14": 32.63}, "vdsr": {"Set5": 37.53, "Set14": 33.05}}


class FSRCNN(nn.Module):
    """FSRCNN(d=56, s=12, m=4) layout for timing: LR in, HR out (transposed 9×9 convolution, stride = scale)."""

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, d, 5, padding=2),
            nn.PReLU(d),
            nn.Conv2d(d, s, 1),
            nn.PReLU(s),
        ]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(self.body(x))


class VDSR(nn.Module):
    """VDSR layout for timing: bicubic upscale, then 20 3×3 convs (64 channels, ReLU) and a global residual."""

    def __init__(self, scale: int, depth: int = 20, feat: int = 64) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(3, feat, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(feat, feat, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(feat, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(up)


infer.MODELS.setdefault("fsrcnn", FSRCNN)
infer.MODELS.setdefault("vdsr", VDSR)


def best_speed(mps: dict[tuple[str, str, str], float], name: str) -> tuple[float, str]:
    """Fastest measured configuration of ``name`` (fused preferred where it exists): (MP/s, "mode precision")."""
    for mode in ("fused", "unfused"):
        cells = {p: v for (n, m, p), v in mps.items() if n == name and m == mode}
        if cells:
            prec = max(cells, key=cells.__getitem__)
            return cells[prec], f"{mode} {prec}"
    raise KeyError(f"no timing for {name}")


def read_psnr(path: Path, set_name: str) -> dict[str, float]:
    """method -> PSNR-Y for ``set_name`` from a ``paragonsr eval --benchmark`` CSV."""
    with path.open(newline="", encoding="utf-8") as f:
        return {r["method"]: float(r["psnr_y"]) for r in csv.DictReader(f) if r["set"] == set_name}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, action="append", default=[], help="benchmark.csv (repeatable)")
    ap.add_argument("--set", default="Set5", help="which set's PSNR to plot (default Set5)")
    ap.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="METHOD=ARCH",
        help="a CSV method and the bench/infer.py model that times it, e.g. default=paragonsr2_nano",
    )
    ap.add_argument("--size", type=int, default=256, help="LR input side for timing (default 256)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=Path("quality_speed_x2.png"))
    args = ap.parse_args(argv)

    psnr: dict[str, float] = {}
    for path in args.csv:
        psnr.update(read_psnr(path, args.set))
    pairs = [m.split("=", 1) for m in args.method]
    if any(len(p) != 2 for p in pairs):
        ap.error("--method takes METHOD=ARCH")
    missing = [m for m, _ in pairs if m not in psnr]
    if missing:
        ap.error(
            f"--method {missing}: not in the CSV rows of {args.set} ({', '.join(sorted(psnr)) or 'none'})"
        )
    archs = sorted({a for _, a in pairs} | set(PUBLISHED))
    timing = argparse.Namespace(
        archs=",".join(archs), size=args.size, batch=1, scale=2, repeats=args.repeats,
        precisions=",".join(infer.PRECISIONS), device="cpu", threads=args.threads, cpu_time=False,
        no_malloc_tuning=False, training_graph=False, breakdown=False, gflops=False,
    )  # fmt: skip
    mps = infer.run(timing)

    rows = [(m, best_speed(mps, a), psnr[m], "measured") for m, a in pairs]
    rows += [(n, best_speed(mps, n), p[args.set], "published") for n, p in PUBLISHED.items() if args.set in p]
    print(f"\n| model | {args.set} PSNR-Y (dB) | PSNR source | ×2 output MP/s ({args.size}² LR) | timed as |")
    print("|---|---:|---|---:|---|")
    for name, (speed, how), value, source in rows:
        print(f"| {name} | {value:.2f} | {source} | {speed:.2f} | {how} |")

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.set_xscale("log")
    for name, (speed, _), value, source in rows:
        ax.scatter(speed, value, marker="o" if source == "measured" else "s", s=48)
        ax.annotate(
            f"{name} ({source})", (speed, value), textcoords="offset points", xytext=(6, 4), fontsize=8
        )
    for ref in ("bicubic", "magic_sharp_2021"):
        if ref in psnr:
            ax.axhline(psnr[ref], color="grey", lw=0.8, ls="--")
            ax.annotate(ref, (0.01, psnr[ref]), xycoords=("axes fraction", "data"), fontsize=7, color="grey",
                        va="bottom")  # fmt: skip
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(
        f"×2 output megapixels/s on this CPU ({args.threads} threads, {args.size}² LR, best precision)"
    )
    ax.set_ylabel(f"{args.set} PSNR-Y (dB)")
    ax.set_title("Quality versus CPU speed, ×2")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
