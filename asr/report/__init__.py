"""Sweep report: one table and a few plots from the files the jobs of a sweep left behind.

    python -m asr.report multirun/<date>/<time>
    python -m asr.report multirun/eval/<date>/<time>    # a decoder-tuning sweep (evaluate.py)

Reads only files (each job's `summary.json`, `metrics.jsonl`), never the model, so it is fast
and works on results copied from another machine. Writes into the sweep directory
`report.csv` (one row per job, sorted by dev CER), `report.md`, `plots/*.png` (see
`asr.report.plots`) and `report.html`, one self-contained page with the table and the plots
that opens offline in any browser.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from asr.report.html import write_html
from asr.report.jobs import (
    REPEAT_KEYS,
    CurvePoint,
    Job,
    aggregate,
    as_number,
    load_jobs,
    mean_std,
    parse_overrides,
    read_curve,
    swept_keys,
)
from asr.report.plots import write_plots

__all__ = [
    "REPEAT_KEYS",
    "CurvePoint",
    "Job",
    "aggregate",
    "as_number",
    "load_jobs",
    "main",
    "make_report",
    "mean_std",
    "parse_overrides",
    "read_curve",
    "swept_keys",
    "write_tables",
]

COLUMNS = (
    "n_params",
    "best_dev_cer",
    "best_dev_wer",
    "test_cer",
    "wall_seconds",
    "train_audio_seconds_per_second",
    "status",
)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _sort_key(job: Job) -> tuple[float, str]:
    return (job.cer if job.cer is not None else math.inf, job.name)


def write_tables(
    jobs: list[Job], keys: list[str], out_dir: Path
) -> tuple[list[str], list[list[str]]]:
    header = [*keys, *COLUMNS, "job"]
    rows = []
    for job in sorted(jobs, key=_sort_key):
        cells = [job.overrides.get(k, "") for k in keys]
        cells += [_fmt(job.summary.get(c)) for c in COLUMNS]
        rows.append([*cells, job.name])
    with open(out_dir / "report.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = [
        f"# Sweep report: {out_dir}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    repeats = [k for k in keys if k in REPEAT_KEYS]
    if repeats:
        lines += ["", f"## Mean ± std over {', '.join(repeats)}", ""]
        lines += _aggregate_lines(jobs, [k for k in keys if k not in REPEAT_KEYS])
    lines += ["", *(f"![{p.stem}](plots/{p.name})" for p in ordered_plots(out_dir / "plots"))]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return header, rows


def _aggregate_lines(jobs: list[Job], keys: list[str]) -> list[str]:
    lines = ["| " + " | ".join([*keys, "runs", "dev CER", "test CER"]) + " |"]
    lines.append("|" + "---|" * (len(keys) + 3))
    stats = []
    for values, group in aggregate(jobs, keys).items():
        cers = [j.cer for j in group if j.cer is not None]
        tests = [
            j.summary["test_cer"] for j in group if isinstance(j.summary.get("test_cer"), float)
        ]
        if cers:
            stats.append((mean_std(cers), values, len(cers), mean_std(tests) if tests else None))
    for (m, s), values, n, test in sorted(stats):
        test_cell = f"{test[0]:.4f} ± {test[1]:.4f}" if test else ""
        lines.append("| " + " | ".join([*values, str(n), f"{m:.4f} ± {s:.4f}", test_cell]) + " |")
    return lines


PLOT_ORDER = ("parallel_coordinates", "pareto", "learning_curves")  # then cer_vs_<key>


def ordered_plots(plot_dir: Path) -> list[Path]:
    """The plots the most telling first: the overview, the trade-offs, then the details."""
    rank = {name: i for i, name in enumerate(PLOT_ORDER)}
    return sorted(plot_dir.glob("*.png"), key=lambda p: (rank.get(p.stem, len(rank)), p.name))


def make_report(sweep_dir: str | Path, plots: bool = True, jobs: list[Job] | None = None) -> str:
    """Write report.md/.csv (and plots) into the sweep dir; return a terminal summary.

    `jobs`: what `load_jobs(sweep_dir)` returns, when the caller has it already."""
    sweep_dir = Path(sweep_dir)
    if any(sweep_dir.glob("*/eval.json")):  # an evaluate.py sweep
        from asr.decoding.tuning import make_tuning_report

        return make_tuning_report(sweep_dir, plots=plots)
    jobs = load_jobs(sweep_dir) if jobs is None else jobs
    if not jobs:
        return f"no jobs with a summary.json under {sweep_dir}"
    keys = swept_keys(jobs)
    if plots:
        write_plots(jobs, keys, sweep_dir / "plots")
    header, rows = write_tables(jobs, keys, sweep_dir)
    write_html(sweep_dir, header, rows, ordered_plots(sweep_dir / "plots"))
    statuses = defaultdict(int)
    for job in jobs:
        statuses[job.summary.get("status", "unknown")] += 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = [f"sweep {sweep_dir}: {len(jobs)} jobs ({counts})"]
    best = min((j for j in jobs if j.cer is not None), key=_sort_key, default=None)
    if best is not None:
        overrides = " ".join(o for o in best.summary.get("overrides") or [] if "hydra." not in o)
        lines.append(f"best: dev CER {best.cer:.4f} in {best.name}")
        lines.append(f"  python train.py {overrides}")
    for job in jobs:
        if job.summary.get("status") == "failed":
            lines.append(f"failed: {job.name}: {job.summary.get('error')}")
    lines.append(f"report: {sweep_dir / 'report.html'} (and report.md)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    print(make_report(args.sweep_dir, plots=not args.no_plots))
    return 0
