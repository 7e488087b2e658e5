"""Crash safety and exact resume: a run killed at any moment ends as if it had never stopped.

The slow tests run train.py in subprocesses, as a scheduler would: SIGKILL at random moments
(two of them while a checkpoint is half-written) and SIGTERM, each followed by the same command
again; the final weights must equal, bit for bit, those of a run that was never interrupted.
The fast tests check the pieces that exactness rests on.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asr import checkpoint
from asr.data.dataset import BucketBatchSampler, SpeechDataset, Utterance
from asr.data.loader import make_loader
from asr.features import LogMel, SpecAugment
from asr.tracking import LoggerConfig, Tracker
from tests.conftest import ROOT, TINY_CORPUS, TINY_MODEL, run_script
from tests.wandb_offline import read_offline_run

MAX_STEPS = 40  # about 3.6 epochs of the tiny corpus at batch size 4 (11 batches an epoch)

# Launches train.py with test-only faults, chosen by environment variables, patched in from
# outside so that the product code carries no test hooks:
# - FAULT_SAVE_PAUSE_S: torch.save (what checkpoint.save_atomic calls) writes half the bytes,
#   pauses, then writes the rest, so a kill can reliably land in the middle of a write.
# - FAULT_NAN_GRAD_FROM_STEP: from that training step on, every gradient is NaN (the loss stays
#   finite), as with an overflow in the backward pass.
WRAPPER = """
import io, os, runpy, sys, time

import torch

