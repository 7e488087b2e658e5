"""Hydra glue for the entry points: one job of a run or of a sweep, and its error reporting.

- A bad config, missing input or refused checkpoint exits 2 with one line in a single run; a
  diverged run or a full disk exits 1 with one line. In a multirun the job is recorded as
  failed (summary.json) and the error raised, so Hydra moves on to the next job.
- In a sweep, a job whose summary says `ok` is skipped, a `failed` one restarts from scratch,
  and an interrupted one, or one that failed for a full disk (`resumable`), resumes from its
  `last.pt` (the loop does that by itself).
- Sweep jobs log to one W&B group, named after the sweep directory so it survives a resume.
- Under DDP (torchrun, Slurm tasks) every rank runs the job; rank 0 decides whether a sweep job
  is skipped or restarted, and ranks other than 0 print into their own log file in the run dir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from asr import distributed, ranks
from asr.cluster import RunInterrupted
from asr.config import to_train_config
from asr.data.manifest import ManifestError
from asr.disk import DiskFullError
from asr.errors import first_line
from asr.loop import NonFiniteError, train
from asr.report import parse_overrides
from asr.schema import ConfigError, LoggerConfig
from asr.tracking import read_summary, record_failure

T = TypeVar("T")

USER_ERRORS = (ConfigError, ManifestError, FileNotFoundError)
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json", "wandb")


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# Flags after which Hydra does something other than compose-and-run one job.
_HYDRA_FLAGS = (
    "-m",
    "--multirun",
    "-h",
    "--help",
    "--hydra-help",
    "-c",
    "--cfg",
    "-i",
    "--info",
    "-p",
    "--package",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "--shell-completion",
    "-sc",
    "--resolve",
    "--experimental-rerun",
)


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Refuse a typo'd key or a wrong type in ONE line, before Hydra starts the job.

    Hydra's own messages for these span several lines; this composes the config once with the
    same overrides (a fraction of a second) and condenses the error. Multiruns and Hydra's
    informational flags are left to Hydra.
    """
    from hydra import compose, initialize_config_dir

    args = sys.argv[1:] if argv is None else argv
    if any(a.split("=", 1)[0] in _HYDRA_FLAGS for a in args):
        return
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            compose(config_name, overrides=args)
    except Exception as e:  # Hydra's composition and override-grammar errors
        reason = first_line(e)
        cause = e.__cause__
        if cause is not None and str(cause).strip():
            reason = f"{reason.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(2)


def is_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(fn: Callable[[], T]) -> T:
    """Run one job; turn user errors and interruptions into one line and an exit code."""
    try:
        return fn()
    except RunInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(143)  # stops a sweep too: rerun the same command to resume
    except (NonFiniteError, DiskFullError) as e:  # not bugs: one line, not a traceback
        if is_multirun():
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as e:
        if is_multirun():
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def sweep_logger(
    logger: LoggerConfig, sweep_dir: str, job_name: str, swept: list[str]
) -> LoggerConfig:
    """A sweep job's W&B identity: group = the sweep dir, name = its overrides, tags = keys."""
    return dataclasses.replace(
        logger,
        group=logger.group or sweep_dir,
        name=logger.name or job_name,
        tags=[*logger.tags, *swept],
    )


def threads_per_job(launcher: DictConfig) -> int | None:
    """Parallel local jobs share the cores: each gets cores / n_jobs torch threads, so that
    they do not oversubscribe the machine. None (torch's default) for one job at a time."""
    cpus = launcher.get("cpus_per_task")  # submitit: what the scheduler gives each job
    if isinstance(cpus, int) and cpus > 0:
        return cpus
    n_jobs = launcher.get("n_jobs")  # joblib
    if not isinstance(n_jobs, int) or n_jobs == 1:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else n_jobs))


@contextlib.contextmanager
def rank_output(run_dir: Path, job_name: str) -> Iterator[None]:
    """Ranks other than 0 print into `<job>.rank<N>.log` in the run dir, beside their Hydra
    log, rather than repeat rank 0's lines on the console; errors still go to stderr."""
    suffix = ranks.rank_suffix()
    if not suffix:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with (
        open(run_dir / f"{job_name}{suffix}.log", "a", buffering=1) as out,
        contextlib.redirect_stdout(out),
    ):
        yield


# Raised by every rank at the same point (a config checked the same way everywhere, a step
# all ranks agreed was non-finite): the ranks stay in step, so a sweep can go on.
_AGREED_ERRORS = (*USER_ERRORS, NonFiniteError)


def train_job(cfg: DictConfig) -> float:
    """What train.py runs for each job: returns the best dev CER (what sweepers minimise)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    ddp = distributed.setup()  # once per process: a multirun's later jobs reuse the group
    with rank_output(run_dir, hydra_cfg.job.name):
        if not is_multirun():
            return train(to_train_config(cfg), run_dir, overrides)
        return _sweep_job(cfg, hydra_cfg, run_dir, overrides, ddp)


def _sweep_job(
    cfg: DictConfig,
    hydra_cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    ddp: distributed.DDP,
) -> float:
    # Rank 0 reads and decides; the others must not race it (it deletes and rewrites files).
    previous = ddp.broadcast(read_summary(run_dir) if ddp.is_main else None)
    if previous.get("status") == "ok":
        print(f"[sweep] {run_dir.name}: already finished (dev CER {previous.get('best_dev_cer')})")
        return float(previous.get("best_dev_cer") or "inf")
    if previous.get("status") == "failed" and not previous.get("resumable"):
        print(f"[sweep] {run_dir.name}: failed before, rerunning from scratch")
        for name in RUN_FILES if ddp.is_main else ():
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        ddp.barrier()
    try:
        train_cfg = to_train_config(cfg)
        swept = list(parse_overrides(overrides))
        train_cfg.logger = sweep_logger(train_cfg.logger, hydra_cfg.sweep.dir, run_dir.name, swept)
        if train_cfg.trainer.num_threads is None:
            train_cfg.trainer.num_threads = threads_per_job(hydra_cfg.launcher)
        return train(train_cfg, run_dir, overrides)
    except RunInterrupted:
        raise
    except Exception as e:
        if ddp.is_main:
            with contextlib.suppress(DiskFullError):  # the job's own error says more
                record_failure(run_dir, e, overrides=overrides)
        if ddp.enabled and not isinstance(e, _AGREED_ERRORS):
            # One rank failed on its own: the others wait in a collective it will never join.
            # Hydra would go on to the next job out of step with them, so end this process
            # instead; torchrun (or Slurm) then stops the whole job.
            traceback.print_exc()
            raise SystemExit(1) from e
        raise


def evaluate_job(cfg: DictConfig) -> float:
    """What evaluate.py runs: returns the objective (CER, or WER for decoder tuning). In a
    sweep, every job logs to the sweep's W&B group, named by its overrides."""
    from asr.config import to_evaluate_config
    from asr.evaluation import evaluate_checkpoint

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    eval_cfg = to_evaluate_config(cfg)
    if is_multirun():
        swept = list(parse_overrides(list(hydra_cfg.overrides.task)))
        eval_cfg.logger = sweep_logger(eval_cfg.logger, hydra_cfg.sweep.dir, run_dir.name, swept)
        eval_cfg.num_threads = eval_cfg.num_threads or threads_per_job(hydra_cfg.launcher)
    return float(evaluate_checkpoint(eval_cfg, run_dir)[eval_cfg.objective])
