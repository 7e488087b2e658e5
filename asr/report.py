"""Sweep report: one table and a few plots from the files the jobs of a sweep left behind.

    python -m asr.report multirun/<date>/<time>
    python -m asr.report multirun/eval/<date>/<time>    # a decoder-tuning sweep (evaluate.py)

Reads only files (each job's `summary.json`, `metrics.jsonl`), never the model, so it is fast
and works on results copied from another machine. Writes into the sweep directory:
`report.md`, `report.csv` (one row per job, sorted by dev CER), and `plots/*.png`: dev CER
against each swept key (one line per combination of the other keys, mean ± std over seeds),
dev CER against the parameter count, and the learning curves of all jobs.
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


@dataclass
class Job:
    name: str
    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, dev CER)

    def label(self, keys: list[str]) -> str:
        """The job by its swept values only: short enough for a legend."""
        return ", ".join(f"{k}={self.overrides.get(k, '')}" for k in keys) or self.name

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
        curve = []
        metrics = path / "metrics.jsonl"
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash
                if "dev/cer" in row:
                    curve.append((int(row["step"]), float(row["dev/cer"])))
        overrides = parse_overrides(summary.get("overrides") or [])
        jobs.append(Job(path.name, path, overrides, summary, curve))
    return jobs


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


def write_tables(jobs: list[Job], keys: list[str], out_dir: Path) -> list[list[str]]:
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
    lines += [
        "",
        *(f"![{p.stem}](plots/{p.name})" for p in sorted((out_dir / "plots").glob("*.png"))),
    ]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
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
            stats.append((_mean_std(cers), values, len(cers), _mean_std(tests) if tests else None))
    for (m, s), values, n, test in sorted(stats):
        test_cell = f"{test[0]:.4f} ± {test[1]:.4f}" if test else ""
        lines.append("| " + " | ".join([*values, str(n), f"{m:.4f} ± {s:.4f}", test_cell]) + " |")
    return lines


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def write_plots(jobs: list[Job], keys: list[str], plot_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(exist_ok=True)
    done = [j for j in jobs if j.cer is not None]
    paths = []
    config_keys = [k for k in keys if k not in REPEAT_KEYS]
    for key in config_keys:
        others = [k for k in config_keys if k != key]
        fig, ax = plt.subplots(figsize=(6, 4))
        for line_values, group in sorted(aggregate(done, others).items()):
            points = []
            for x, jobs_at_x in aggregate(group, [key]).items():
                m, s = _mean_std([j.cer for j in jobs_at_x])
                points.append((x[0], m, s))
            numeric = all(_as_number(p[0]) is not None for p in points)
            points.sort(key=lambda p: _as_number(p[0]) if numeric else p[0])
            xs = [_as_number(p[0]) if numeric else p[0] for p in points]
            label = ", ".join(f"{k}={v}" for k, v in zip(others, line_values, strict=True))
            ax.errorbar(
                xs,
                [p[1] for p in points],
                yerr=[p[2] for p in points],
                marker="o",
                capsize=3,
                label=label or None,
            )
        values = {_as_number(j.overrides.get(key, "")) for j in done}
        if None not in values and len(values) <= 12:
            ax.set_xticks(sorted(values))  # the swept values themselves, not 1.25, 1.5, ...
        ax.set_xlabel(key)
        ax.set_ylabel("best dev CER")
        ax.set_title(f"dev CER vs {key}")
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=8)
        paths.append(_save(fig, plot_dir / f"cer_vs_{key.replace('.', '_')}.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for job in done:
        if isinstance(job.summary.get("n_params"), int):
            ax.scatter(job.summary["n_params"], job.cer)
            ax.annotate(job.label(keys), (job.summary["n_params"], job.cer), fontsize=6, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("best dev CER")
    ax.set_title("dev CER vs model size")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, plot_dir / "cer_vs_params.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for job in jobs:
        if job.curve:
            ax.plot(*zip(*job.curve, strict=True), marker=".", label=job.label(keys))
    ax.set_xlabel("step")
    ax.set_ylabel("dev CER")
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    if 0 < sum(bool(j.curve) for j in jobs) <= 16:
        ax.legend(fontsize=6)
    paths.append(_save(fig, plot_dir / "learning_curves.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    write_tables(jobs, keys, sweep_dir)
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
    lines.append(f"report: {sweep_dir / 'report.md'}")
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


if __name__ == "__main__":
    sys.exit(main())
