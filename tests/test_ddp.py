"""DDP: ranks from the launcher's environment, the collectives of the loop, and whole runs.

The unit tests start two gloo processes with torch.multiprocessing; the slow test launches
train.py under torchrun (`python -m torch.distributed.run --nproc_per_node=2`) on the CPU,
as a user would, and compares it with one process fed the same global batches.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.multiprocessing as mp

from asr import checkpoint, distributed, ranks
from asr.data.checks import ProblemReport
from asr.data.dataset import Batch, Utterance
from asr.data.loader import make_loader, shard_batches
from asr.features import LogMel
from asr.inference import transcribe, transcribe_shards
from asr.loop import train_step
from asr.model import DeepSpeech2, ModelConfig
from asr.text import make_vocabulary
from tests.conftest import ROOT, TINY_CORPUS, TINY_MODEL
from tests.test_faults import assert_same_checkpoints
from tests.wandb_offline import read_offline_run

# ---- who am I: the launcher's environment ----------------------------------------------------


def test_torchrun_environment():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1"}
    env |= {"MASTER_PORT": "1234", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "8"}
    launch = ranks.detect(env)  # torchrun's variables win over Slurm's (srun torchrun)
    assert launch == ranks.Launch(3, 4, 1, "n1", 1234, "torchrun")


def test_slurm_tasks_of_an_srun_step():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "gpu[07-08,12]",
        "SLURM_JOB_NODELIST": "gpu[07-08,12],cpu1",
    }
    launch = ranks.detect(env)
    assert (launch.rank, launch.world_size, launch.local_rank) == (5, 8, 1)
    assert launch.master_addr == "gpu07" and launch.launcher == "slurm"
    # every task of the job derives the same port, and the same one as submitit does
    submitit_helpers = pytest.importorskip("submitit.helpers")
    assert 20000 <= launch.master_port <= 60000
    assert ranks.detect(env).master_port == launch.master_port
    assert ranks.detect(env | {"SLURM_JOB_ID": "4243"}).master_port != launch.master_port
    assert "random.Random(self._job_env.job_id)" in Path(submitit_helpers.__file__).read_text()
    explicit = ranks.detect(env | {"MASTER_ADDR": "head", "MASTER_PORT": "29400"})
    assert (explicit.master_addr, explicit.master_port) == ("head", 29400)


def test_a_slurm_batch_script_without_srun_is_one_process():
    # sbatch --ntasks=4 running `python train.py` itself: SLURM_NTASKS=4 and SLURM_PROCID=0,
    # but no srun step; taking it for rank 0 of 4 would wait forever for the other three.
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}
    assert ranks.detect(env) == ranks.Launch()
    assert ranks.detect({}) == ranks.Launch()


def test_submitit_local_tasks():
    env = {"SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1"}
    env |= {"SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_ID": "999"}
    launch = ranks.detect(env)
    assert (launch.rank, launch.world_size, launch.launcher) == (1, 2, "submitit_local")
    assert ranks.rank_suffix(env) == ".rank1" and not ranks.is_main_rank(env)
    assert ranks.rank_suffix({}) == "" and ranks.is_main_rank({})


def test_the_slurm_ddp_preset_starts_one_task_per_gpu():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from asr.config import register_configs

    register_configs()
    overrides = ["hydra/launcher=slurm_ddp", "hydra.launcher.gpus_per_node=8"]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(
            "train", overrides=[*overrides, "hydra.launcher.nodes=2"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("node1", "node1"),
        ("node1,node2", "node1"),
        ("gpu[07-09,12]", "gpu07"),
        ("gpu[12,07-09]", "gpu12"),
        ("rack1-n[003-004],rack2-n001", "rack1-n003"),
        ("a[1],b[2-3]", "a1"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert ranks.first_host(nodelist) == first
    slurm = pytest.importorskip("submitit.slurm.slurm")
    assert slurm._parse_node_list(nodelist)[0] == first  # what submitit makes of it


def test_one_process_needs_no_collectives():
    ddp = distributed.DDP(ranks.Launch())
    assert not ddp.enabled and ddp.is_main
    assert ddp.max(True, 0.25) == [1.0, 0.25] and ddp.broadcast("x") == "x"
    assert ddp.all_gather({"a": 1}) == [{"a": 1}]
    vote = ddp.vote(2.5, 3, 1.5)
    assert (vote.loss, vote.scale, vote.audio_seconds) == (2.5, 1.0, 1.5)
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap(model) is model and ddp.num_workers(3) == 3


# ---- two gloo processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OtherClock:
    @staticmethod
    def now() -> datetime:
        return datetime(2001, 1, 1)


def _joins_once(rank: int) -> None:
    """A --multirun's jobs each set up again: one init_process_group per process."""
    calls = []
    real_init = torch.distributed.init_process_group

    def counting_init(*args, **kwargs):
        calls.append(args)
        real_init(*args, **kwargs)

    torch.distributed.init_process_group = counting_init
    first = distributed.setup()
    for job in range(3):
        ddp = distributed.setup()
        assert ddp is first and ddp.max(rank + job) == [1.0 + job]
    assert len(calls) == 1, calls
    # The run directory's timestamp: rank 0's, whatever rank 1's clock says.
    if rank == 1:
        distributed.datetime = OtherClock
    stamps = first.all_gather(distributed.start_time())
    assert stamps[0] == stamps[1] != datetime(2001, 1, 1)
    assert distributed.start_time() == stamps[0]  # fixed for the process


