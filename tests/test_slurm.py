"""On a real one-node Slurm cluster (tests/slurm_cluster.py): sweeps as job arrays, failures
isolated, preemption warnings and time limits survived by requeueing, multi-node DDP.

Every job here is submitted the way a user submits it: `train.py --multirun
hydra/launcher=slurm ...`, `sbatch slurm/train.sbatch ...`, `sbatch slurm/multinode.sbatch ...`,
with CPU-only settings (`gpus_per_node=0`, one CPU per task).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_CORPUS, TINY_MODEL
from tests.slurm_cluster import SlurmCluster, free_port
from tests.test_faults import assert_same_training, last_logged_step, train_args
from tests.wandb_offline import read_offline_run

pytestmark = pytest.mark.slow

# What a CPU-only cluster user sets: no GPU, one CPU and a little memory per job.
LAUNCHER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
    "hydra.launcher.result_grace_s=3",
]


def env_for(cluster: SlurmCluster) -> dict[str, str]:
    """The test process's environment, as a user's shell would hand it to sbatch: the cluster,
    and the virtual environment's commands (asr-train, torchrun) on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return cluster.client_env(env)


def run(cluster: SlurmCluster, args: list[str], cwd: Path, timeout: float = 300):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env_for(cluster),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def overrides(job: Path) -> list[str]:
    """The job's own overrides, as Hydra saved them when the job started."""
    path = job / ".hydra" / "overrides.yaml"
    return [line[2:] for line in path.read_text().splitlines()] if path.is_file() else []


