"""A Hydra callback that keeps a sweep's report current and says how the sweep went.

The report's tables are rebuilt from files after every job (Hydra does not call
`on_multirun_end` after a failed job, and joblib runs `on_job_end` in worker processes), so they
exist even when a sweep ends in a failure or is killed. The plots, which take seconds, are drawn
once, with the final count of succeeded and failed jobs, when the sweep process exits, whatever
way it ends (`python -m asr.report <sweep dir>` draws them for a sweep that was killed).

Under asr-sweep's Slurm launcher the jobs leave the report to the submitting process, which
refreshes it as their results come in: a thousand-job array then rebuilds it a thousand times
in one process, not in every job at once, all writing the same files.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from asr import ranks
from asr.decoding.tuning import make_tuning_report
from asr.report import Job, load_jobs, make_report

SLURM_LAUNCHER = "hydra_plugins.asr_sweep_launcher."  # reports from the submitting process


def _count(jobs: list[Job], status: str) -> int:
    return sum(j.summary.get("status") == status for j in jobs)


def _reports_here(config: DictConfig) -> bool:
    """A multirun job whose launcher does not report for it (asr-sweep's Slurm launcher does),
    on rank 0 under DDP."""
    if config.hydra.mode != RunMode.MULTIRUN or not ranks.is_main_rank():
        return False
    return not str(config.hydra.launcher.get("_target_", "")).startswith(SLURM_LAUNCHER)


class SweepCallback(Callback):
    def __init__(self, plots: bool = True) -> None:
        self.plots = plots
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not ranks.is_main_rank():  # under DDP, rank 0 alone reports on the sweep
            return
        self.sweep_dir = Path(config.hydra.sweep.dir)
        atexit.register(self._final_words)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _reports_here(config):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        job = Path(config.hydra.runtime.output_dir).name
        status = getattr(job_return.status, "name", str(job_return.status)).lower()
        error = f": {job_return._return_value}" if status == "failed" else ""
        jobs = load_jobs(sweep_dir)
        make_report(sweep_dir, plots=False, jobs=jobs)
        ok, failed = _count(jobs, "ok"), _count(jobs, "failed")
        print(f"[sweep] job {job} {status}{error} | {ok} ok, {failed} failed so far", flush=True)

    def _final_words(self) -> None:
        if self.sweep_dir is None or not self.sweep_dir.is_dir():
            return
        jobs = load_jobs(self.sweep_dir)
        print(make_report(self.sweep_dir, plots=self.plots, jobs=jobs), flush=True)
        ok = _count(jobs, "ok")
        print(f"[sweep] {ok} succeeded, {len(jobs) - ok} failed or unfinished", flush=True)


class TuningCallback(Callback):
    """evaluate.py's sweeps: the decoder-tuning report (`asr.decoding.tuning`), rebuilt after
    every job and printed at the end with the command that decodes test with the best."""

    def __init__(self, plots: bool = True) -> None:
        self.plots = plots
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(config.hydra.sweep.dir)
        atexit.register(self._final_words)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _reports_here(config):
            return
        make_tuning_report(config.hydra.sweep.dir, plots=False)
        job = Path(config.hydra.runtime.output_dir).name
        status = getattr(job_return.status, "name", str(job_return.status)).lower()
        error = f": {job_return._return_value}" if status == "failed" else ""
        print(f"[sweep] job {job} {status}{error}", flush=True)

    def _final_words(self) -> None:
        if self.sweep_dir is not None and self.sweep_dir.is_dir():
            print(make_tuning_report(self.sweep_dir, plots=self.plots), flush=True)