def tiny_model() -> DeepSpeech2:
    torch.manual_seed(0)
    return DeepSpeech2(ModelConfig(n_cnn=1, n_rnn=1, rnn_dim=16, n_feats=16, dropout=0.0))


def make_batch(feats: list[torch.Tensor], labels: list[list[int]]) -> Batch:
    utts = [Utterance(f"u{i}", None, "ab", tuple(y), 0.5) for i, y in enumerate(labels)]  # type: ignore[arg-type]
    padded = torch.zeros(len(feats), feats[0].shape[0], max(f.shape[1] for f in feats))
    targets = torch.zeros(len(labels), max(map(len, labels)), dtype=torch.long)
    for i, (f, y) in enumerate(zip(feats, labels, strict=True)):
        padded[i, :, : f.shape[1]] = f
        targets[i, : len(y)] = torch.tensor(y)
    lens = torch.tensor([f.shape[1] for f in feats])
    return Batch(padded, lens, targets, torch.tensor(list(map(len, labels))), utts, [])


def _steps_agree(ddp: distributed.DDP) -> None:
    """Votes, a DDP step against one process on the whole batch, RNG, problem counts."""
    rank = ddp.rank
    cpu = torch.device("cpu")
    # votes: a non-finite loss anywhere skips; unequal batches weigh by utterances
    vote = ddp.vote(math.nan if rank else 2.0, 3, 1.5)
    assert math.isnan(vote.loss) and vote.audio_seconds == 3.0
    vote = ddp.vote([1.0, 4.0][rank], [1, 3][rank], 1.0)
    assert vote.loss == (1.0 * 1 + 4.0 * 3) / 4 and vote.scale == [1, 3][rank] * 2 / 4
    assert ddp.max(rank, -rank) == [1.0, 0.0] and ddp.max(rank == 1) == [1.0]  # a flag: any

    # One global batch of three utterances: one on rank 0, two on rank 1.
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(16, n, generator=gen) for n in (40, 31, 36)]
    labels = [[2, 3, 4], [5, 6], [7, 8, 9, 10]]
    mine = [0] if rank == 0 else [1, 2]
    model = tiny_model()
    reference = copy.deepcopy(model)  # one process, to take the whole batch
    wrapped = ddp.wrap(model)
    # SGD: an update linear in the gradient, so the comparison below is a tight one.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)

    # A NaN on rank 1 alone: both ranks skip, neither touches its weights.
    before = [p.detach().clone() for p in model.parameters()]
    bad = make_batch([feats[i] for i in mine], [labels[i] for i in mine])
    if rank == 1:
        bad.feats[0, 0, 0] = math.nan
    result = train_step(wrapped, opt, bad, 28, 1.0, cpu, vote=ddp.vote)
    assert not result.finite and math.isnan(result.loss)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())

    # Then a real step (DDP copes with the forward that had no backward): the same update as
    # one process taking the whole batch, however unevenly it is split.
    batch = make_batch([feats[i] for i in mine], [labels[i] for i in mine])
    result = train_step(wrapped, opt, batch, 28, 1.0, cpu, vote=ddp.vote)
    whole = train_step(reference, ref_opt, make_batch(feats, labels), 28, 1.0, cpu)
    assert result.finite and math.isclose(result.loss, whole.loss, rel_tol=1e-5)
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()
    params = ddp.all_gather([p.detach() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params, strict=True))  # replicas in step

    # Per-rank RNG: different dropout streams, each restored from a checkpoint's states.
    ddp.seed(0)
    states = ddp.all_gather(checkpoint.rng_state())
    draws = torch.rand(4)
    assert not torch.equal(*ddp.all_gather(draws))
    torch.manual_seed(123)
    ddp.restore_rng({"rng": states[0], "rng_ranks": states}, seed=0, step=5)
    assert torch.equal(torch.rand(4), draws)
    # a checkpoint of one process: rank 0 continues its stream, rank 1 derives its own
    ddp.restore_rng({"rng": states[0]}, seed=0, step=5)
    assert torch.equal(torch.rand(4), draws) == (rank == 0)

    # Problems found while loading shards are counted on every rank, each once.
    report = ProblemReport()
    found = [(f"utt{rank}", "resampled", "8000 Hz"), ("both", "mixed_down", "2 channels")]
    for utt_id, kind, detail in found:
        report.add(kind, utt_id, detail)
    for other, theirs in enumerate(ddp.all_gather(found)):
        if other != rank:
            report.merge(theirs)
    assert report.repaired == {"mixed_down": 1, "resampled": 2}
    assert ddp.broadcast(f"from {rank}") == "from 0"


