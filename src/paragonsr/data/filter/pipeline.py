"""``paragonsr data filter``: tile every image, score the tiles stage by stage, write the report.

Per image (one task per image, spread over worker processes): tile it, and for each tile not already in the
report, compute the stage-1 metrics, check the stage-1 gates, and only for survivors compute the next stage's
metrics, and so on. Rows stream into the CSV as images finish, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paragonsr.data.filter.gates import NOT_RUN, PASS, SKIPPED, FilterConfig, Gate, evaluate, verdict
from paragonsr.data.filter.iqa import ScorerSet
from paragonsr.data.filter.report import (
    RowWriter,
    columns,
    plot_histograms,
    rewrite_sorted,
    summary_table,
    tile_key,
)
from paragonsr.data.tiles import tile_grid
from paragonsr.io.files import list_images, read_image_native, write_image_native
from paragonsr.utils.atomic import atomic_write_text
from paragonsr.utils.procs import worker_pool

_SCORERS: ScorerSet | None = None  # one per worker process (pyiqa/NIQE models load once)


@dataclass
class FilterResult:
    rows: list[dict[str, str]]
    summary: str
    errors: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)


def _to_uint(tile: np.ndarray) -> np.ndarray:
    """Metrics see RGB (gray expanded, alpha dropped) at the stored bit depth."""
    if tile.shape[2] == 1:
        tile = np.repeat(tile, 3, axis=2)
    return np.ascontiguousarray(tile[..., :3])


def score_tile(tile: np.ndarray, cfg: FilterConfig, scorers: ScorerSet) -> dict[str, str]:
    """Scores, per-gate status, verdict and reason for one tile (stages stop at the first failing stage)."""
    scores: dict[str, float | None] = {}
    status: dict[str, str] = {g.metric: NOT_RUN for g in cfg.gates}
    reasons: list[str] = []
    for stage in cfg.stages:
        gates = [g for g in cfg.gates if g.stage == stage]
        for g in gates:
            for m in (g.metric, g.fallback.metric if g.fallback else None):
                if m is not None and m not in scores:
                    scores[m] = scorers.score(m, tile)
            st, note = evaluate(g, scores)
            status[g.metric] = st
            if st != PASS or note:
                reasons.append(f"{g.metric}: {note}" if st != SKIPPED else f"{g.metric}: skipped ({note})")
        if any(status[g.metric] == "fail" for g in gates):
            break
    row = {m: ("" if scores.get(m) is None else f"{scores[m]:.6g}") for m in cfg.metrics()}
    row.update({f"gate_{m}": s for m, s in status.items()})
    # later stages stay not_run only after a failure, so the verdict over the gates that ran is the answer
    row["verdict"] = verdict([s for s in status.values() if s != NOT_RUN])
    row["reason"] = "; ".join(reasons)
    return row


def _init_worker(cfg: FilterConfig) -> None:
    global _SCORERS
    _SCORERS = ScorerSet(cfg)


def _keeps(verdict: str, keep_unverified: bool) -> bool:
    return verdict == PASS or (keep_unverified and verdict == "unverified")


def _score_image(
    args: tuple[Path, str, FilterConfig, dict[tuple[int, int], str], Path | None, bool],
) -> tuple[list[dict[str, str]], str, str, set[tuple[str, int, int]]]:
    """(rows, error, note, stale): an error is a file that cannot be read; a note an image smaller than one tile;
    stale the report's tiles of this image that are not on this run's grid (an earlier run with another stride).

    ``done`` maps the tiles already in the report to their verdict: they are not scored again, but the keep
    decision is made again for them (a resumed run with ``--keep-unverified`` or a new ``--keep-dir`` writes the
    copies an earlier run did not)."""
    path, rel, cfg, done, keep_prefix, keep_unverified = args
    assert _SCORERS is not None
    try:
        img = read_image_native(path)
    except (ValueError, OSError) as exc:
        return [], str(exc), "", set()
    grid = tile_grid(img.shape[0], img.shape[1], cfg.tile_size, cfg.tile_stride)
    stale = {(rel, y, x) for y, x in set(done) - set(grid)}
    if not grid:
        note = f"{path}: {img.shape[1]}x{img.shape[0]} is smaller than the tile size {cfg.tile_size}"
        return [], "", note, stale
    rows = []
    for y, x in grid:
        tile = img[y : y + cfg.tile_size, x : x + cfg.tile_size]
        if (y, x) in done:
            verdict_ = done[(y, x)]
        else:
            row = {"image": rel, "y": str(y), "x": str(x), "h": str(cfg.tile_size), "w": str(cfg.tile_size)}
            row.update(score_tile(_to_uint(tile), cfg, _SCORERS))
            rows.append(row)
            verdict_ = row["verdict"]
        if keep_prefix is not None and _keeps(verdict_, keep_unverified):
            dst = keep_prefix.with_name(f"{keep_prefix.name}_y{y}_x{x}.png")
            if (y, x) not in done or not dst.is_file():
                write_image_native(dst, np.ascontiguousarray(tile))
    return rows, "", "", stale


def _refuse_inside(path: Path, input_dir: Path, what: str) -> None:
    """Outputs inside the input folder would be read back as data by the next (resumed) run."""
    dst, src = path.resolve(), input_dir.resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"{what} {path} must not be the input folder {input_dir} or inside it")


def _file_digest(path: str | None) -> str | None:
    """SHA-256 of a model file: a report scored with another NIQE model must not be resumed."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _gates_fingerprint(cfg: FilterConfig, probe: ScorerSet) -> str:
    def one(g: Gate | None) -> list | None:
        return None if g is None else [g.metric, g.stage, g.min, g.max, one(g.fallback)]

    return json.dumps(
        {
            "tile_size": cfg.tile_size,
            "gates": [one(g) for g in cfg.gates],
            "unavailable": sorted(probe.unavailable),
            "niqe_model": _file_digest(cfg.niqe_model) if "niqe" in cfg.metrics() else None,
        }
    )


