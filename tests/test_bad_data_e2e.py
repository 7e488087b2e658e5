"""A training run on a manifest holding every kind of bad entry: it finishes, learns from the
good utterances, and reports each skipped or repaired one by kind (log, summary.json, W&B)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.badcorpus import BAD_KINDS, REPAIRED_KINDS, build_bad_manifest
from tests.conftest import TINY_MODEL, run_script
from tests.wandb_offline import read_offline_run

pytestmark = pytest.mark.slow


def test_training_survives_every_bad_kind(corpus_cache: Path, tmp_path: Path):
    corpus = next(corpus_cache.glob("synth_es-*/train.jsonl")).parent
    bad = build_bad_manifest(corpus / "train.jsonl", tmp_path / "bad")
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        [
            *TINY_MODEL,
            "data=manifest",
            f"data.train_manifest={bad}",
            f"data.dev_manifest={corpus / 'dev.jsonl'}",
            "data.batch_size=4",
            "trainer.max_epochs=4",
            "trainer.log_every_steps=5",
            "optim.lr=2e-3",
            "augment=none",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok"
    # every unusable entry was skipped and named by kind; repaired ones were trained on
    assert summary["skipped"] == BAD_KINDS
    assert summary["repaired"] == REPAIRED_KINDS
    assert summary["nonfinite_steps"] == 0
    for kind in BAD_KINDS:
        assert kind in result.stdout, kind
    assert json.loads(json.dumps(read_offline_run(run_dir / "wandb").summary["skipped"])) == (
        BAD_KINDS
    )

    # it learned from the good utterances: the training loss fell by more than half
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train/loss"] for m in metrics if "train/loss" in m]
    assert len(losses) >= 4 and losses[-1] < 0.5 * losses[0], losses