def tone_utterances(directory: Path, n: int, write: bool = False) -> list[Utterance]:
    utts = []
    for i in range(n):
        seconds = 0.4 + 0.15 * i
        path = directory / f"u{i}.wav"
        if write:
            t = np.arange(int(seconds * 16000)) / 16000
            wave = 0.1 * np.sin(2 * np.pi * (200 + 70 * i) * t)
            sf.write(path, wave.astype(np.float32), 16000)
        utts.append(Utterance(f"u{i}", path, "ab", (2, 3), seconds))
    return utts


def _sharded_evaluation(ddp: distributed.DDP, directory: str) -> None:
    """Each rank a shard of the batches, every rank the single process's result."""
    rank = ddp.rank
    utts = tone_utterances(Path(directory), 9)
    loader, _ = make_loader(utts, LogMel(16000, 16), batch_size=2, num_buckets=2)
    model, vocab, cpu = tiny_model(), make_vocabulary(None), torch.device("cpu")
    whole = transcribe(model, loader, vocab, cpu)
    shard = shard_batches(loader, rank, ddp.world_size)
    assert len(shard) == [3, 2][rank]  # 5 batches: none dropped, though the shards differ
    sharded = transcribe_shards(model, shard, vocab, cpu, ddp)
    assert [u.utt_id for u in sharded.utts] == [u.utt_id for u in whole.utts]
    assert sharded.hypotheses == whole.hypotheses
    assert sharded.cer == whole.cer and sharded.wer == whole.wer
    assert sharded.loss_sum == whole.loss_sum  # summed in the same order: bit for bit
    assert sharded.audio_seconds == pytest.approx(whole.audio_seconds)


