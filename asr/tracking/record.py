"""What a training run records about itself in summary.json: who ran it and where when it
starts (`announce`), and where it stands (`progress_summary`) at every save and at the end.

Plain values in, so that the trainer's state stays the trainer's: `Counters` as a mapping, the
data's problem counts as numbers.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from asr.cluster import slurm_job_id, slurm_restarts
from asr.tracking import NullTracker, Tracker

__all__ = ["announce", "progress_summary"]


def announce(
    tracker: Tracker | NullTracker, *, step: int, n_params: int, report: Any, **facts: Any
) -> None:
    """Summary facts of a starting (or resumed) run: the trainer's `facts`, what the data
    checks found (`report`, an asr.data.checks.ProblemReport), and the process's own: its pid
    and host, and under Slurm the job and how often Slurm requeued it."""
    tracker.update_summary(
        status="running",
        n_params=n_params,
        skipped=report.skipped,
        repaired=report.repaired,
        chars_outside_alphabet=dict(report.dropped_chars),
        pid=os.getpid(),
        hostname=socket.gethostname(),
        slurm_job_id=slurm_job_id(),
        requeues=slurm_restarts(),
        **facts,
    )
    tracker.log({"n_params": n_params}, step=step)


def progress_summary(
    counters: Mapping[str, Any], *, skipped: Any, repaired: Any, wall_start: float
) -> dict[str, Any]:
    """The run's numbers for summary.json, from the trainer's counters."""
    c = counters

    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "best_dev_cer": finite(c["best_dev_cer"]),
        "best_dev_wer": finite(c["best_dev_wer"]),
        "step": c["step"],
        "epoch": c["epoch"],
        "train_audio_seconds": c["train_audio_seconds"],
        "train_seconds": c["train_seconds"],
        "train_audio_seconds_per_second": c["train_audio_seconds"] / max(c["train_seconds"], 1e-9),
        "wall_seconds": time.time() - wall_start,
        "skipped": skipped,
        "repaired": repaired,
        "nonfinite_steps": c["nonfinite_steps"],
    }
