"""End to end, as a user runs it: train.py trains, resumes, and evaluate.py reproduces."""

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CORPUS, TINY_MODEL, run_script
from tests.wandb_offline import read_offline_run

pytestmark = pytest.mark.slow


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_args(cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        *TINY_CORPUS,
        *TINY_MODEL,
        f"data.cache_dir={cache}",
        "data.batch_size=4",
        "trainer.log_every_steps=2",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def test_train_resume_and_evaluate(corpus_cache: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    first = run_script(
        "train.py",
        train_args(corpus_cache, run_dir, "trainer.max_steps=8", "trainer.eval_every_steps=4"),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["step"] == 8
    for key in (
        "n_params",
        "best_dev_cer",
        "best_dev_wer",
        "test_cer",
        "test_wer",
        "train_audio_seconds",
        "train_audio_seconds_per_second",
        "wall_seconds",
        "skipped",
        "nonfinite_steps",
        "overrides",
    ):
        assert key in summary, key
    assert "trainer.max_steps=8" in summary["overrides"]
    assert (run_dir / "last.pt").is_file() and (run_dir / "best.pt").is_file()
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics if "dev/cer" in m] == [4, 8]
    assert any("train/loss" in m for m in metrics)

    # W&B got the same numbers: read them back from the offline run files.
    wb = read_offline_run(run_dir / "wandb")
    assert wb.config["model"]["rnn_dim"] == 48
    dev_cers = [h["dev/cer"] for h in wb.history if "dev/cer" in h]
    assert dev_cers == [m["dev/cer"] for m in metrics if "dev/cer" in m]
    assert wb.summary["n_params"] == summary["n_params"]

    # Same run dir, bigger budget: resumes at step 8, same W&B run.
    second = run_script(
        "train.py",
        train_args(corpus_cache, run_dir, "trainer.max_steps=12", "trainer.eval_every_steps=4"),
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "at step 8" in second.stdout
    summary2 = json.loads((run_dir / "summary.json").read_text())
    assert summary2["step"] == 12 and summary2["status"] == "ok"
    steps = [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl") if "dev/cer" in m]
    # every 4 steps and at the epoch end (11 or so, with the tiny corpus), nothing repeated
    assert steps[:2] == [4, 8] and steps[-1] == 12
    assert steps == sorted(set(steps)) and 12 in steps
    assert read_offline_run(run_dir / "wandb").run_id == wb.run_id

    # evaluate.py rebuilds everything from the checkpoint and reproduces the test CER.
    eval_dir = tmp_path / "eval"
    ev = run_script("evaluate.py", [f"ckpt={run_dir}", f"hydra.run.dir={eval_dir}"], cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((eval_dir / "eval.json").read_text())
    assert result["cer"] == pytest.approx(summary2["test_cer"], abs=1e-9)
    assert result["wer"] == pytest.approx(summary2["test_wer"], abs=1e-9)
    assert result["rtf"] > 0
    with open(eval_dir / "utterances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["utterances"]
    assert set(rows[0]) == {"id", "reference", "hypothesis", "cer"}

    # Any manifest, and int8 dynamic quantization for CPU inference.
    manifest = next(corpus_cache.glob("synth_es-*/dev.jsonl"))
    q_dir = tmp_path / "eval-q"
    args = [f"ckpt={run_dir}/last.pt", f"manifest={manifest}", "quantize=true"]
    ev = run_script("evaluate.py", [*args, f"hydra.run.dir={q_dir}"], cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    quantized = json.loads((q_dir / "eval.json").read_text())
    assert quantized["quantized"] is True and quantized["utterances"] == 12
    assert quantized["manifest"] == str(manifest) and quantized["cer"] >= 0


def test_seed_size_model_logs_its_parameter_count(corpus_cache: Path, tmp_path: Path):
    run_dir = tmp_path / "seed"
    result = run_script(
        "train.py",
        [
            *TINY_CORPUS,
            f"data.cache_dir={corpus_cache}",
            "model.n_cnn=3",
            "model.n_rnn=5",
            "trainer.max_steps=2",
            "data.batch_size=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "23,705,373 parameters" in result.stdout
    assert json.loads((run_dir / "summary.json").read_text())["n_params"] == 23705373
    assert read_offline_run(run_dir / "wandb").summary["n_params"] == 23705373


def test_training_lowers_the_loss(corpus_cache: Path, tmp_path: Path):
    run_dir = tmp_path / "learn"
    result = run_script(
        "train.py",
        train_args(corpus_cache, run_dir, "trainer.max_epochs=6", "optim.lr=2e-3", "augment=none"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    losses = [m["train/loss"] for m in metrics if "train/loss" in m]
    dev = [m["dev/loss"] for m in metrics if "dev/loss" in m]
    assert len(dev) == 6  # one dev evaluation per epoch
    assert losses[-1] < 0.7 * losses[0]
    assert dev[-1] < dev[0]


def test_patience_stops_a_run_that_no_longer_improves(corpus_cache: Path, tmp_path: Path):
    run_dir = tmp_path / "patient"
    frozen = ["optim.schedule=constant", "optim.lr=1e-12", "model.dropout=0.0", "augment=none"]
    args = train_args(
        corpus_cache,
        run_dir,
        *frozen,
        "trainer.eval_every_steps=1",
        "trainer.patience=2",
        "trainer.max_steps=50",
    )
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    evals = [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl") if "dev/cer" in m]
    assert evals == [1, 2, 3]  # the first sets the best, two more without a better CER stop it
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 3


def test_a_resume_with_other_features_is_refused_unless_accepted(corpus_cache: Path, tmp_path):
    """The command line's data.log_floor_db differs from the checkpoint's: resuming would switch
    the features in the middle of the run. One line says so; the override goes on."""
    run_dir = tmp_path / "run"
    first = run_script(
        "train.py", train_args(corpus_cache, run_dir, "trainer.max_steps=2"), tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    changed = train_args(corpus_cache, run_dir, "trainer.max_steps=4", "data.log_floor_db=40")
    refused = run_script("train.py", changed, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: resuming {run_dir / 'last.pt'}: data.log_floor_db is 60.0 there and 40.0 now, "
        "which changes what is trained on; trainer.accept_changed_settings=true resumes anyway"
    ]
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 2  # nothing lost

    accepted = run_script("train.py", [*changed, "trainer.accept_changed_settings=true"], tmp_path)
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert "data.log_floor_db is 60.0 there and 40.0 now" in accepted.stdout
    assert "resumed from" in accepted.stdout
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 4
