"""Run tracking: `metrics.jsonl` and `summary.json` always (`asr.tracking.files`), Weights &
Biases when enabled (`asr.tracking.wandb_run`), and what a training run records about itself
(`asr.tracking.record`).

This package is the only place that imports wandb (the tests read offline runs back with
`tests/wandb_offline.py`), so that the rest of the project, and every test that does not care
about W&B, neither pays its ~0.5 s import nor depends on its behaviour. The files are the
source of truth: they are written first and survive any W&B failure. W&B is an extra view for
comparing sweeps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from asr.tracking.files import RunFiles, plain, read_summary, record_failure
from asr.tracking.wandb_run import (
    LoggerConfig,
    WandbRun,
    has_wandb_credentials,
    new_run_id,
    resolve_mode,
)

__all__ = [
    "LoggerConfig",
    "NullTracker",
    "Tracker",
    "has_wandb_credentials",
    "new_run_id",
    "read_summary",
    "record_failure",
    "resolve_mode",
]

STATUSES = ("running", "ok", "failed", "interrupted")


class Tracker:
    """One run's logging: metrics.jsonl + summary.json always; W&B when enabled.

    Use as a context manager so the run is always finished, with status "failed" or
    "interrupted" when the block raises. Create it on one process only (rank 0 under DDP).

    `run_id` resumes: pass the id a checkpoint saved and the same W&B run continues
    (`resume="allow"`), `metrics.jsonl` is appended to and `summary.json` keeps its values.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggerConfig,
        config: Mapping[str, Any],
        run_id: str | None = None,
    ) -> None:
        started_at = time.time()
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.run_id: str = run_id or new_run_id()
        self.files = RunFiles(self.run_dir)
        self.mode = resolve_mode(cfg.mode) if cfg.kind == "wandb" else "disabled"
        self._wandb = WandbRun(cfg, self.run_dir, self.run_id, self.mode)
        self._finished = False
        self.files.summary.pop("resumable", None)  # what a full disk said of the last attempt
        # The run id reaches summary.json before W&B creates anything under it: a run killed
        # at any later moment, even before its first checkpoint, can resume the same W&B run.
        self.files.update_summary({"status": "running", "error": None, "run_id": self.run_id})
        if self.mode != "disabled":
            self._start_wandb(plain(config))
        self.files.update_summary(
            {
                "wandb_mode": self.mode if self._wandb.run is not None else "off",
                "wandb_dir": str(self.wandb_dir) if self.wandb_dir else None,
                "started_at": started_at,
            }
        )

    def _start_wandb(self, config: dict[str, Any]) -> None:
        self._wandb.start(config)

    @property
    def wandb_dir(self) -> Path | None:
        """The local W&B run directory (`.../wandb/offline-run-*/` when offline), or None when
        W&B is off. `wandb sync <wandb_dir>` uploads an offline run later."""
        return self._wandb.dir

    @property
    def wandb_enabled(self) -> bool:
        """True while W&B receives this run's data."""
        return self._wandb.run is not None and self._wandb.ok and not self._finished

    # -- logging ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"Tracker for run {self.run_id} is already finished")

    def log(self, metrics: Mapping[str, float | int | str], step: int) -> None:
        """Record metrics at a training step: one flushed line of metrics.jsonl and one W&B row.

        `step` is a W&B metric (the charts' x axis), not W&B's own step, so a resumed run may
        log a step again without W&B dropping it (see asr.tracking.wandb_run).
        """
        self._check_open()
        values = {str(k): plain(v) for k, v in metrics.items()}
        clash = {"step", "time"} & values.keys()
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved by Tracker.log")
        step = int(step)
        self.files.append_metrics({"step": step, "time": time.time(), **values})
        self._wandb.log(values, step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        """Log a small table to W&B (e.g. sample transcripts: reference vs hypothesis).

        Files get nothing: tables are for looking at in the W&B UI; the numbers that matter
        are in `log`.
        """
        self._check_open()
        self._wandb.log_table(key, columns, rows, step)

    # -- summary ---------------------------------------------------------------------------

    def update_summary(self, **values: Any) -> None:
        """Merge final/best values (e.g. best_wer) into summary.json and the W&B run summary."""
        self._check_open()
        values = {k: plain(v) for k, v in values.items()}
        self.files.update_summary(values)
        self._wandb.update_summary(values)

    @property
    def summary(self) -> dict[str, Any]:
        """A copy of what summary.json holds."""
        return dict(self.files.summary)

    # -- end -------------------------------------------------------------------------------

    def finish(self, status: str = "ok", error: str | None = None) -> None:
        """End the run: summary.json gets `status`/`error`, the W&B run is finished with exit
        code 0 for "ok" and 1 otherwise. Calling it again does nothing."""
        if status not in STATUSES or status == "running":
            raise ValueError(f"status must be one of ok|failed|interrupted (got {status!r})")
        if self._finished:
            return
        self._finished = True
        now = time.time()
        ending: dict[str, Any] = {"status": status, "error": error, "finished_at": now}
        started = self.files.summary.get("started_at")
        if isinstance(started, int | float) and math.isfinite(started):
            ending["duration_s"] = round(now - started, 3)
        try:
            self.files.update_summary(ending)
        finally:
            self.files.close()
            self._wandb.finish(status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Always finish; never swallow the exception."""
        if self._finished:
            return
        if exc is None:
            self.finish("ok")
            return
        error = f"{type(exc).__name__}: {exc}"
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        if getattr(exc, "resumable", False):  # e.g. a full disk: the checkpoints are whole
            self.files.summary["resumable"] = True
        self.finish("interrupted" if interrupted else "failed", error)


class NullTracker:
    """A Tracker that records nothing: what DDP ranks other than 0 use, so that a job has one
    summary.json, one metrics.jsonl and one W&B run, while every rank runs the same loop."""

    run_id: str | None = None
    wandb_dir: Path | None = None
    wandb_enabled = False

    def log(self, metrics: Mapping[str, float | int | str], step: int) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], step: int) -> None:
        pass

    def update_summary(self, **values: Any) -> None:
        pass

    def finish(self, status: str = "ok", error: str | None = None) -> None:
        pass

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
