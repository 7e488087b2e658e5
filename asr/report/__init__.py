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
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = (
    "n_params",
    "best_dev_cer",
    "best_dev_wer",
    "test_cer",
    "wall_seconds",
    "train_audio_seconds_per_second",
    "status",
)
REPEAT_KEYS = ("seed",)  # swept keys that repeat a configuration instead of changing it


@dataclass(frozen=True)
class CurvePoint:
    """One dev evaluation, on the three axes a learning curve can be drawn against."""

    step: int
    cer: float
    minutes: float  # wall clock since the run started, evaluations included
    audio_hours: float | None  # training audio seen; None in runs that did not log it


@dataclass
class Job:
    name: str
    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any]
    curve: list[CurvePoint] = field(default_factory=list)  # one per dev evaluation

    def label(self, keys: list[str]) -> str:
        """The job by its swept values only: short enough for a legend."""
        return ", ".join(f"{k}={self.overrides.get(k, '')}" for k in keys) or self.name

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def cer(self) -> float | None:
        value = self.summary.get("best_dev_cer")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def parse_overrides(items: list[str]) -> dict[str, str]:
    """Hydra override strings -> {key: value}, without `+`/`~` prefixes and hydra.* keys."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra"):
            out[key] = value
    return out


def load_jobs(sweep_dir: Path) -> list[Job]:
    jobs = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json")):
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            continue  # a job that is writing right now; the next report will have it
        path = summary_path.parent
        overrides = parse_overrides(summary.get("overrides") or [])
        jobs.append(Job(path.name, path, overrides, summary, read_curve(path / "metrics.jsonl")))
    return jobs


def read_curve(metrics: Path) -> list[CurvePoint]:
    """The dev evaluations in a job's metrics.jsonl. Runs that predate `time/minutes` get it
    from the rows' timestamps, which also count any time a resumed run spent stopped."""
    curve: list[CurvePoint] = []
    if not metrics.is_file():
        return curve
    started = None
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        started = row.get("time", 0.0) if started is None else started
        if "dev/cer" in row:
            minutes = row.get("time/minutes", (row.get("time", started) - started) / 60)
            hours = row.get("train/audio_hours")
            curve.append(CurvePoint(int(row["step"]), float(row["dev/cer"]), minutes, hours))
    return curve


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (what the sweep varied)."""
    values: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        for key in {k for j in jobs for k in j.overrides}:
            values[key].add(job.overrides.get(key, "<default>"))
    return sorted(k for k, v in values.items() if len(v) > 1)


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


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(jobs: list[Job], keys: list[str]) -> dict[tuple[str, ...], list[Job]]:
    groups: dict[tuple[str, ...], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[tuple(job.overrides.get(k, "") for k in keys)].append(job)
    return groups


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


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


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
    from asr.report.html import write_html  # here, not at the top: they import this module
    from asr.report.plots import write_plots

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
