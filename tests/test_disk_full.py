"""A full disk loses nothing and says so: the run stops with one line naming the file, the space
it needed and the space that was free; summary.json records it; the checkpoints on disk stay
whole; and once space is freed the same command resumes. Run on real small file systems (tmpfs,
mounted by the test as root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from asr import checkpoint, disk
from asr.config import job_dirname
from asr.disk import DiskFullError
from asr.tracking.files import RunFiles
from tests.conftest import TINY_CORPUS, TINY_MODEL, run_script

MiB = 1 << 20


def mount_tmpfs(folder: Path, size: int) -> Path:
    """A tmpfs of `size` bytes at `folder`; the test skips, saying why, where it cannot be."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return folder


def unmount(folders: list[Path]) -> None:
    for folder in reversed(folders):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, int], Path]]:
    """mount(folder, bytes): a tmpfs of that size at `folder`, unmounted after the test."""
    mounted: list[Path] = []

    def mount(folder: Path, size: int) -> Path:
        mounted.append(mount_tmpfs(folder, size))
        return folder

    yield mount
    unmount(mounted)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all of `folder`'s free space but `leave` bytes."""
    filler = folder / "filler"
    free = disk.free_bytes(folder)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def test_a_checkpoint_that_does_not_fit_is_refused_and_the_old_one_kept(small_disk, tmp_path):
    folder = small_disk(tmp_path / "disk", 2 * MiB)
    state = {"format_version": checkpoint.FORMAT_VERSION, "w": torch.zeros(MiB // 4 * 3 // 4)}
    checkpoint.save_atomic(state, folder / "last.pt")  # 0.75 MiB: fits once, not twice more
    fill(folder, leave=MiB // 2)
    with pytest.raises(DiskFullError) as e:
        checkpoint.save_atomic({**state, "w": state["w"] + 1}, folder / "last.pt")
    message = str(e.value)
    assert str(folder / "last.pt") in message and "\n" not in message
    assert re.search(r"needs 7\d\d\.\d KB, \d+\.\d KB free", message), message
    assert sorted(os.listdir(folder)) == ["filler", "last.pt"]  # no temporary file left
    assert torch.equal(checkpoint.load(folder / "last.pt")["w"], state["w"])


def test_a_disk_that_fills_while_writing_says_the_same(small_disk, tmp_path, monkeypatch):
    """File systems that do not report their free space (free_bytes None) fail on the write
    itself (ENOSPC), which says the same."""
    folder = small_disk(tmp_path / "disk", MiB)
    monkeypatch.setattr(disk, "free_bytes", lambda _path: None)
    with pytest.raises(DiskFullError, match=r"last\.pt needs 2\.0 MB, unknown free"):
        checkpoint.save_atomic(
            {"format_version": 2, "w": torch.zeros(MiB // 2)}, folder / "last.pt"
        )
    assert os.listdir(folder) == []


def test_metrics_and_summary_on_a_full_disk(small_disk, tmp_path, monkeypatch):
    folder = small_disk(tmp_path / "disk", MiB)
    files = RunFiles(folder)
    files.update_summary({"status": "running", "step": 1})
    files.append_metrics({"step": 1, "train/loss": 3.0})
    fill(folder, leave=0)
    long_row = {"step": 2, "train/loss": 2.0, "note": "x" * 5000}
    with pytest.raises(DiskFullError, match=r"metrics\.jsonl needs 4\.9 KB, 0 B free"):
        files.append_metrics(long_row)
    with pytest.raises(DiskFullError, match=r"summary\.json needs [\d.]+ KB, 0 B free"):
        files.update_summary(long_row)
    # Where the free space is not known up front, the line is cut where the disk filled up
    # (the rest of the file's last page), which says the same.
    monkeypatch.setattr(disk, "free_bytes", lambda _path: None)
    with pytest.raises(DiskFullError, match=r"metrics\.jsonl needs 4\.9 KB, unknown free"):
        files.append_metrics(long_row)
    files.close()  # nothing buffered to fail again here
    assert json.loads((folder / "summary.json").read_text())["step"] == 1  # whole, and old
    assert not (folder / "summary.json.tmp").exists()
    assert not (folder / "metrics.jsonl").read_text().endswith("\n")  # a torn line
    (folder / "filler").unlink()
    reopened = RunFiles(folder)  # the torn line is dropped
    reopened.append_metrics({"step": 2, "train/loss": 2.0})
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def train_args(corpus_cache: Path, *extra: str) -> list[str]:
    return [
        *TINY_CORPUS,
        *TINY_MODEL,
        f"data.cache_dir={corpus_cache}",
        "data.batch_size=4",
        "logger=none",
        "trainer.eval_every_steps=2",
        *extra,
    ]


@pytest.fixture(scope="module")
def first_checkpoints(corpus_cache: Path, tmp_path_factory) -> tuple[int, int]:
    """(what a run's folder takes on a tmpfs once its first checkpoints are written (step 2:
    best.pt and last.pt, the config, the logs), the size of one checkpoint): measured once, by
    a run that stops there."""
    root = tmp_path_factory.mktemp("probe")
    folder = mount_tmpfs(root / "disk", 64 * MiB)
    try:
        before, probe = disk.free_bytes(folder), folder / "run"
        args = train_args(corpus_cache, "trainer.max_steps=2", f"hydra.run.dir={probe}")
        done = run_script("train.py", args, root)
        assert done.returncode == 0, done.stderr[-3000:]
        return before - disk.free_bytes(folder), (probe / "last.pt").stat().st_size
    finally:
        unmount([folder])


def leave_room_for_one_checkpoint(folder: Path, first_checkpoints: tuple[int, int]) -> Path:
    """Fill `folder`'s disk so that a run there has room for its first checkpoints but not for
    the next one. Returns the filler, whose deletion frees the space."""
    used, ckpt_size = first_checkpoints
    return fill(folder, leave=used + ckpt_size // 2)


def test_a_run_stops_at_a_full_disk_and_resumes_once_space_is_freed(
    small_disk, first_checkpoints, corpus_cache: Path, tmp_path: Path
):
    """The run folder's disk fills at the second checkpoint (step 4): the run stops with one
    line, best.pt loads, and the same command resumes after the filler is deleted."""
    folder = small_disk(tmp_path / "disk", 64 * MiB)
    filler = leave_room_for_one_checkpoint(folder, first_checkpoints)
    run_dir = folder / "run"
    args = train_args(corpus_cache, "trainer.max_steps=6", f"hydra.run.dir={run_dir}")
    first = run_script("train.py", args, tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in first.stderr, first.stderr[-3000:]
    line = errors[0]
    assert "no space left on device" in line and str(run_dir) in line
    assert re.search(r"\.pt needs [\d.]+ KB, [\d.]+ KB free", line), line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["resumable"] is True
    assert line.removeprefix("error: ") in summary["error"]
    assert checkpoint.load(run_dir / "best.pt")["counters"]["step"] == 2
    assert checkpoint.load(run_dir / "last.pt")["counters"]["step"] == 2

    filler.unlink()
    second = run_script("train.py", args, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "at step 2" in second.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["step"] == 6 and "resumable" not in summary


@pytest.mark.slow
def test_in_a_sweep_the_other_jobs_go_on_and_the_full_one_resumes(
    small_disk, first_checkpoints, corpus_cache: Path, tmp_path: Path
):
    """Job seed=0 has its folder on a disk that fills at its second checkpoint; job seed=1 is
    elsewhere. The sweep goes on to seed=1; run again after space is freed, it resumes seed=0
    where its checkpoints stand and skips the finished job."""
    sweep_dir = tmp_path / "sweep"
    overrides = train_args(corpus_cache, "trainer.max_steps=4")
    full_job = small_disk(sweep_dir / job_dirname([*overrides, "seed=0"]), 64 * MiB)
    filler = leave_room_for_one_checkpoint(full_job, first_checkpoints)
    args = ["--multirun", *overrides, "seed=0,1", f"hydra.sweep.dir={sweep_dir}"]
    first = run_script("train.py", args, tmp_path)
    assert first.returncode != 0
    other = sweep_dir / job_dirname([*overrides, "seed=1"])
    failed, ok = (json.loads((d / "summary.json").read_text()) for d in (full_job, other))
    assert failed["status"] == "failed" and failed["resumable"] is True
    assert "no space left on device" in failed["error"] and ok["status"] == "ok"

    filler.unlink()
    again = run_script("train.py", args, tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{other.name}: already finished" in again.stdout
    assert "at step 2" in again.stdout  # resumed, not restarted from scratch
    assert json.loads((full_job / "summary.json").read_text())["status"] == "ok"


def test_low_space_is_said_at_start_up(small_disk, tmp_path, capsys):
    folder = small_disk(tmp_path / "disk", MiB)
    assert disk.warn_if_low(folder, checkpoint_bytes=MiB // 2) is not None
    assert "less than 3 checkpoints" in capsys.readouterr().out
    assert disk.warn_if_low(folder, checkpoint_bytes=MiB // 8) is None
