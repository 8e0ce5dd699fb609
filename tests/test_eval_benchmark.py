"""`paragonsr eval --benchmark`: the bicubic table against an independent computation, errors, real Set5."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import matlab_imresize_ref as ref
from paragonsr.cli import main

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"


def _y(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma (BT.601, [16, 235]) of an RGB uint8-range array, unrounded."""
    img = img.astype(np.float64) / 255.0
    return 16.0 + 65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM as the MATLAB script: 11x11 Gaussian (sigma 1.5), 'valid' borders, [0, 255] data."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T

    def f(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, win)[5:-5, 5:-5]

    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    return float(
        np.mean(((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2)))
    )


def _bicubic_scores(hr_rgb: np.ndarray, scale: int) -> tuple[float, float]:
    """Independent protocol: mod-crop, MATLAB bicubic down and up (uint8), PSNR/SSIM on Y with border = scale."""
    h, w = hr_rgb.shape[:2]
    hr = hr_rgb[: h - h % scale, : w - w % scale]
    sr = ref.imresize(ref.imresize(hr, 1 / scale), float(scale))
    b = scale
    y_sr, y_hr = _y(sr)[b:-b, b:-b], _y(hr)[b:-b, b:-b]
    psnr = 10 * math.log10(255.0**2 / np.mean((y_sr - y_hr) ** 2))
    return psnr, _ssim(y_sr, y_hr)


