"""A sweep's jobs as the report sees them: read from the files each job left behind.

Shared by the tables (`asr.report`) and the plots (`asr.report.plots`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(jobs: list[Job], keys: list[str]) -> dict[tuple[str, ...], list[Job]]:
    groups: dict[tuple[str, ...], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[tuple(job.overrides.get(k, "") for k in keys)].append(job)
    return groups


def as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
