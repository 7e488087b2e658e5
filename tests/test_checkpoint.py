import os
import random
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

from asr import checkpoint
from asr.model import DeepSpeech2, ModelConfig


def test_atomic_save_and_load_round_trip(tmp_path):
    model = DeepSpeech2(ModelConfig(n_cnn=1, n_rnn=1, rnn_dim=16, n_feats=16))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 16, 20), torch.tensor([20, 15]))[0].sum().backward()
    opt.step()
    state = {
        "format_version": checkpoint.FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": checkpoint.rng_state(),
        "provenance": checkpoint.provenance("abc"),
    }
    path = tmp_path / "last.pt"
    checkpoint.save_atomic(state, path)
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind
    loaded = checkpoint.load(tmp_path)  # a run directory resolves to its last.pt
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    assert loaded["optimizer"]["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    prov = loaded["provenance"]
    assert prov["manifest_hash"] == "abc"
    assert prov["packages"]["torch"] == metadata.version("torch")
    assert set(prov) >= {"git_commit", "python", "packages", "manifest_hash"}


def test_rng_state_restores_exactly(tmp_path):
    state = checkpoint.rng_state()
    a = (random.random(), np.random.rand(3), torch.rand(3))
    checkpoint.save_atomic(
        {"format_version": checkpoint.FORMAT_VERSION, "rng": state}, tmp_path / "r.pt"
    )
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "r.pt")["rng"])  # through the file
    b = (random.random(), np.random.rand(3), torch.rand(3))
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_missing_checkpoint_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"best\.pt"):
        checkpoint.resolve_checkpoint(tmp_path, "best.pt")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"format_version": 1, "x": 1}, path)

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"format_version": 1, "x": 2}, path)
    assert checkpoint.load(path)["x"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_a_write_killed_midway_leaves_the_old_file_and_is_cleaned_up_later(tmp_path):
    """SIGKILL mid-write leaves `.last.pt.tmp-<pid>` (here: a dead process's half file); the
    checkpoint itself stays whole, and the next save removes the leftover."""
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"format_version": 1, "x": 1}, path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.pt.tmp-{dead.pid}"
    stale.write_bytes(path.read_bytes()[:100])  # what the killed writer got to write
    assert checkpoint.load(tmp_path)["x"] == 1
    checkpoint.save_atomic({"format_version": 1, "x": 2}, path)
    assert os.listdir(tmp_path) == ["last.pt"]
    assert checkpoint.load(path)["x"] == 2


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        busy = tmp_path / f".last.pt.tmp-{live.pid}"
        busy.write_bytes(b"half")
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / f".best.pt.tmp-{dead.pid}").write_bytes(b"half")
        removed = checkpoint.remove_stale_temporaries(tmp_path)
        assert [p.name for p in removed] == [f".best.pt.tmp-{dead.pid}"]
        assert busy.exists()
    finally:
        live.kill()
        live.wait()