def job_folders(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/summary.json"))


def wait_for(what: Callable[[], object], timeout: float, message: Callable[[], str]) -> object:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, message()
        time.sleep(0.05)
    return found


def common(cache: Path) -> list[str]:
    return [*TINY_CORPUS, *TINY_MODEL, f"data.cache_dir={cache}", "data.batch_size=4"]


# ---- sweeps -------------------------------------------------------------------------------------


def test_a_grid_is_one_job_array_and_a_job_killed_hard_leaves_the_others_finished(
    slurm_cluster: SlurmCluster, corpus_cache: Path, tmp_path: Path
):
    """A 2x2 grid, one of whose jobs is killed with SIGKILL while it trains, as the OOM killer
    would: it leaves no result, which the launcher notices from squeue (there is no accounting
    database here), and the sweep still ends, every job accounted for, in one W&B group."""
    sweep = tmp_path / "sweep"
    args = [str(ROOT / "train.py"), "--multirun", *LAUNCHER, *common(corpus_cache)]
    args += ["trainer.max_steps=3", "data.batch_size=2,4", "model.n_rnn=1,2"]
    proc = subprocess.Popen(
        [sys.executable, *args, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=env_for(slurm_cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim_overrides = {"data.batch_size=4", "model.n_rnn=2"}
    try:

        def victim_running() -> Path | None:
            for job in job_folders(sweep):
                s = summary(job)
                if victim_overrides <= set(overrides(job)) and s["status"] == "running":
                    return job if "pid" in s else None
            return None

        victim = wait_for(victim_running, 180, slurm_cluster.logs)
        os.kill(summary(victim)["pid"], signal.SIGKILL)
        out = proc.communicate(timeout=180)[0]
    finally:
        proc.kill()
    assert proc.returncode != 0, out[-3000:]  # the sweep says that a job failed
    jobs = job_folders(sweep)
    assert len(jobs) == 4, out[-3000:]
    # One array of 4 tasks: submitit names them <array id>_<task>.
    ids = sorted(summary(j)["slurm_job_id"] for j in jobs)
    assert len({i.split("_")[0] for i in ids}) == 1
    assert sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]
    for job in jobs:
        s = summary(job)
        if job == victim:
            assert s["status"] == "failed" and "without a result" in s["error"], s
            assert s["slurm_job_id"] in s["error"]
        else:
            assert s["status"] == "ok" and s["step"] == 3 and s["torch_threads"] == 1, s
    assert "[sweep] 3 succeeded, 1 failed or unfinished" in out
    assert "failed" in (sweep / "report.md").read_text() and (sweep / "report.html").is_file()
    runs = [read_offline_run(j / "wandb") for j in jobs if j != victim]
    assert {r.group for r in runs} == {str(sweep)} and all(r.complete for r in runs)
    assert len({r.run_id for r in runs}) == 3

    # Decoder tuning through the same launcher: two jobs, one forward pass of the model.
    tune, trained = tmp_path / "tune", next(j for j in jobs if j != victim)
    ev = [str(ROOT / "evaluate.py"), "--multirun", *LAUNCHER, f"ckpt={trained}"]
    ev += ["+sweep=decode_grid", "decode.lm_weight=0,1.5", "decode.sil_score=0"]
    result = run(slurm_cluster, [*ev, f"hydra.sweep.dir={tune}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    evals = [json.loads(p.read_text()) for p in sorted(tune.glob("*/eval.json"))]
    assert len(evals) == 2 and sum(not e["emissions_cached"] for e in evals) == 1
    assert "python evaluate.py ckpt=" in result.stdout and (tune / "tuning.md").is_file()


def test_slurm_ddp_runs_one_job_as_one_ddp_run_of_its_tasks(
    slurm_cluster: SlurmCluster, corpus_cache: Path, tmp_path: Path
):
    """hydra/launcher=slurm_ddp: srun starts the job's tasks, one process per GPU (here two
    CPU tasks), which train as one DDP run; the launcher waits for every task's result."""
    sweep = tmp_path / "sweep"
    launcher = ["hydra/launcher=slurm_ddp", "hydra.launcher.tasks_per_node=2", *LAUNCHER[1:]]
    args = [str(ROOT / "train.py"), "--multirun", *launcher, *common(corpus_cache)]
    args += ["trainer.max_steps=2"]
    result = run(slurm_cluster, [*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = job_folders(sweep)
    s = summary(job)
    assert s["status"] == "ok" and s["world_size"] == 2 and s["step"] == 2
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    assert "ddp: rank 0 of 2 (slurm" in logs and "ddp: rank 1 of 2 (slurm" in logs


# ---- preemption and time limits -----------------------------------------------------------------

STEPS = 80  # long enough that a warning sent after step 10 lands mid-run


@pytest.fixture(scope="module")
def one_thread_reference(corpus_cache: Path, tmp_path_factory) -> Path:
    """An uninterrupted run with the settings of the interrupted ones (one torch thread, as
    each Slurm job here has one CPU)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    args = train_args(corpus_cache, run_dir, f"trainer.max_steps={STEPS}")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "trainer.num_threads=1"],
        cwd=run_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def assert_resumed_exactly(reference: Path, run_dir: Path, stopped_at: int) -> None:
    """Ended as the reference did, bit for bit; one W&B run, which logged up to the save."""
    assert_same_training(reference, run_dir, steps=STEPS)
    s = summary(run_dir)
    assert s["requeues"] == 1 and s["status"] == "ok"
    attempts = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and {d.name.split("-")[-1] for d in attempts} == {s["run_id"]}
    first = read_offline_run(attempts[0])
    steps = [row["step"] for row in first.history if "train/loss" in row]
    assert first.complete and max(steps) == stopped_at  # W&B logged through the warning


def test_the_warning_to_every_process_saves_requeues_and_resumes_exactly(
    slurm_cluster: SlurmCluster, corpus_cache: Path, one_thread_reference: Path, tmp_path: Path
):
    sweep = tmp_path / "sweep"
    args = [str(ROOT / "train.py"), "--multirun", *LAUNCHER]
    args += train_args(corpus_cache, tmp_path / "unused", f"trainer.max_steps={STEPS}")
    proc = subprocess.Popen(
        [sys.executable, *args, "trainer.num_threads=1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=env_for(slurm_cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def training() -> Path | None:
            jobs = job_folders(sweep)
            return (
                jobs[0] if jobs and last_logged_step(jobs[0] / "metrics.jsonl", 0) >= 10 else None
            )

        job = wait_for(training, 180, slurm_cluster.logs)
        # What a preemption warning does: USR2 to every process of the job, batch shell too.
        slurm_cluster.run("scancel", "--signal=USR2", "--full", summary(job)["slurm_job_id"])
        out = proc.communicate(timeout=240)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    log = "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.out")))
    saved = re.findall(r"stop: SIGUSR2, the scheduler's warning: saved \S+ at step (\d+)", log)
    resumed = re.findall(r"resumed from \S+last\.pt at step (\d+)", log)
    assert len(saved) == 1 and resumed == saved, log[-3000:]
    assert "Requeued job" in log  # submitit requeued it
    assert_resumed_exactly(one_thread_reference, job, int(saved[0]))


def sbatch(cluster: SlurmCluster, script: str, options: list[str], args: list[str], cwd: Path):
    """Submit `slurm/<script>` with train.py's `args`, as a user would; the job id."""
    command = ["sbatch", "--parsable", "--gpus-per-node=0", "--mem=1G", *options]
    submitted = subprocess.run(
        [*command, str(ROOT / "slurm" / script), *args],
        cwd=cwd,
        env=env_for(cluster),
        capture_output=True,
        text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip().split(";")[0]


def wait_until_gone(cluster: SlurmCluster, job_id: str, log: Path, timeout: float) -> None:
    def ended() -> bool:
        return cluster.job_state(job_id) in (None, "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")

    wait_for(ended, timeout, lambda: log.read_text()[-3000:] if log.exists() else "no log")


def test_a_plain_sbatch_job_past_its_time_limit_is_requeued_and_finishes(
    slurm_cluster: SlurmCluster, corpus_cache: Path, tmp_path: Path
):
    """slurm/train.sbatch with a one-minute limit and a 36-second training budget: Slurm's own
    warning, 30 s before the limit, comes at its first time-limit check (they run every 30 s),
    so within the first 30 s of the job, perhaps while it starts (train.py keeps it then). The
    trainer saves and requeues the job; the requeued job gets a longer limit, as a real job's
    remaining work would fit in it, and finishes."""
    args = [*common(corpus_cache), "trainer.num_threads=1", "trainer.max_minutes=0.6"]
    args += ["trainer.max_epochs=null", "trainer.max_steps=null"]  # the clock is the budget
    args += ["trainer.log_every_steps=1", "trainer.eval_every_steps=100"]
    options = ["--time=1", "--signal=B:USR2@30", "--cpus-per-task=1"]
    job_id = sbatch(slurm_cluster, "train.sbatch", options, args, tmp_path)
    run_dir, log = tmp_path / "outputs" / f"slurm-{job_id}", tmp_path / f"slurm-{job_id}.out"

    def requeued() -> bool:
        return "requeued Slurm job" in (log.read_text() if log.exists() else "")

    wait_for(requeued, 120, lambda: log.read_text()[-3000:] if log.exists() else "no log")
    slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "TimeLimit=10")
    wait_until_gone(slurm_cluster, job_id, log, 180)
    out = log.read_text()
    saved = re.findall(r"stop: SIGUSR2, the scheduler's warning: saved \S+ at step (\d+)", out)
    assert len(saved) == 1 and f"requeued Slurm job {job_id}" in out, out[-3000:]
    assert f"resumed from {run_dir / 'last.pt'} at step {saved[0]}," in out, out[-3000:]
    s = summary(run_dir)
    assert s["status"] == "ok" and s["requeues"] == 1 and s["step"] >= int(saved[0]), s
    assert s["slurm_job_id"] == job_id
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {d.name.split("-")[-1] for d in runs} == {s["run_id"]}


# ---- multi-node DDP -----------------------------------------------------------------------------


def test_two_nodes_train_like_one_process_on_the_same_global_batches(
    slurm_cluster: SlurmCluster, corpus_cache: Path, tmp_path: Path
):
    """slurm/multinode.sbatch as two Slurm tasks, which the script treats as two nodes: one
    torchrun each (one process, gloo), meeting through c10d rendezvous on this host. They
    train like one process fed, at each step, the union of both ranks' batches."""
    from tests.test_ddp import COMMON, UNION_WRAPPER, losses

    args = [*COMMON, f"data.cache_dir={corpus_cache}", "trainer.max_steps=8"]
    args += ["trainer.num_threads=1"]
    options = ["--time=10", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2", "--cpus-per-task=1"]
    os.environ.update(NPROC_PER_NODE="1", MASTER_PORT=str(free_port()))  # sbatch passes them on
    try:
        job_id = sbatch(slurm_cluster, "multinode.sbatch", options, args, tmp_path)
    finally:
        del os.environ["NPROC_PER_NODE"], os.environ["MASTER_PORT"]
    log, run_dir = tmp_path / f"slurm-{job_id}.out", tmp_path / "outputs" / f"slurm-{job_id}"
    wait_until_gone(slurm_cluster, job_id, log, 240)
    s = summary(run_dir)
    assert s["status"] == "ok" and s["world_size"] == 2 and s["step"] == 8, log.read_text()
    out = log.read_text()
    assert "ddp: rank 0 of 2 (torchrun" in out and "ddp: rank 1 of 2 (torchrun" in out

    wrapper = tmp_path / "union_train.py"
    wrapper.write_text(f"TRAIN = {str(ROOT / 'train.py')!r}\n{UNION_WRAPPER}")
    single_dir = tmp_path / "single"
    single = subprocess.run(
        [sys.executable, str(wrapper), *args, f"hydra.run.dir={single_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    want, got = losses(single_dir), losses(run_dir)
    assert sorted(want) == list(range(1, 9)) and set(got) == set(want)
    for step, loss in want.items():
        assert got[step] == pytest.approx(loss, rel=1e-4), step
    assert s["best_dev_cer"] == summary(single_dir)["best_dev_cer"]