pause = float(os.environ.get("FAULT_SAVE_PAUSE_S", "0"))
if pause:
    real_save = torch.save

    def save_in_two_halves(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(pause)
        f.write(data[len(data) // 2 :])

    torch.save = save_in_two_halves

nan_from = int(os.environ.get("FAULT_NAN_GRAD_FROM_STEP", "0"))
if nan_from:
    import asr.loop

    real_loss, calls = asr.loop.ctc_loss, [0]

    def loss_with_nan_gradient(log_probs, *args, **kwargs):
        calls[0] += 1
        if calls[0] >= nan_from:
            log_probs.register_hook(lambda grad: grad * float("nan"))
        return real_loss(log_probs, *args, **kwargs)

    asr.loop.ctc_loss = loss_with_nan_gradient

sys.argv = [TRAIN, *sys.argv[1:]]
runpy.run_path(TRAIN, run_name="__main__")
"""


# ---- the pieces exactness rests on ----------------------------------------------------------


def test_specaugment_with_a_generator_draws_exactly_like_torchaudio():
    """The masks come from a per-utterance generator now; their distribution is unchanged:
    seeded alike, the old torchaudio transforms and SpecAugment mask the same cells."""
    rnd = random.Random(0)
    for trial in range(300):
        spec = torch.randn(rnd.choice([16, 32, 80]), rnd.randint(1, 400)) + 10.0
        fm, fw, tm, tw = rnd.randint(0, 3), rnd.choice([0, 15, 27]), rnd.randint(0, 3), 40
        ratio = rnd.choice([0.05, 0.1, 1.0])
        torch.manual_seed(trial)
        expected = spec
        for _ in range(fm):
            expected = torchaudio.transforms.FrequencyMasking(fw)(expected, 0.0)
        for _ in range(tm):
            expected = torchaudio.transforms.TimeMasking(tw, p=ratio)(expected, 0.0)
        aug = SpecAugment(fm, fw, tm, tw, ratio).train()
        assert torch.equal(aug(spec, torch.Generator().manual_seed(trial)), expected)


def tone_utterances(tmp_path: Path, n: int) -> list[Utterance]:
    utts = []
    for i in range(n):
        seconds = 0.5 + 0.1 * i
        t = np.arange(int(seconds * 16000)) / 16000
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
        utts.append(Utterance(f"u{i}", path, "ab", (2, 3), seconds))
    return utts


def test_augmented_features_depend_only_on_seed_epoch_and_utterance(tmp_path):
    utts = tone_utterances(tmp_path, 2)
    aug = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_width=20, time_width_ratio=0.3)

    def feats(seed: int, epoch: int, index: int) -> torch.Tensor:
        ds = SpeechDataset(utts, LogMel(16000, 32), aug, seed=seed)
        ds.set_epoch(epoch)
        torch.manual_seed(random.randrange(2**31))  # the global RNG must not matter
        return ds[index].feats

    assert torch.equal(feats(0, 3, 1), feats(0, 3, 1))
    assert not torch.equal(feats(0, 3, 1), feats(0, 4, 1))  # new masks every epoch
    assert not torch.equal(feats(0, 3, 1), feats(1, 3, 1))  # and for every seed


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loaders_leave_the_global_rng_alone(tmp_path, num_workers):
    """Creating an iterator used to draw from torch's global RNG (dropout's), so a resumed run,
    with one iterator more than a run that never stopped, drew different dropout masks."""
    utts = tone_utterances(tmp_path, 6)
    logmel, aug = LogMel(16000, 32), SpecAugment()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for augment, shuffle in ((aug, True), (None, False)):  # a train and an eval loader
        loader, sampler = make_loader(
            utts,
            logmel,
            batch_size=2,
            augment=augment,
            num_buckets=2,
            shuffle=shuffle,
            num_workers=num_workers,
        )
        for epoch in range(2):
            sampler.set_epoch(epoch, start=epoch)  # the second as if resumed mid-epoch
            expected = [u for b in sampler.batches(epoch)[epoch:] for u in b]
            assert [it.utt_id for b in loader for it in b.utts] == [
                utts[i].utt_id for i in expected
            ]
    assert torch.equal(torch.get_rng_state(), before)


def test_sampler_resumed_at_any_batch_completes_the_epoch_exactly():
    durations = list(np.random.default_rng(0).uniform(1, 10, size=37))
    for epoch in (0, 5):
        whole = BucketBatchSampler(durations, 4, num_buckets=3, seed=7).batches(epoch)
        for start in range(len(whole) + 1):
            resumed = BucketBatchSampler(durations, 4, num_buckets=3, seed=7)  # a new process
            resumed.set_epoch(epoch, start)
            seen = [i for b in whole[:start] + list(resumed) for i in b]
            assert sorted(seen) == list(range(37))  # each utterance once, none skipped


def test_tracker_writes_the_run_id_before_wandb_starts(tmp_path, monkeypatch):
    """Killed during W&B's start-up (before any checkpoint), a restart finds the id and
    resumes that W&B run instead of starting a second one."""
    seen = {}

    def start_wandb(self, config):
        seen.update(json.loads((self.run_dir / "summary.json").read_text()))

    monkeypatch.setattr(Tracker, "_start_wandb", start_wandb)
    with Tracker(tmp_path, LoggerConfig(mode="offline"), {}, run_id="abc12345"):
        pass
    assert seen["run_id"] == "abc12345" and seen["status"] == "running"


def test_tracker_drops_a_line_torn_by_a_kill(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    with Tracker(tmp_path, LoggerConfig(kind="none"), {}) as tracker:
        tracker.log({"loss": 1.5}, step=2)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


# ---- whole runs, killed and restarted ---------------------------------------------------------


def train_args(cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        *TINY_CORPUS,
        *TINY_MODEL,
        f"data.cache_dir={cache}",
        "data.batch_size=4",
        "trainer.log_every_steps=1",  # every step in metrics.jsonl: the test watches progress
        f"trainer.max_steps={MAX_STEPS}",
        "trainer.checkpoint_every_steps=4",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def write_wrapper(directory: Path) -> Path:
    path = directory / "fault_train.py"
    path.write_text(f"TRAIN = {str(ROOT / 'train.py')!r}\n{WRAPPER}")
    return path


def launch(args: list[str], log: Path, wrapper: Path | None = None, **env: str):
    """train.py (or the fault wrapper) in its own process group, like a scheduler's job."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | env
    script = wrapper or ROOT / "train.py"
    with open(log, "w") as out:  # a file, not a pipe: tqdm's output could fill a pipe and block
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            cwd=log.parent,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until(
    proc: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        tail = log.read_text()[-2000:]
        assert proc.poll() is None, f"the run ended before it was to be stopped:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for the run:\n{tail}"
        time.sleep(0.005)


def last_logged_step(metrics: Path, offset: int) -> int:
    """The last training step that this launch (bytes after `offset`) wrote to metrics.jsonl."""
    if not metrics.is_file():
        return -1
    with open(metrics, "rb") as f:
        f.seek(offset)
        lines = [line for line in f.read().split(b"\n")[:-1] if line.strip()]
    return json.loads(lines[-1])["step"] if lines else -1


def temporaries(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".*.tmp-*"))


def assert_checkpoints_readable(run_dir: Path) -> None:
    for path in run_dir.glob("*.pt"):
        checkpoint.load(path)  # raises on a torn or foreign file


def assert_same_training(reference: Path, run_dir: Path, steps: int = MAX_STEPS) -> None:
    """Same step count and the same weights, bit for bit, as the uninterrupted run."""
    ref, got = read_summary(reference), read_summary(run_dir)
    assert got["status"] == "ok" and got["step"] == ref["step"] == steps
    assert got["best_dev_cer"] == ref["best_dev_cer"] and got["test_cer"] == ref["test_cer"]
    assert_same_checkpoints(reference, run_dir)


def assert_same_checkpoints(reference: Path, run_dir: Path) -> None:
    """last.pt and best.pt hold the same step, weights, optimizer state and RNG, bit for bit."""
    for name in ("last.pt", "best.pt"):
        a, b = checkpoint.load(reference / name), checkpoint.load(run_dir / name)
        assert a["counters"]["step"] == b["counters"]["step"], name
        for key, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][key]), f"{name}: {key} differs"
        for i, state in a["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b["optimizer"]["state"][i][key]), f"{name}: optim {key}"
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]), name