def _check_gates_unchanged(out_csv: Path, cfg: FilterConfig, probe: ScorerSet, resuming: bool) -> None:
    """Refuse to resume a report made with other thresholds/stages or other available metrics.

    The CSV header only names the metrics: without this, a re-run after adjusting a threshold (what the docs
    suggest after a first look at the histograms) would keep every old verdict, and a run after adding pyiqa
    weights would keep the old 'skipped' gates. The gates are stored beside the report as ``<stem>.gates.json``.
    """
    side = out_csv.with_name(out_csv.stem + ".gates.json")
    now = _gates_fingerprint(cfg, probe)
    if resuming and side.is_file() and side.read_text() != now:
        raise ValueError(
            f"{out_csv} was scored with other gates, thresholds or available metrics ({side}: {side.read_text()}; "
            f"now: {now}); use a new --out, or --restart to score everything again"
        )
    atomic_write_text(side, now)


def run_filter(
    input_dir: str | Path,
    out_csv: str | Path,
    cfg: FilterConfig,
    keep_dir: str | Path | None = None,
    keep_unverified: bool = False,
    workers: int = 1,
    restart: bool = False,
    plots: bool = True,
    progress: bool = True,
) -> FilterResult:
    """Score every tile of every image under ``input_dir`` into the report ``out_csv`` (resumed unless
    ``restart``), with its summary and plots beside it. The report is claimed for the whole run
    (:func:`paragonsr.utils.claims.hold_output`): a second run into the same report raises ``OutputBusy``."""
    from paragonsr.utils.claims import hold_output

    input_dir, out_csv = Path(input_dir), Path(out_csv)
    _refuse_inside(out_csv, input_dir, "report")
    if keep_dir:
        _refuse_inside(Path(keep_dir), input_dir, "keep folder")
    with hold_output(out_csv, "filter report"):
        return _run_filter(
            input_dir, out_csv, cfg, keep_dir, keep_unverified, workers, restart, plots, progress
        )


