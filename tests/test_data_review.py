"""Review regressions for the data tools and transfer CLI: silent data loss, mixed reports, wrong verdicts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from paragonsr.cli import main
from paragonsr.data.filter import load_config, run_filter
from paragonsr.data.tiles import extract_tiles, list_images


def _write(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)
    return a


def test_duplicate_gate_metric_is_rejected(tmp_path: Path) -> None:
    # two gates on one metric shared one status column: a tile failing the first gate came out as "pass"
    cfg = tmp_path / "g.yml"
    cfg.write_text("gates:\n  - {metric: entropy, min: 4.0}\n  - {metric: entropy, max: 7.99}\n")
    with pytest.raises(ValueError, match=r"gates\[1\] repeats metric 'entropy'.*gates\[0\]"):
        load_config(cfg)


def test_resume_with_other_tile_size_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 128, 128, 0)
    out = tmp_path / "r.csv"
    run_filter(tmp_path / "in", out, load_config(None, tile={"size": 64}), progress=False, plots=False)
    # before: the (0, 0) tile counted as done, so the 128-px run scored nothing and mixed two sizes in one report
    with pytest.raises(ValueError, match=r"tile size 128.*--restart"):
        run_filter(tmp_path / "in", out, load_config(None, tile={"size": 128}), progress=False, plots=False)
    res = run_filter(
        tmp_path / "in", out, load_config(None, tile={"size": 128}), restart=True, progress=False, plots=False
    )
    assert [(r["h"], r["w"]) for r in res.rows] == [("128", "128")]


def test_extract_tiles_same_names_are_not_lost(tmp_path: Path) -> None:
    src = tmp_path / "in"
    a = _write(src / "a" / "x.png", 64, 64, 1)
    b = _write(src / "b" / "x.png", 64, 64, 2)
    _write(src / "b" / "x.tif", 64, 64, 3)  # same stem in the same folder: its tiles would overwrite x.png's
    out = tmp_path / "out"
    n, errors = extract_tiles(list_images(src), out, crop=64, step=64, progress=False, root=src)
    assert n == 2
    assert np.array_equal(cv2.imread(str(out / "a" / "x_s001.png")), a)
    assert np.array_equal(cv2.imread(str(out / "b" / "x_s001.png")), b)
    assert len(errors) == 1 and "x.tif" in errors[0] and "overwrite" in errors[0]
    # without root (a flat list from two folders) the clash is reported too, not silently "resumed"
    n, errors = extract_tiles(list_images(src), tmp_path / "flat", crop=64, step=64, progress=False)
    assert n == 1 and len(errors) == 2
    # the CLI mirrors sub-folders
    assert main(["data", "extract-tiles", "--input", str(src / "a"), "--out", str(tmp_path / "c"),
                 "--crop", "64", "--step", "64", "--workers", "1"]) == 0  # fmt: skip
    assert (tmp_path / "c" / "x_s001.png").is_file()


@pytest.mark.parametrize(
    "tool",
    [
        ["extract-tiles", "--crop", "64"],
        ["meta-info"],
        ["subset", "--n", "3"],
    ],
)
def test_empty_input_folder_is_an_error(tool: list[str], tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / ("m.txt" if tool[0] == "meta-info" else "o"))
    assert main(["data", tool[0], *tool[1:], "--input", str(tmp_path / "empty"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and str(tmp_path / "empty") in err


def test_transfer_bad_samples_fail_cleanly(tmp_path: Path, capsys) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    out = tmp_path / "t.safetensors"
    base = ["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "1", "--samples"]
    assert main([*base, str(tmp_path / "nope.png")]) == 1
    assert "nope.png not found" in capsys.readouterr().err
    (tmp_path / "s").mkdir()
    assert main([*base, str(tmp_path / "s")]) == 1  # empty folder: was a ZeroDivisionError
    (tmp_path / "s" / "bad.png").write_bytes(b"junk")
    assert main([*base, str(tmp_path / "s")]) == 1  # undecodable: was a traceback
    assert "bad.png" in capsys.readouterr().err
    assert not out.exists()  # nothing written before the inputs are known good


def test_cli_filter_tile_override_is_validated(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    out = tmp_path / "r.csv"
    args = ["data", "filter", "--input", str(tmp_path / "in"), "--out", str(out), "--workers", "1"]
    # a config file with tile.size 16 is refused; the --tile override used to get through and crash mid-run
    assert main([*args, "--tile", "16"]) == 2
    assert "--tile must be >= 32" in capsys.readouterr().err
    assert not out.exists()


def test_niqe_auto_threshold_needs_the_tile_size_it_was_measured_at(
    photo_crop: np.ndarray, tmp_path: Path
) -> None:
    from paragonsr.data.filter.niqe import NIQEModel

    img = (photo_crop * 255).round().astype(np.uint8)  # 128x128 RGB
    model = NIQEModel.fit([img, img[::-1].copy()], patch=32, tile=64, max_tiles=4)
    model.save(tmp_path / "n.npz")
    assert NIQEModel.load(tmp_path / "n.npz").tile == 64
    # scores grow as tiles shrink, so a p95 measured on 64-px tiles is no threshold for 128-px tiles
    with pytest.raises(ValueError, match=r"64-px tiles.*128 px.*niqe-fit --tile 128"):
        load_config(None, niqe_model=str(tmp_path / "n.npz"), tile={"size": 128})
    cfg = load_config(None, niqe_model=str(tmp_path / "n.npz"), tile={"size": 64})
    assert cfg.gates[5].max == pytest.approx(model.tile_p95)
    # the CLI's --tile override is checked too (it used to be applied after 'auto' was resolved)
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    args = ["data", "filter", "--input", str(tmp_path / "in"), "--workers", "1", "--no-plots"]
    args += ["--niqe-model", str(tmp_path / "n.npz")]
    assert main([*args, "--out", str(tmp_path / "a.csv")]) == 2  # default 256-px tiles
    assert main([*args, "--out", str(tmp_path / "b.csv"), "--tile", "64"]) == 0


def test_gate_direction_without_threshold_is_not_ignored() -> None:
    from paragonsr.data.filter.gates import parse_gate

    # 'direction' was accepted and silently ignored next to min/max; threshold overwrote min without a word
    with pytest.raises(ValueError, match=r"gates\[2\]: 'direction' only applies to 'threshold'"):
        parse_gate({"metric": "entropy", "min": 4.0, "direction": "lower"}, "gates[2]")
    with pytest.raises(ValueError, match="either threshold"):
        parse_gate({"metric": "entropy", "min": 4.0, "threshold": 5.0}, "gates[0]")
    assert parse_gate({"metric": "entropy", "threshold": 5.0}, "g").min == 5.0


def test_meta_info_on_a_symlinked_subset(tmp_path: Path) -> None:
    from paragonsr.data.meta_info import read_meta_info

    for i in range(3):
        _write(tmp_path / "DIV2K" / f"{i:04d}.png", 8, 8, i)
    # seed 002's flow: subset (symlinks by default), then meta_info over the subset; symlinks used to be
    # followed to their targets, which lie outside the subset root -> "not inside its root"
    assert (
        main(["data", "subset", "--input", str(tmp_path / "DIV2K"), "--n", "2", "--out", str(tmp_path / "s")])
        == 0
    )
    out = tmp_path / "meta.txt"
    assert main(["data", "meta-info", "--input", str(tmp_path / "s" / "DIV2K"), "--out", str(out)]) == 0
    lines = read_meta_info(out)
    assert len(lines) == 2 and all(ln.startswith("DIV2K/") for ln in lines)
    assert all((tmp_path / "s" / ln).is_symlink() for ln in lines)


def test_subset_rerun_with_another_seed_is_refused(tmp_path: Path) -> None:
    from paragonsr.data.subset import make_subset

    for i in range(6):
        _write(tmp_path / "in" / f"{i}.png", 4, 4, i)
    out = tmp_path / "out"
    first = make_subset([tmp_path / "in"], out, n=[2], seed=0)
    assert make_subset([tmp_path / "in"], out, n=[2], seed=0).skipped_existing == 2  # resume: same subset
    # another seed used to add its picks next to the old ones: OUT held up to 4 images for --n 2
    with pytest.raises(ValueError, match=r"already holds \d image\(s\) that are not in this subset"):
        make_subset([tmp_path / "in"], out, n=[2], seed=1)
    assert len(list((out / "in").iterdir())) == 2 and first.written == 2


def test_resume_with_other_stride_drops_off_grid_rows(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 128, 128, 0)
    out = tmp_path / "r.csv"
    fine = load_config(None, tile={"size": 64, "stride": 32})
    assert len(run_filter(tmp_path / "in", out, fine, progress=False, plots=False).rows) == 9
    coarse = load_config(None, tile={"size": 64, "stride": 64})
    res = run_filter(tmp_path / "in", out, coarse, progress=False, plots=False)
    # the 5 rows at offset 32 are not on the stride-64 grid: they used to stay in the report and the summary
    assert sorted((int(r["y"]), int(r["x"])) for r in res.rows) == [(0, 0), (0, 64), (64, 0), (64, 64)]
    assert "5 tile row(s) from an earlier run with another stride dropped" in res.summary


def test_resume_with_changed_threshold_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    out = tmp_path / "r.csv"

    def cfg(lo: float):
        return load_config(None, tile={"size": 64}, gates=[{"metric": "entropy", "min": lo}])

    assert (
        run_filter(tmp_path / "in", out, cfg(4.0), progress=False, plots=False).rows[0]["verdict"] == "pass"
    )
    assert (
        run_filter(tmp_path / "in", out, cfg(4.0), progress=False, plots=False).rows[0]["verdict"] == "pass"
    )
    # same columns, other threshold: every tile counted as done and kept its old verdict
    with pytest.raises(ValueError, match=r"other gates, thresholds.*--restart"):
        run_filter(tmp_path / "in", out, cfg(7.99), progress=False, plots=False)
    res = run_filter(tmp_path / "in", out, cfg(7.99), restart=True, progress=False, plots=False)
    assert res.rows[0]["verdict"] == "fail"  # random noise: entropy just under 8 bits


def test_transfer_reports_psnr_on_bundled_samples_by_default(tmp_path: Path) -> None:
    import json

    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    out = tmp_path / "t.safetensors"
    # issue 6: the report gives the PSNR against the source's outputs; it used to need an explicit --samples
    assert (
        main(["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "2", "--crop", "16"]) == 0
    )
    rep = json.loads(Path(f"{out}.report.json").read_text())
    assert len(rep["psnr_per_image"]) >= 1 and rep["psnr_dst_vs_src_mean"] > 0
    assert main(["transfer", "-i", str(ckpt), "-o", str(out), "--feat", "2", "--conv", "2", "--samples"]) == 0
    assert "psnr_per_image" not in json.loads(Path(f"{out}.report.json").read_text())


def test_niqe_fit_bad_file_makes_exit_non_zero(photo_crop: np.ndarray, tmp_path: Path) -> None:
    img = (photo_crop * 255).round().astype(np.uint8)
    (tmp_path / "in").mkdir()
    assert cv2.imwrite(str(tmp_path / "in" / "a.png"), img[..., ::-1])
    (tmp_path / "in" / "b.png").write_bytes(b"junk")
    args = ["data", "niqe-fit", "--input", str(tmp_path / "in"), "--patch", "32", "--tile", "64"]
    # docs: every data tool reports a bad file and exits non-zero; niqe-fit used to exit 0
    assert main([*args, "--out", str(tmp_path / "n.npz")]) == 1
    assert (tmp_path / "n.npz").is_file()  # the model from the good images is still written


def test_filter_keep_dir_same_stem_tiles_do_not_overwrite(tmp_path: Path) -> None:
    a = _write(tmp_path / "in" / "x.png", 64, 64, 0)
    b = _write(tmp_path / "in" / "x.bmp", 64, 64, 1)
    cfg = load_config(None, tile={"size": 64}, gates=[{"metric": "contrast", "min": 0.01}])
    run_filter(tmp_path / "in", tmp_path / "r.csv", cfg, keep_dir=tmp_path / "k", progress=False, plots=False)
    # both used to be saved as k/x_y0_x0.png, the second overwriting the first
    kept = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert kept == ["x_bmp_y0_x0.png", "x_png_y0_x0.png"]
    assert np.array_equal(cv2.imread(str(tmp_path / "k" / "x_png_y0_x0.png")), a)
    assert np.array_equal(cv2.imread(str(tmp_path / "k" / "x_bmp_y0_x0.png")), b)


def test_outputs_never_overwrite_or_nest_in_inputs(tmp_path: Path) -> None:
    from paragonsr.archs import build_arch
    from paragonsr.checkpoint import save_model

    ckpt = save_model(tmp_path / "c.safetensors", build_arch("compact", num_feat=4, num_conv=1, upscale=2))
    before = ckpt.read_bytes()
    assert main(["transfer", "-i", str(ckpt), "-o", str(ckpt), "--feat", "2", "--samples"]) == 1
    assert ckpt.read_bytes() == before  # the source checkpoint used to be replaced by the transferred one
    _write(tmp_path / "in" / "a.png", 64, 64, 0)
    tiles = ["--crop", "32", "--step", "32", "--workers", "1"]
    # tiles inside the input folder would be tiled again by the next run
    assert (
        main(
            [
                "data",
                "extract-tiles",
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "in" / "t"),
                *tiles,
            ]
        )
        == 2
    )
    assert not (tmp_path / "in" / "t").exists()
    inp = str(tmp_path / "in")
    assert main(["data", "subset", "--input", inp, "--n", "1", "--out", str(tmp_path / "in" / "s")]) == 2
    filt = [
        "data",
        "filter",
        "--input",
        inp,
        "--out",
        str(tmp_path / "r.csv"),
        "--tile",
        "32",
        "--workers",
        "1",
    ]
    assert main([*filt, "--keep-dir", str(tmp_path / "in" / "keep")]) == 2
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.png"]
