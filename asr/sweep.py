"""A Hydra callback that keeps a sweep's report current and says how the sweep went.

The report is rebuilt from files after every job (Hydra does not call `on_multirun_end` after a
failed job, and joblib runs `on_job_end` in worker processes), so it exists even when a sweep
ends in a failure or is killed. The final count of succeeded and failed jobs is printed when
the sweep process exits, whatever way it ends.
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


def _count(jobs: list[Job], status: str) -> int:
    return sum(j.summary.get("status") == status for j in jobs)


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


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
        if not _is_multirun(config) or not ranks.is_main_rank():
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        job = Path(config.hydra.runtime.output_dir).name
        status = getattr(job_return.status, "name", str(job_return.status)).lower()
        error = f": {job_return._return_value}" if status == "failed" else ""
        jobs = load_jobs(sweep_dir)
        make_report(sweep_dir, plots=self.plots, jobs=jobs)
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
        if not _is_multirun(config):
            return
        make_tuning_report(config.hydra.sweep.dir, plots=self.plots)
        job = Path(config.hydra.runtime.output_dir).name
        status = getattr(job_return.status, "name", str(job_return.status)).lower()
        error = f": {job_return._return_value}" if status == "failed" else ""
        print(f"[sweep] job {job} {status}{error}", flush=True)

    def _final_words(self) -> None:
        if self.sweep_dir is not None and self.sweep_dir.is_dir():
            print(make_tuning_report(self.sweep_dir, plots=self.plots), flush=True)
