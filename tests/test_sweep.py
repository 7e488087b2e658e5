"""Real Hydra multiruns in a subprocess: failures recorded, reports written, sweeps resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_CORPUS, TINY_MODEL, run_script
from tests.wandb_offline import read_offline_run

pytestmark = pytest.mark.slow


def sweep_args(cache: Path, sweep_dir: Path, *extra: str) -> list[str]:
    return [
        "--multirun",
        *TINY_CORPUS,
        *TINY_MODEL,
        f"data.cache_dir={cache}",
        "data.batch_size=4",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


def job_with(sweep_dir: Path, override: str) -> Path | None:
    """The job folder whose overrides include `override` (Hydra writes them as the job starts)."""
    for path in sweep_dir.glob("*/.hydra/overrides.yaml"):
        if f"- {override}" in path.read_text().splitlines():
            return path.parent.parent
    return None


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def test_a_failing_job_does_not_stop_the_sweep(corpus_cache: Path, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(corpus_cache, sweep_dir, "trainer.max_steps=3", "model.n_rnn=0,1")
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode != 0  # the sweep says something failed
    jobs = {p.name: p for p in sweep_dir.iterdir() if (p / "summary.json").is_file()}
    bad = next(p for name, p in jobs.items() if "model.n_rnn-0" in name)
    good = next(p for name, p in jobs.items() if "model.n_rnn-1" in name)
    assert "=" not in good.name and "," not in good.name
    assert summary(bad)["status"] == "failed"
    assert "model.n_rnn must be >= 1 (got 0)" in summary(bad)["error"]
    assert summary(good)["status"] == "ok" and summary(good)["step"] == 3
    report = (sweep_dir / "report.md").read_text()
    assert "failed" in report and "ok" in report
    assert (sweep_dir / "plots" / "learning_curves.png").is_file()
    assert "[sweep] 1 succeeded, 1 failed or unfinished" in result.stdout
    run = read_offline_run(good / "wandb")
    assert run.group == str(sweep_dir) and run.name == good.name
    assert "model.n_rnn" in run.tags and run.complete
    # the job folder's name goes back through Hydra unquoted
    ev = run_script(
        "evaluate.py", [f"ckpt={good}", f"hydra.run.dir={tmp_path / 'ev'}"], cwd=tmp_path
    )
    assert ev.returncode == 0, ev.stderr[-2000:]


def test_an_interrupted_sweep_resumes(corpus_cache: Path, tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(
        corpus_cache, sweep_dir, "trainer.eval_every_steps=5", "trainer.max_steps=10,80"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        long = job_with(sweep_dir, "trainer.max_steps=80")
        if long is not None and (long / "last.pt").is_file():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out[-2000:]
    short = job_with(sweep_dir, "trainer.max_steps=10")
    assert summary(short)["status"] == "ok"
    assert summary(long)["status"] == "interrupted", out[-2000:]
    stopped_at = torch_step(long / "last.pt")
    assert 5 <= stopped_at < 80
    short_metrics = (short / "metrics.jsonl").read_text()

    # The same command again: the finished job is skipped, the interrupted one resumes.
    again = run_script("train.py", args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{short.name}: already finished" in again.stdout
    assert (short / "metrics.jsonl").read_text() == short_metrics  # not rerun
    assert f"at step {stopped_at}" in again.stdout
    assert summary(long)["status"] == "ok" and summary(long)["step"] == 80
    long_run, short_run = read_offline_run(long / "wandb"), read_offline_run(short / "wandb")
    assert long_run.run_id == summary(long)["run_id"]  # the same W&B run, resumed
    assert long_run.group == short_run.group == str(sweep_dir)  # one group for the sweep
    assert long_run.complete and short_run.complete and long_run.run_id != short_run.run_id


def torch_step(path: Path) -> int:
    from asr import checkpoint

    return checkpoint.load(path)["counters"]["step"]


def run_two_parallel_jobs(cache: Path, sweep_dir: Path, *launcher: str) -> list[dict]:
    """A 2-job sweep through `launcher`; checks both ran, in separate processes, at once."""
    args = sweep_args(cache, sweep_dir, *launcher, "trainer.max_steps=20", "model.n_rnn=1,2")
    result = run_script("train.py", args, cwd=sweep_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (summary(p.parent) for p in sorted(sweep_dir.glob("*/summary.json")))
    assert a["status"] == b["status"] == "ok"
    assert a["pid"] != b["pid"]  # separate processes
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]  # overlap
    return [a, b]


def test_joblib_runs_jobs_in_parallel_processes_sharing_the_cores(corpus_cache, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    jobs = run_two_parallel_jobs(
        corpus_cache, tmp_path / "sweep", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    cores = os.cpu_count() or 1
    assert all(job["torch_threads"] == max(1, cores // 2) for job in jobs)


def test_submitit_local_runs_the_same_code_path(corpus_cache, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    jobs = run_two_parallel_jobs(
        corpus_cache, sweep_dir, "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"
    )
    assert all(job["torch_threads"] == 1 for job in jobs)
    assert (sweep_dir / ".submitit").is_dir() and (sweep_dir / "report.md").is_file()


def test_optuna_search_three_trials(corpus_cache, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    args = sweep_args(
        corpus_cache,
        sweep_dir,
        "+hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage=sqlite:///{sweep_dir}/optuna.db",
        "trainer.max_steps=3",
    )
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    assert len(jobs) == 3 and all(summary(j)["status"] == "ok" for j in jobs)
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_value" in best
    cers = [summary(j)["best_dev_cer"] for j in jobs]
    assert any(f"{min(cers)}" in line for line in best.splitlines() if "best_value" in line)

    # The study is stored in SQLite: the same command continues it (3 more trials; a trial
    # that repeats finished settings is answered from its job's summary, not retrained).
    again = run_script("train.py", args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="asr-sweep", storage=f"sqlite:///{sweep_dir}/optuna.db")
    assert len(study.trials) == 6
