"""Loading a checkpoint or a cached file never runs code: a file whose pickle would call
anything besides tensors and plain values is refused in one line by every command that takes
one, and checkpoints written by the previous format still load."""

from __future__ import annotations

import fractions
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from asr import checkpoint, export
from asr.decoding.emissions import Emissions, cached_emissions
from asr.lm import cli as lm_cli
from tests.conftest import ROOT, TINY_CORPUS, run_script

FIXTURE_V1 = ROOT / "tests" / "fixtures" / "checkpoint_v1.pt"
# The settings the format-1 fixture was trained with (tests/fixtures/README.md).
FIXTURE_ARGS = [
    *TINY_CORPUS,
    "model=ds2_small",
    "model.rnn_dim=16",
    "model.n_rnn=1",
    "data.n_mels=32",
    "data.batch_size=4",
    "logger=none",
]


class Payload:
    """What an attacker puts in a shared `best.pt`: unpickling it runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def poisoned(tmp_path: Path) -> tuple[Path, Path]:
    """(a run folder whose best.pt and last.pt carry a payload, the file the payload makes)."""
    marker = tmp_path / "payload-ran"
    state = torch.load(FIXTURE_V1, weights_only=False)  # the repository's own file
    state["format_version"] = checkpoint.FORMAT_VERSION
    state["optimizer"] = Payload(marker)
    run = tmp_path / "shared-run"
    run.mkdir()
    for name in ("best.pt", "last.pt"):
        torch.save(state, run / name)
    return run, marker


def dev_manifest(corpus_cache: Path) -> Path:
    return next(corpus_cache.glob("synth_es-*/dev.jsonl"))


def refusal_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "command",
    ["evaluate", "transcribe", "export", "lm", "train_init_from", "train_resume"],
)
def test_every_command_refuses_a_checkpoint_that_would_run_code(
    command, poisoned, corpus_cache: Path, tmp_path: Path, capsys
):
    run, marker = poisoned
    hydra_dir = f"hydra.run.dir={tmp_path / 'out'}"
    cache = f"data.cache_dir={corpus_cache}"
    if command == "evaluate":
        result = run_script("evaluate.py", [f"ckpt={run}", hydra_dir], cwd=tmp_path)
    elif command == "transcribe":
        audio = next(dev_manifest(corpus_cache).parent.glob("audio/dev/*.flac"))
        result = run_script("transcribe.py", [f"ckpt={run}", f"input={audio}", hydra_dir], tmp_path)
    elif command in ("export", "lm"):  # in this process: `python -m ...` returns main()
        main, args = {
            "export": (export.main, [f"ckpt={run}", f"out={tmp_path / 'm.onnx'}"]),
            "lm": (lm_cli.main, ["build", "--ckpt", str(run), "--out", str(tmp_path / "lm")]),
        }[command]
        status = main(args)
        err = capsys.readouterr().err
        result = subprocess.CompletedProcess(args, status, stdout="", stderr=err)
    elif command == "train_init_from":
        args = [*FIXTURE_ARGS, cache, f"trainer.init_from={run}", "trainer.max_steps=1", hydra_dir]
        result = run_script("train.py", args, cwd=tmp_path)
    else:  # a resume: the run folder's own last.pt was replaced
        args = [*FIXTURE_ARGS, cache, "trainer.max_steps=1", f"hydra.run.dir={run}"]
        result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = refusal_lines(result)
    assert len(lines) == 1, result.stderr[-3000:]
    assert "refused" in lines[0] and "shared-run" in lines[0] and "posix.system" in lines[0]
    assert "trust_checkpoint=true" in lines[0]
    assert not marker.exists()  # the payload never ran


def test_trust_checkpoint_loads_a_file_that_needs_more_with_a_warning(
    corpus_cache: Path, tmp_path: Path
):
    """A harmless object the weights-only unpickler does not know is refused too; a user who
    trusts the file's author loads it with trust_checkpoint=true."""
    state = torch.load(FIXTURE_V1, weights_only=False)
    state["note"] = fractions.Fraction(1, 3)
    path = tmp_path / "hand-made.pt"
    torch.save(state, path)
    with pytest.raises(checkpoint.CheckpointError, match=r"fractions\.Fraction"):
        checkpoint.load(path)
    args = [f"ckpt={path}", f"manifest={dev_manifest(corpus_cache)}"]
    trusted = run_script(
        "evaluate.py", [*args, "trust_checkpoint=true", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path
    )
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert "unpickling it in full (trusted)" in trusted.stdout
    assert (tmp_path / "b" / "eval.json").is_file()


def test_a_checkpoint_of_the_previous_format_loads_evaluates_and_resumes(
    corpus_cache: Path, tmp_path: Path
):
    """tests/fixtures/checkpoint_v1.pt was written by train.py before checkpoints kept NumPy's
    RNG state as plain values (format 1): its NumPy array is one of the few things allowed by
    name, and a resume from it continues its RNG streams."""
    state = checkpoint.load(FIXTURE_V1)
    assert state["format_version"] == 1 and isinstance(state["rng"]["numpy"][1], np.ndarray)
    checkpoint.set_rng_state(state["rng"])
    assert np.random.get_state(legacy=False)["state"]["pos"] == state["rng"]["numpy"][2]

    args = [f"ckpt={FIXTURE_V1}", f"manifest={dev_manifest(corpus_cache)}"]
    ev = run_script("evaluate.py", [*args, f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert (tmp_path / "eval" / "eval.json").is_file()

    run = tmp_path / "resumed"
    args = [*FIXTURE_ARGS, f"data.cache_dir={corpus_cache}", f"trainer.resume={FIXTURE_V1}"]
    tr = run_script("train.py", [*args, "trainer.max_steps=5", f"hydra.run.dir={run}"], tmp_path)
    assert tr.returncode == 0, tr.stderr[-3000:]
    assert "at step 3" in tr.stdout  # where the fixture stopped
    resumed = checkpoint.load(run / "last.pt")
    assert resumed["format_version"] == checkpoint.FORMAT_VERSION == 2
    assert resumed["counters"]["step"] == 5
    assert torch.serialization.get_unsafe_globals_in_checkpoint(run / "last.pt") == []


def test_a_poisoned_log_prob_cache_is_recomputed_not_run(tmp_path: Path, capsys):
    """A cache folder can be shared: a cached file that would run code is ignored, with a
    warning naming it, and computed again over."""
    marker = tmp_path / "payload-ran"
    (tmp_path / "cache").mkdir()
    torch.save({"utts": Payload(marker)}, tmp_path / "cache" / "k.pt")
    fresh = Emissions(log_probs=[torch.zeros(3, 5)], audio_seconds=1.5)
    got, hit = cached_emissions("k", tmp_path / "cache", lambda: fresh)
    assert not hit and got is fresh and not marker.exists()
    assert "ignoring the cached log-probs" in capsys.readouterr().out
    again, hit = cached_emissions("k", tmp_path / "cache", lambda: pytest.fail("recomputed"))
    assert hit and again.audio_seconds == 1.5 and torch.equal(again.log_probs[0], torch.zeros(3, 5))
