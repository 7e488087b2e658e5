"""Real Hydra multiruns in a subprocess: failures recorded, reports written, sweeps resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr.wandb_offline import read_offline_run
from tests.conftest import ROOT, TINY_CORPUS, TINY_MODEL, run_script

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
        long = next(sweep_dir.glob("*trainer.max_steps-80"), None)
        if long is not None and (long / "last.pt").is_file():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # what a scheduler sends
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out[-2000:]
    short = next(sweep_dir.glob("*trainer.max_steps-10"))
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
    assert read_offline_run(long / "wandb").run_id == summary(long)["run_id"]


def torch_step(path: Path) -> int:
    import torch

    return torch.load(path, weights_only=False)["counters"]["step"]
