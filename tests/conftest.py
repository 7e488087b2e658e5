"""Shared fixtures: Hydra composition and a tiny generated corpus (built once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _isolated_wandb(tmp_path_factory, monkeypatch):
    """Keep W&B offline and out of $HOME, whatever the developer's environment says."""
    wandb_home = tmp_path_factory.getbasetemp() / "wandb-home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(wandb_home / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(wandb_home / "cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(wandb_home / "data"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def compose_train(overrides: list[str] | None = None):
    from hydra import compose, initialize_config_dir

    from asr.config import register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=overrides or [])


TINY_CORPUS = [
    "data.synth.train_hours=0.03",
    "data.synth.dev_utterances=12",
    "data.synth.test_utterances=12",
]
TINY_MODEL = ["model=ds2_small", "model.rnn_dim=48", "model.n_rnn=1", "data.n_mels=32"]


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> Path:
    """A tiny synth_es corpus, shared by every test that trains."""
    from asr.data.synth import SynthSpec, build_synth_corpus

    cache = tmp_path_factory.mktemp("corpus-cache")
    build_synth_corpus(cache, SynthSpec(train_hours=0.03, dev_utterances=12, test_utterances=12))
    return cache


def run_script(script: str, args: list[str], cwd: Path, timeout: float = 600):
    """Run train.py / evaluate.py as a user would, in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node Slurm cluster for the test run (tests/slurm_cluster.py); skipped, with
    the reason, where Slurm is not installed or the tests do not run as root."""
    from tests.slurm_cluster import SlurmCluster, why_not

    reason = why_not()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


# The longest test files (measured with --durations, 2026-12-06), longest first.
LONGEST_FIRST = ("test_slurm.py", "test_ddp.py", "test_shards.py", "test_sweep.py",
                 "test_augment.py", "test_faults.py", "test_bench.py", "test_bench_scale.py",
                 "test_disk_full.py")  # fmt: skip


def pytest_collection_modifyitems(items):
    """The longest files first: with `make test`'s two processes (a file each at a time) a
    long file started last would leave the other process idle at the end."""

    def rank(item) -> int:
        name = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