def _two_ranks(rank: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank))
    os.environ.update(WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _joins_once(rank)
    _steps_agree(distributed.setup())
    _sharded_evaluation(distributed.setup(), directory)


def test_two_gloo_ranks_join_once_step_together_and_evaluate_shards(tmp_path):
    """One pair of processes (starting them is the slow part) for all the checks above."""
    tone_utterances(tmp_path, 9, write=True)
    mp.spawn(_two_ranks, args=(free_port(), str(tmp_path)), nprocs=2, join=True)


# ---- whole runs under torchrun ------------------------------------------------------------------

# One process fed, at each step, the union of the two ranks' batches: rank r takes every
# second batch of the global order from the r-th on (BucketBatchSampler), so step k of the
# pair is batches 2k and 2k + 1, and an odd last batch is dropped.
UNION_WRAPPER = """
import runpy, sys

from asr.data import dataset

original = dataset.BucketBatchSampler.batches


def union_of_two_ranks(self, epoch):
    if not self.shuffle:  # evaluation loaders
        return original(self, epoch)
    every = self.all_batches(epoch)
    return [every[i] + every[i + 1] for i in range(0, len(every) - 1, 2)]


dataset.BucketBatchSampler.batches = union_of_two_ranks
sys.argv = [TRAIN, *sys.argv[1:]]
runpy.run_path(TRAIN, run_name="__main__")
"""

COMMON = [
    *TINY_CORPUS,
    *TINY_MODEL,
    "data.batch_size=4",
    "model.dropout=0",  # dropout draws differ per rank; SpecAugment's masks do not
    "optim.schedule=constant",  # so that 4 steps, then 4 resumed, equal 8 in one go
    "trainer.log_every_steps=1",
]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


def run_python(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python *args` in `cwd`, without the rank variables of the environment, captured."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def torchrun(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return run_python([*launcher, str(ROOT / "train.py"), *args], cwd, timeout)


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {m["step"]: m["train/loss"] for m in map(json.loads, lines) if "train/loss" in m}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_torchrun_trains_like_one_process_on_the_same_global_batches_and_resumes(
    corpus_cache: Path, tmp_path: Path
):
    common = [*COMMON, f"data.cache_dir={corpus_cache}"]
    # Two ranks, 4 steps, no run directory given: both ranks must agree on the timestamped one.
    first = torchrun([*common, "trainer.max_steps=4"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dirs = list(tmp_path.glob("outputs/*/*"))
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]

    # One job, one record: rank 0 alone writes the summary, metrics, checkpoints and W&B run;
    # rank 1 logs to its own file.
    s = summary(run_dir)
    assert s["status"] == "ok" and s["step"] == 4 and s["world_size"] == 2
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in run_dir.glob("*.log")) == ["train.log", "train.rank1.log"]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    wb = read_offline_run(run_dir / "wandb")
    assert wb.run_id == s["run_id"] and wb.complete and wb.summary["world_size"] == 2
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    last = checkpoint.load(run_dir / "last.pt")  # each rank's RNG, for an exact resume
    assert last["world_size"] == 2 and len(last["rng_ranks"]) == 2
    assert torch.equal(last["rng_ranks"][0]["torch"], last["rng"]["torch"])
    assert not torch.equal(last["rng_ranks"][1]["torch"], last["rng"]["torch"])

    # One process, 8 steps, fed the union of both ranks' batches at each step.
    wrapper = tmp_path / "union_train.py"
    wrapper.write_text(f"TRAIN = {str(ROOT / 'train.py')!r}\n{UNION_WRAPPER}")
    single_dir = tmp_path / "single"
    single_args = [*common, "trainer.max_steps=8", "trainer.num_threads=1"]
    single = run_python([str(wrapper), *single_args, f"hydra.run.dir={single_dir}"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]

    # The same command with a bigger budget resumes the DDP run at step 4.
    again = torchrun([*common, "trainer.max_steps=8", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resumed from \S+last\.pt at step 4,", again.stdout), again.stdout[-2000:]
    s = summary(run_dir)
    assert s["status"] == "ok" and s["step"] == 8
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {d.name.split("-")[-1] for d in runs} == {s["run_id"]}

    # The loss of the global batch (mean over both ranks' utterances) is the single process's,
    # step for step, before and after the resume. Measured here: within 1.2e-7 relative.
    want, got = losses(single_dir), losses(run_dir)
    assert sorted(want) == list(range(1, 9)) and set(got) == set(want)
    for step, loss in want.items():
        assert math.isclose(got[step], loss, rel_tol=1e-4), (step, got[step], loss)
    assert s["best_dev_cer"] == summary(single_dir)["best_dev_cer"]
    assert s["train_audio_seconds"] == pytest.approx(summary(single_dir)["train_audio_seconds"])


@pytest.mark.slow
def test_a_multirun_under_torchrun_reuses_one_process_group(corpus_cache: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    args = [*COMMON, f"data.cache_dir={corpus_cache}", "trainer.max_steps=2", "logger=none"]
    result = torchrun(["--multirun", *args, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert out.count("ddp: rank 0 of 2") == 1 and out.count("ddp: rank 1 of 2") == 1
    jobs = [p.parent for p in sweep.glob("*/summary.json")]
    assert len(jobs) == 2 and all(summary(job)["status"] == "ok" for job in jobs)
    assert (sweep / "report.md").is_file()


@pytest.mark.slow
def test_the_submitit_launcher_runs_one_ddp_job_of_several_tasks(
    corpus_cache: Path, tmp_path: Path
):
    """The Slurm preset's code path without Slurm: submitit_local starts tasks_per_node tasks
    that each run the Hydra job, and they form one DDP job in one job directory."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    args = [*COMMON, f"data.cache_dir={corpus_cache}", "trainer.max_steps=2", "seed=3"]
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2"]
    launcher += ["hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep}"]
    result = run_python([str(ROOT / "train.py"), "--multirun", *launcher, *args], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = [p.parent for p in sweep.glob("*/summary.json")]
    s = summary(job)
    assert s["status"] == "ok" and s["world_size"] == 2 and s["step"] == 2
    assert sorted(p.name for p in job.glob("*.log")) == ["train.log", "train.rank1.log"]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.out"))
    assert "ddp: rank 0 of 2 (submitit_local" in logs and "ddp: rank 1 of 2" in logs


def _worker_of_rank(launcher_pid: int, rank: int) -> int:
    """The pid of the torchrun worker with RANK=`rank` among `launcher_pid`'s children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == launcher_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise LookupError(f"no worker of rank {rank} under pid {launcher_pid}")


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(corpus_cache: Path, tmp_path: Path):
    """A scheduler may signal one task only: rank 1 alone gets SIGTERM, and rank 0, which got
    none, learns it at the next agreed step, saves last.pt and records the interruption."""
    run_dir = tmp_path / "run"
    args = [*COMMON, f"data.cache_dir={corpus_cache}", "trainer.max_steps=10000"]
    args += ["trainer.checkpoint_every_steps=2", "logger=none", f"hydra.run.dir={run_dir}"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    proc = subprocess.Popen(
        [*launcher, "--nproc_per_node=2", str(ROOT / "train.py"), *args],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(1200):  # until the first checkpoint: training has started on both
            if (run_dir / "last.pt").is_file() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        os.kill(_worker_of_rank(proc.pid, 1), signal.SIGTERM)
        out = proc.communicate(timeout=180)[0]  # no rank waits forever
    finally:
        proc.kill()
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM", out[-3000:]
    assert checkpoint.load(run_dir / "last.pt")["counters"]["step"] == s["step"] < 10000
    # Rank 0, which got no signal, learned of rank 1's at an agreed step and stopped there.
    step = s["step"]
    assert f"stop: SIGTERM reached another rank; stopping at step {step}" in out, out[-3000:]
    # Each rank exits 143 (train.py's code for an interrupted run), unless it is still closing
    # when the other has exited: torchrun then ends it with SIGTERM (-15), after the stop.
    exits = dict(re.findall(r"rank\s*: (\d) \(local_rank: \d\)\s*exitcode\s*: (-?\d+)", out))
    assert sorted(exits) == ["0", "1"], out[-3000:]
    assert set(exits.values()) <= {"143", "-15"} and "143" in exits.values(), out[-3000:]


@pytest.mark.slow
def test_a_rank_killed_in_an_elastic_run_restarts_the_group_which_resumes_exactly(
    corpus_cache: Path, tmp_path: Path
):
    """torchrun --max-restarts: rank 1 killed with SIGKILL after a checkpoint makes torchrun
    restart both ranks, which resume from last.pt and end, bit for bit, where a run that was
    never interrupted ends."""
    args = [*COMMON, f"data.cache_dir={corpus_cache}", "trainer.max_steps=24"]
    args += ["trainer.checkpoint_every_steps=2", "logger=none"]
    reference = tmp_path / "reference"
    done = torchrun([*args, f"hydra.run.dir={reference}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--max-restarts=1"]
    # torch 2.14's agents keep one store across restarts, in which the restarted ranks can
    # find their dead predecessors' addresses: each restart gets a store of its own with this.
    env = clean_env() | {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    proc = subprocess.Popen(
        [
            *launcher,
            "--nproc_per_node=2",
            str(ROOT / "train.py"),
            *args,
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its workers too are stopped at the end, whatever happens
    )
    try:
        for _ in range(6000):  # until a checkpoint, a few steps into the run
            if proc.poll() is not None or (
                (run_dir / "last.pt").is_file() and max(losses(run_dir), default=0) >= 5
            ):
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        os.kill(_worker_of_rank(proc.pid, 1), signal.SIGKILL)
        out = proc.communicate(timeout=240)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"resumed from \S+last\.pt at step \d+,", out), out[-3000:]
    assert summary(run_dir)["status"] == "ok"
    assert_same_checkpoints(reference, run_dir)
