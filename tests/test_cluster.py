"""asr.cluster: which signals stop a run, the warning that requeues it, and the Slurm job's
identity. The whole path through a real scheduler is in tests/test_slurm.py."""

from __future__ import annotations

import signal

import pytest

from asr import cluster
from asr.cluster import StopFlag


@pytest.fixture(autouse=True)
def _default_warning_handler():
    """Every test starts and ends with USR2's default action, as a new process has."""
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    cluster._early.clear()
    yield
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    cluster._early.clear()


def test_the_job_id_that_scontrol_requeue_takes():
    assert cluster.slurm_job_id({"SLURM_JOB_ID": "42"}) == "42"
    array = {"SLURM_JOB_ID": "43", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}
    assert cluster.slurm_job_id(array) == "40_3"  # the task, not the whole array
    assert cluster.slurm_job_id({}) is None


def test_only_a_batch_job_can_be_requeued():
    assert cluster.in_slurm_batch_job({"SLURM_JOB_ID": "7", "ENVIRONMENT": "BATCH"})
    assert not cluster.in_slurm_batch_job({"SLURM_JOB_ID": "7"})  # an salloc shell
    assert not cluster.in_slurm_batch_job({"ENVIRONMENT": "BATCH"})


def test_requeues_are_slurms_restart_count():
    assert cluster.slurm_restarts({"SLURM_RESTART_COUNT": "2"}) == 2
    assert (
        cluster.slurm_restarts({}) == 0
        and cluster.slurm_restarts({"SLURM_RESTART_COUNT": "x"}) == 0
    )


def test_the_first_signal_counts_and_repeats_of_the_schedulers_do_not_kill():
    """srun forwards what Slurm also sends to its tasks: a second SIGTERM or USR2 must not fall
    through to the default action (death before the save). Only a second Ctrl-C does."""
    with StopFlag() as flag:
        signal.raise_signal(signal.SIGUSR2)
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGUSR2)
        signal.raise_signal(signal.SIGTERM)
        assert flag.signal == "SIGUSR2"
        assert signal.getsignal(signal.SIGINT) == flag._handle
        signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is not flag._handle  # the next one is final
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL  # restored


def test_a_warning_before_the_trainer_listens_is_kept_for_it():
    cluster.catch_early_warnings()
    signal.raise_signal(signal.SIGUSR2)  # the default action would end this process
    with StopFlag() as flag:
        assert flag.signal == "SIGUSR2"
    with StopFlag() as flag:
        assert flag.signal is None  # taken once


def test_outside_slurm_the_warning_stops_the_run_without_a_requeue(monkeypatch):
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    with StopFlag() as flag:
        flag.agreed = "SIGUSR2"
        assert flag.warned
        assert (
            flag.requeue() == "not a Slurm batch job, so not requeued: the same command resumes it"
        )


def test_under_submitit_the_warning_goes_on_to_its_handler_after_the_save():
    """submitit's handler (here a stand-in) was installed before the trainer's: it gets the
    signal once the trainer has saved, and requeues the job itself."""
    received = []
    signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    with StopFlag() as flag:
        signal.raise_signal(signal.SIGUSR2)
        assert received == []  # the trainer's, while it runs
        flag.agreed = flag.signal
        assert flag.requeue() == "handed to the launcher to requeue"
    assert received == [signal.SIGUSR2]


def test_a_failed_requeue_says_why(monkeypatch, tmp_path):
    """A batch job whose scontrol cannot be found (a container without Slurm's commands)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("ENVIRONMENT", "BATCH")
    with StopFlag() as flag:
        flag.agreed = "SIGUSR2"
        said = flag.requeue()
    assert said.startswith("scontrol requeue 9 failed (") and said.endswith("resubmit to resume")
    assert "No such file" in said and "\n" not in said