def _make_set(folder: Path, sizes: list[tuple[int, int]], seed: int) -> list[np.ndarray]:
    """Smooth random colour images with some edges (so SR is not trivial); returns them as RGB uint8."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    images = []
    for i, (h, w) in enumerate(sizes):
        small = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
        img: np.ndarray = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        img[h // 3 :, w // 2 :] *= 0.4  # a hard edge
        rgb = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"im{i}.png"), rgb[..., ::-1])
        images.append(rgb)
    return images


def test_benchmark_csv_matches_independent_bicubic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set5 = _make_set(tmp_path / "Set5", [(41, 37), (36, 50)], seed=0)  # named like a published set
    tiny = _make_set(tmp_path / "tiny", [(45, 39)], seed=1)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--benchmark",
        str(tmp_path / "Set5"),
        "--benchmark",
        str(tmp_path / "tiny"),
        "--scale",
        "2",
    ]
    assert main([*argv, "--resampler", "magic_sharp_2021", "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "benchmark.csv").read_text().splitlines()))
    assert list(rows[0]) == [
        "set",
        "method",
        "psnr_y",
        "ssim_y",
        "n",
        "niqe",
    ]  # NIQE (project fit): no weights
    assert [(r["set"], r["method"], r["n"]) for r in rows] == [
        (s, m, n) for s, n in (("Set5", "2"), ("tiny", "1")) for m in ("bicubic", "magic_sharp_2021")
    ]
    for name, images in (("Set5", set5), ("tiny", tiny)):
        want = np.mean([_bicubic_scores(im, 2) for im in images], axis=0)
        got = next(r for r in rows if r["set"] == name and r["method"] == "bicubic")
        assert float(got["psnr_y"]) == pytest.approx(want[0], abs=1e-4)
        assert float(got["ssim_y"]) == pytest.approx(want[1], abs=1e-5)
    by = {(r["set"], r["method"]): float(r["psnr_y"]) for r in rows}
    md = (out / "report.md").read_text()
    assert "| method | Set5 | tiny |" in md
    assert f"| bicubic | {by['Set5', 'bicubic']:.2f} / " in md
    # published rows only for the sets evaluated, marked as published, with a source line
    assert "| *FSRCNN (published)* | *37.00* | – |" in md and "- FSRCNN (published): Dong et al." in md
    assert (out / "per_set" / "tiny" / "per_image.csv").is_file()
    assert "table:" in capsys.readouterr().out


def test_benchmark_packaged_default_model_row(tmp_path: Path) -> None:
    _make_set(tmp_path / "one", [(40, 44)], seed=3)
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", str(tmp_path / "one"), "--model", "default", "-o", str(out)]) == 0
    rows = {r["method"]: float(r["psnr_y"]) for r in csv.DictReader((out / "benchmark.csv").open())}
    assert list(rows) == ["bicubic", "default"] and rows["default"] > rows["bicubic"] + 0.5


def test_models_with_the_same_file_name_get_their_own_rows(tmp_path: Path) -> None:
    import torch

    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    _make_set(tmp_path / "one", [(40, 44), (36, 36)], seed=4)
    files = []
    for run, alpha in (("run_a", 0.0), ("run_b", 1.0)):  # two differently behaving models, same file name
        torch.manual_seed(0)
        net = build_arch("paragonsr2_nano", scale=2, upsampler_alpha=alpha)
        files.append(save_model(tmp_path / run / "models" / "net_g_ema_100.safetensors", net))
    out = tmp_path / "out"
    args = ["eval", "--benchmark", str(tmp_path / "one"), "-o", str(out)]
    assert main([*args, "--model", str(files[0]), "--model", str(files[1]), "--model", str(files[0])]) == 0
    rows = [(r["method"], r["n"], r["psnr_y"]) for r in csv.DictReader((out / "benchmark.csv").open())]
    names = [n for n, _, _ in rows]
    assert names == ["bicubic", "run_a/models/net_g_ema_100", "run_b/models/net_g_ema_100",
                     "run_a/models/net_g_ema_100 (2)"]  # fmt: skip
    assert all(n == "2" for _, n, _ in rows)  # each row scores the set's 2 images once, nothing merged
    assert rows[1][2] != rows[2][2] and rows[1][2] == rows[3][2]


def test_benchmark_at_x3_has_no_x2_published_rows(tmp_path: Path) -> None:
    images = _make_set(tmp_path / "Set14", [(40, 43)], seed=2)
    out = tmp_path / "out"
    assert main(["eval", "--benchmark", str(tmp_path / "Set14"), "--scale", "3", "-o", str(out)]) == 0
    row = next(csv.DictReader((out / "benchmark.csv").read_text().splitlines()))
    assert float(row["psnr_y"]) == pytest.approx(_bicubic_scores(images[0], 3)[0], abs=1e-4)
    md = (out / "report.md").read_text()
    assert "*Bicubic (published)* | *27.55*" in md and "FSRCNN" not in md


def test_benchmark_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "Set5"
    assert main(["eval", "--benchmark", str(missing), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --benchmark: benchmark folder not found: {missing}\n"
    assert not (tmp_path / "o").exists()
    assert main(["eval", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "error: give --gt FOLDER or --benchmark FOLDER\n"


def test_benchmark_unreadable_image_is_listed_and_the_rest_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _make_set(tmp_path / "bad", [(40, 44)], seed=4)
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    _make_set(tmp_path / "allbad", [], seed=5)
    (tmp_path / "allbad" / "x.png").write_bytes(b"")
    out = tmp_path / "out"
    argv = [
        "eval",
        "--benchmark",
        str(tmp_path / "bad"),
        "--benchmark",
        str(tmp_path / "allbad"),
        "-o",
        str(out),
    ]
    assert main(argv) == 1
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    assert [(r["set"], r["n"]) for r in rows] == [
        ("bad", "1")
    ]  # no NaN row for the set with nothing readable
    md = (out / "report.md").read_text()
    assert "Not scored (2 image(s)" in md and "broken.png" in md and "x.png" in md
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "error: 2 image(s) could not be scored (listed in the report)"
    )


def test_real_set5_bicubic_reproduces_published_x2() -> None:
    set5 = BENCHMARKS / "Set5"
    if not set5.is_dir():
        pytest.skip(f"benchmark images not found at {set5}")
    from paragonsr.benchmark import matlab_bicubic_lr, matlab_bicubic_method
    from paragonsr.evaluate import mod_crop, quantize8
    from paragonsr.io.files import list_images
    from paragonsr.io.image_io import read_image, to_rgb
    from paragonsr.metrics import calculate_psnr

    bicubic = matlab_bicubic_method(2)
    scores = []
    for path in list_images(set5, recursive=False):
        hr = mod_crop(to_rgb(read_image(path)[0]), 2)
        sr = bicubic.run(matlab_bicubic_lr(hr, 2))
        scores.append(calculate_psnr(quantize8(sr), quantize8(hr), crop_border=2, test_y_channel=True))
    assert len(scores) == 5
    assert abs(np.mean(scores) - 33.66) < 0.1  # the published Bicubic x2 Set5 figure
