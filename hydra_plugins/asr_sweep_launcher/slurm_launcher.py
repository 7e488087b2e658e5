"""asr-sweep's Slurm launcher: hydra-submitit-launcher's, made to hold on a real cluster.

`hydra/launcher=slurm` and `slurm_ddp` use it. What it adds to
`hydra_plugins.hydra_submitit_launcher`'s SlurmLauncher, each from something a real cluster
was seen to do:

- **Every job is waited for, and a lost one is a failed one.** The parent collects results one
  job at a time and learns a job's state from `sacct`. Without Slurm's accounting database
  `sacct` answers nothing, and a job that ends without a result file (killed hard, out of
  memory, its node lost, a time limit with no requeue left) was waited for forever; with it,
  the first such job raised and abandoned the rest of the array. Here `squeue`, which needs no
  accounting, says when a job has left the queue; one that left without a result is recorded
  as failed in its summary.json and in Hydra's results, and the others are still collected.
- **The batch script outlives the preemption warning.** `scancel --signal=USR2 --full` signals
  every process of the job, the batch shell too, and bash's default for USR2 is to exit: the
  job would end before the trainer had saved. The script traps USR2 first.
- **A requeued job resumes.** A job requeued on the warning reruns the same Hydra job, whose
  run directory holds the last.pt that the trainer saved before it was requeued (asr.cluster).
- **One process reports.** The jobs leave the sweep's report to this one, which refreshes its
  tables as their results come in (asr.sweep draws the plots at the end), rather than every
  job rebuilding it at once into the same files.

(No `from __future__ import annotations` here: Hydra's plugin scan imports this module without
registering it in sys.modules, where dataclasses look string annotations up.)
"""

import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# Slurm job states after which a job will not run again (squeue's long names).
ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
# The batch shell's first line of set-up: survive a USR2 sent to the whole job, and say so.
TRAP_WARNING = "trap 'echo \"batch script: USR2 received; the training saves and requeues\"' USR2"


@dataclass
class AsrSlurmQueueConf(SlurmQueueConf):
    """submitit_slurm's settings, and this launcher's own."""

    _target_: str = "hydra_plugins.asr_sweep_launcher.slurm_launcher.SlurmLauncher"
    poll_s: float = 2.0  # how often squeue is asked while the jobs run
    # How long a job's result may lag its end (a shared disk's cache; submitit waits 15 s).
    result_grace_s: float = 15.0


ConfigStore.instance().store(
    group="hydra/launcher", name="asr_slurm", node=AsrSlurmQueueConf, provider="asr-sweep"
)


class JobLost(RuntimeError):
    """A Slurm job ended without writing its result."""


def slurm_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """Each job's state as `squeue` reports it (array tasks one by one, as `<array>_<task>`);
    a job Slurm no longer knows is absent. None when squeue itself failed."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T"]
    try:
        out = subprocess.run(
            [*command, f"--jobs={','.join(arrays)}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("squeue failed (%s); asking again later", e)
        return None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # every job asked for has left Slurm's memory
            return {}
        log.warning("squeue failed (%s); asking again later", out.stderr.strip())
        return None
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        states[job_id] = state
    return states


def has_result(job: Any) -> bool:
    """Every task of the submitit job wrote its result (a DDP job has one task per rank)."""
    return all(job.task(i).paths.result_pickle.exists() for i in range(job.num_tasks))


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher, with the additions of the module docstring."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.poll_s = float(self.params.pop("poll_s", 2.0))
        self.result_grace_s = float(self.params.pop("result_grace_s", 15.0))
        self.params["setup"] = [TRAP_WARNING, *(self.params.get("setup") or [])]

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        """Submit the jobs as one array, wait for all of them, and return their results.

        The submission is the parent's (its executor, parameters and job arguments), written
        out here because the parent's `launch` also waits, job after job, the way this one
        replaces.
        """
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Slurm sweep output dir: {sweep_dir}")
        job_args = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_args.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        jobs = self._executor().map_array(self, *zip(*job_args, strict=True))
        lost = self._wait(jobs, sweep_dir)
        return [
            self._result(job, list(overrides), lost.get(job.job_id))
            for job, overrides in zip(jobs, job_overrides, strict=True)
        ]

    def _executor(self) -> Any:
        """submitit's Slurm executor with this launcher's parameters, as the parent sets it."""
        import submitit  # lazy: Hydra imports plugins at every start

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        return executor

    def _wait(self, jobs: Sequence[Any], sweep_dir: Path) -> dict[str, str]:
        """Wait until every job has a result or has left the queue without one, refreshing the
        sweep's report as they end; return the lost ones' last known Slurm state."""
        from asr.report import make_report  # lazy: Hydra imports plugins at every start

        waiting = {job.job_id: job for job in jobs}
        last_state: dict[str, str] = {}
        gone_since: dict[str, float] = {}
        lost: dict[str, str] = {}
        while waiting:
            before = len(waiting)
            states = slurm_states(list(waiting))
            now = time.monotonic()
            for job_id, job in list(waiting.items()):
                if has_result(job):
                    del waiting[job_id]
                    continue
                if states is None:
                    continue
                state = states.get(job_id)
                if state is not None and state not in ENDED:  # pending, running, requeued
                    gone_since.pop(job_id, None)
                    last_state[job_id] = state
                    continue
                last_state[job_id] = state or last_state.get(job_id, "gone from the queue")
                if now - gone_since.setdefault(job_id, now) >= self.result_grace_s:
                    lost[job_id] = last_state[job_id]
                    del waiting[job_id]
            if len(waiting) < before:
                make_report(sweep_dir, plots=False)
                log.info(f"{len(jobs) - len(waiting)} of {len(jobs)} jobs ended")
            if waiting:
                time.sleep(self.poll_s)
        return lost

    def _result(self, job: Any, overrides: list[str], lost_state: str | None) -> JobReturn:
        """The job's JobReturn. A job that wrote none failed, and its summary.json says so (the
        sweep's report shows it, and a resumed sweep reruns it), unless the run had finished:
        then only what came after its training was lost."""
        from asr.tracking import read_summary, record_failure  # lazy: plugins load at start-up

        if lost_state is None:
            try:
                return job.results()[0]
            except Exception as e:  # submitit's own failure: the job raised outside Hydra
                error: Exception = e
        else:
            error = JobLost(
                f"Slurm job {job.job_id} ended ({lost_state}) without a result: killed, out of "
                f"memory or out of time? Its log: {job.task(0).paths.stderr}"
            )
        run_dir = self._run_dir(overrides)
        finished = read_summary(run_dir).get("status") == "ok"
        log.error("job %s (%s): %s", job.job_id, run_dir.name, str(error).splitlines()[0])
        if not finished:
            record_failure(run_dir, error, overrides=overrides, slurm_job_id=job.job_id)
        return JobReturn(
            overrides=overrides,
            working_dir=str(run_dir),
            task_name=str(self.config.hydra.job.name),
            status=JobStatus.COMPLETED if finished else JobStatus.FAILED,
            _return_value=read_summary(run_dir).get("best_dev_cer") if finished else error,
        )

    def _run_dir(self, overrides: list[str]) -> Path:
        """The job's folder, composed as the job composes it."""
        sweep = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        return Path(str(sweep.hydra.sweep.dir)) / str(sweep.hydra.sweep.subdir)
