"""The scheduler's side of a run: the signals that stop it, and the requeue that brings it back.

- SIGTERM: the scheduler ends the job (scancel, a drained node, a preemption that Slurm requeues
  by itself), or torchrun stops its workers. The trainer saves last.pt and stops.
- SIGINT: Ctrl-C. The trainer saves last.pt and stops; a second Ctrl-C is final.
- SIGUSR2: the warning a scheduler sends before a time limit or a preemption: submitit's
  signal (NCCL takes USR1), or `sbatch --signal=USR2@120`. The trainer finishes its step,
  saves last.pt, and the job is requeued (`requeue`): it comes back in the same run directory
  and resumes exactly, with the same W&B run.

A signal may arrive more than once: with `scancel --signal=USR2 --full`, every task receives it
from Slurm and once more from srun, which forwards what reaches it. Only Ctrl-C counts twice.

A warning may also arrive before the trainer is listening (a preemption while the data loads):
`catch_early_warnings`, called first thing by train.py, keeps it, and the trainer acts on it at
its first step, as on one that came later. Without it, USR2's default action ends the process.

Stdlib only: the DataLoader workers and Hydra's resolvers use this before torch is needed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

__all__ = [
    "STOP_SIGNALS",
    "WARNING_SIGNAL",
    "RunInterrupted",
    "StopFlag",
    "catch_early_warnings",
    "ignore_stop_signals",
    "in_slurm_batch_job",
    "slurm_job_id",
    "slurm_restarts",
]

WARNING_SIGNAL = signal.SIGUSR2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, WARNING_SIGNAL)


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped the run after it saved last.pt. A KeyboardInterrupt, so that it also
    stops a Hydra sweep (which records ordinary exceptions and moves on)."""


def slurm_job_id(env: Mapping[str, str] = os.environ) -> str | None:
    """The id that `scontrol requeue` takes for this job: `<array job>_<task>` in an array."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def in_slurm_batch_job(env: Mapping[str, str] = os.environ) -> bool:
    """Inside `sbatch` (its script or a step it starts): Slurm sets ENVIRONMENT=BATCH there,
    and not in an interactive `salloc` shell, whose job cannot be requeued."""
    return env.get("ENVIRONMENT") == "BATCH" and slurm_job_id(env) is not None


def slurm_restarts(env: Mapping[str, str] = os.environ) -> int:
    """How many times Slurm has requeued this job, whoever asked (0 outside Slurm)."""
    try:
        return int(env.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


_early: list[str] = []  # warnings that arrived before a StopFlag was listening


def _keep_early(signum: int, _frame: Any) -> None:
    _early.append(signal.Signals(signum).name)


def catch_early_warnings() -> None:
    """Keep the scheduler's warning if it comes before the trainer listens (see the module
    docstring). Main thread only; a handler someone else installed is left in place."""
    if signal.getsignal(WARNING_SIGNAL) in (signal.SIG_DFL, None):
        signal.signal(WARNING_SIGNAL, _keep_early)


def ignore_stop_signals() -> None:
    """For helper processes (DataLoader workers): the main process saves and stops on these,
    and needs its helpers until then. They still end when the main process does."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class StopFlag:
    """Records the stop signals that reach this process while the trainer runs.

    `signal` is the first one that reached this process; `agreed` is what the loop acts on,
    set at an agreed point (`Trainer.ranks_agree_to_stop`) where under DDP every rank learns
    of a signal that reached any of them: a rank that acted on its own flag could skip a
    collective the others enter and leave them waiting forever.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self.agreed: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        if _early and self.signal is None:  # a warning before the trainer listened
            self.signal = _early.pop()
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
        if signum == signal.SIGINT:  # a second Ctrl-C is final
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    @property
    def warned(self) -> bool:
        """The agreed stop is the scheduler's warning: save, then requeue."""
        return self.agreed == WARNING_SIGNAL.name

    def requeue(self) -> str:
        """After last.pt is saved on a warning, have the job requeued; say what was done.

        Under submitit the warning goes on to submitit's own handler, which was in place
        before the trainer's: it requeues the job (counting time-outs against the launcher's
        `max_num_timeout`) and exits. In a plain `sbatch` job, `scontrol requeue` does it.
        Anywhere else nothing can requeue the run: it stops, and the same command resumes it.
        """
        previous = self._old.get(WARNING_SIGNAL)
        if callable(previous) and previous is not _keep_early:
            signal.signal(WARNING_SIGNAL, previous)
            signal.raise_signal(WARNING_SIGNAL)  # submitit requeues, then exits the process
            return "handed to the launcher to requeue"
        job = slurm_job_id()
        if job is None or not in_slurm_batch_job():
            return "not a Slurm batch job, so not requeued: the same command resumes it"
        try:
            subprocess.run(
                ["scontrol", "requeue", job], check=True, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError) as e:
            said = (getattr(e, "stderr", None) or str(e)).strip().splitlines()
            return (
                f"scontrol requeue {job} failed ({said[-1] if said else e!r}): resubmit to resume"
            )
        return f"requeued Slurm job {job}"