def read_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"  # written atomically: absent or whole
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.fixture(scope="module")
def reference(corpus_cache: Path, tmp_path_factory) -> Path:
    """A run that is never interrupted: what every interrupted run must end up equal to."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_script("train.py", train_args(corpus_cache, run_dir), cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_sigkill_at_random_moments_then_restart_ends_exactly_like_an_uninterrupted_run(
    corpus_cache: Path, reference: Path, tmp_path: Path
):
    run_dir = tmp_path / "run"
    args = train_args(corpus_cache, run_dir)
    wrapper = write_wrapper(tmp_path)
    metrics = run_dir / "metrics.jsonl"
    seed = int(os.environ.get("FAULT_TEST_SEED", "20261126"))  # other seeds, other plans
    rng = random.Random(seed)
    # Once during start-up (before any checkpoint: W&B's id must survive it), then at random
    # steps spread over the run; two of those wait for the next checkpoint write and kill it.
    plan = [("startup", 0)] + [("step", s) for s in sorted(rng.sample(range(2, MAX_STEPS), 5))]
    for i in rng.sample(range(1, len(plan)), 2):
        plan[i] = ("write", plan[i][1])
    print(f"FAULT_TEST_SEED={seed}: kills at {plan}")  # shown with a failure, to replay it

    resumed_at = []
    for n, (moment, step) in enumerate(plan):
        offset = metrics.stat().st_size if metrics.is_file() else 0
        log = tmp_path / f"launch-{n}.log"
        pause = {"FAULT_SAVE_PAUSE_S": "0.5"} if moment == "write" else {}
        stale = set(temporaries(run_dir))  # of an earlier kill; this launch removes them
        proc = launch(args, log, wrapper if pause else None, **pause)
        if moment == "startup":
            wait_until(proc, lambda: "run_id" in read_summary(run_dir), log)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            wait_until(proc, lambda s=step, o=offset: last_logged_step(metrics, o) >= s, log)
            # Under load a step's checkpoint can still be in flight a few ms after its metrics
            # line: these kills are meant to hit a run that has one to resume from.
            wait_until(proc, lambda: (run_dir / "last.pt").is_file(), log)
            if moment == "write":
                wait_until(proc, lambda old=stale: bool(set(temporaries(run_dir)) - old), log)
            else:
                time.sleep(rng.uniform(0.0, 0.05))
        assert proc.poll() is None, f"the run ended before kill {n}"
        os.killpg(proc.pid, signal.SIGKILL)  # the job, DataLoader worker included
        proc.wait(timeout=30)
        if moment == "startup":
            assert not (run_dir / "last.pt").exists(), "meant to die before its first checkpoint"
        if moment == "write":
            assert temporaries(run_dir), "the kill was meant to land mid-write"
        assert_checkpoints_readable(run_dir)
        resumed_at += re.findall(r"resumed from \S+ at step (\d+)", log.read_text())

    final = run_script("train.py", args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr[-3000:]
    resumed_at += re.findall(r"resumed from \S+ at step (\d+)", final.stdout)
    assert len(resumed_at) >= 5, resumed_at  # every launch after the first checkpoint resumed
    assert_checkpoints_readable(run_dir)
    assert not temporaries(run_dir), "stale temporaries of killed writes must be cleaned up"
    assert_same_training(reference, run_dir)

    # One W&B run, resumed by every launch (each adds an offline-run-*-<id> directory).
    summary = read_summary(run_dir)
    dirs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(dirs) >= len(plan)  # the start-up kill may land before W&B made its directory
    assert {d.name.split("-")[3] for d in dirs} == {summary["run_id"]}
    wb = read_offline_run(run_dir / "wandb")
    assert wb.run_id == summary["run_id"] and wb.complete and wb.exit_code == 0
    # metrics.jsonl stayed readable through every kill (resumed steps appear again)
    lines = metrics.read_text().splitlines()
    assert max(json.loads(line)["step"] for line in lines) == MAX_STEPS


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly_then_the_same_command_finishes_exactly(
    corpus_cache: Path, reference: Path, tmp_path: Path
):
    run_dir = tmp_path / "run"
    args = train_args(corpus_cache, run_dir)
    log = tmp_path / "launch.log"
    proc = launch(args, log)
    target = random.Random(3).randrange(5, MAX_STEPS - 5)
    wait_until(proc, lambda: last_logged_step(run_dir / "metrics.jsonl", 0) >= target, log)
    # Slurm (scancel, preemption) signals the whole job: the DataLoader worker too, which must
    # not die and take the run down with it before the main process has saved.
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()[-3000:]
    assert "interrupted: stopped by SIGTERM" in log.read_text()
    stopped = checkpoint.load(run_dir / "last.pt")["counters"]["step"]
    assert target <= stopped < MAX_STEPS
    summary = read_summary(run_dir)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert summary["step"] == stopped
    assert read_offline_run(run_dir / "wandb").complete  # W&B was finished, not cut off

    again = run_script("train.py", args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {stopped}," in again.stdout
    assert_same_training(reference, run_dir)
    assert read_offline_run(run_dir / "wandb").run_id == summary["run_id"]


@pytest.mark.slow
def test_nonfinite_gradients_are_skipped_and_too_many_in_a_row_fail_the_run(
    corpus_cache: Path, tmp_path: Path
):
    run_dir = tmp_path / "run"
    wrapper = write_wrapper(tmp_path)
    common = ["trainer.max_nonfinite_steps=4", "trainer.checkpoint_every_steps=1"]
    # Steps 3 and 4 get NaN gradients: skipped, and the run still ends ok at step 4.
    first = launch(
        train_args(corpus_cache, run_dir, *common, "trainer.max_steps=4"),
        tmp_path / "first.log",
        wrapper,
        FAULT_NAN_GRAD_FROM_STEP="3",
    )
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-3000:]
    at_4 = checkpoint.load(run_dir / "last.pt")
    assert at_4["counters"]["nonfinite_steps"] == 2
    assert at_4["counters"]["consecutive_nonfinite"] == 2  # checkpointed, so a resume goes on

    # Resumed with NaN gradients at every step: steps 5 and 6 make 4 in a row, which fails.
    log = tmp_path / "second.log"
    second = launch(
        train_args(corpus_cache, run_dir, *common, "trainer.max_steps=10"),
        log,
        wrapper,
        FAULT_NAN_GRAD_FROM_STEP="1",
    )
    assert second.wait(timeout=120) == 1
    out = log.read_text()
    assert "resumed from" in out and "at step 4," in out
    assert "Traceback" not in out
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "4 steps in a row (up to step 6)" in error[0]
    assert "non-finite loss or gradient" in error[0]
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and summary["error"].startswith("NonFiniteError")
    assert summary["nonfinite_steps"] == 4 and summary["step"] == 6

    # Step 5 (saved to last.pt) was skipped: weights and optimizer state as they were at step 4.
    at_5 = checkpoint.load(run_dir / "last.pt")
    assert at_5["counters"]["step"] == 5
    for key, tensor in at_4["model"].items():
        assert torch.equal(tensor, at_5["model"][key]), key
    for i, state in at_4["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, at_5["optimizer"]["state"][i][key]), key