def _run_filter(
    input_dir: Path,
    out_csv: Path,
    cfg: FilterConfig,
    keep_dir: str | Path | None,
    keep_unverified: bool,
    workers: int,
    restart: bool,
    plots: bool,
    progress: bool,
) -> FilterResult:
    from tqdm import tqdm

    cols = columns(cfg)
    if restart and out_csv.exists():
        out_csv.unlink()
    # normalise an existing report first: a run killed mid-line leaves a partial last row that the next append
    # would otherwise glue onto
    done_rows = rewrite_sorted(out_csv, cols) if out_csv.is_file() else []
    sizes = {r["h"] for r in done_rows} | {r["w"] for r in done_rows}
    if sizes - {str(cfg.tile_size)}:
        # resuming would skip every (y, x) already in the report and mix tiles of two sizes in one report
        raise ValueError(
            f"{out_csv} holds tiles of size {sorted(sizes)} but this run uses tile size {cfg.tile_size}; "
            "use a new --out, or --restart to score everything again"
        )
    done: dict[str, dict[tuple[int, int], str]] = {}
    for r in done_rows:
        done.setdefault(r["image"], {})[tile_key(r)[1:]] = r["verdict"]
    keep = Path(keep_dir) if keep_dir else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    paths = list_images(input_dir)
    if not paths:
        raise FileNotFoundError(f"no images under {input_dir}")
    rels = [p.relative_to(input_dir).as_posix() for p in paths]
    # kept tiles are named <sub__folder__stem>_y_x.png; x.png and x.jpg in one folder keep their extension in
    # the name (x_png_..., x_jpg_...) instead of overwriting each other's tiles
    stems = [Path(rel).with_suffix("").as_posix().replace("/", "__") for rel in rels]
    clash = Counter(stems)
    jobs = []
    for p, rel, stem in zip(paths, rels, stems):
        if clash[stem] > 1:
            stem = rel.replace("/", "__").replace(".", "_")
        prefix = keep / stem if keep is not None else None
        jobs.append((p, rel, cfg, done.get(rel, {}), prefix, keep_unverified))
    # main-process copy: availability for the summary, and the scorer itself when workers == 1
    probe = ScorerSet(cfg)
    _check_gates_unchanged(out_csv, cfg, probe, bool(done_rows))
    errors: list[str] = []
    small: list[str] = []
    stale: set[tuple[str, int, int]] = set()

    def collect(result: tuple[list[dict[str, str]], str, str, set[tuple[str, int, int]]]) -> None:
        rows, err, note, old = result
        writer.write(rows)
        stale.update(old)
        errors.extend([err] if err else [])
        small.extend([note] if note else [])
        bar.update()

    writer = RowWriter(out_csv, cols)
    bar = tqdm(total=len(jobs), desc="filter", unit="img", disable=not progress)
    try:
        if workers > 1:
            with worker_pool(workers, _init_worker, (cfg,)) as pool:  # quiet workers, stopped on Ctrl-C
                for result in pool.imap_unordered(_score_image, jobs):
                    collect(result)
        else:
            global _SCORERS
            _SCORERS = probe
            for job in jobs:
                collect(_score_image(job))
    finally:
        writer.close()
        bar.close()
    all_rows = rewrite_sorted(out_csv, cols, drop=stale)
    summary = summary_table(all_rows, cfg, probe.unavailable)
    if stale:
        summary += (
            f"\n{len(stale)} tile row(s) from an earlier run with another stride dropped from the report"
        )
    if small:
        summary += f"\n{len(small)} image(s) smaller than one tile, skipped:\n" + "\n".join(
            f"  {e}" for e in small
        )
    if errors:
        summary += f"\n{len(errors)} image(s) could not be scored:\n" + "\n".join(f"  {e}" for e in errors)
    atomic_write_text(out_csv.with_name(out_csv.stem + ".summary.md"), summary + "\n")
    written = plot_histograms(all_rows, cfg, out_csv.with_name(out_csv.stem + "_plots")) if plots else []
    return FilterResult(all_rows, summary, errors, written, probe.unavailable)
