"""The benchmark's baseline is the seed's model, and its plumbing runs end to end (no timings
are asserted: they belong to bench/run.py's report, not to the test suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asr.data.synth import SynthSpec, build_synth_corpus
from asr.model import DeepSpeech2, ModelConfig, num_params
from bench.seed_baseline import SpeechRecognitionModel
from tests.conftest import ROOT


def seed_state_dict(product: DeepSpeech2) -> dict[str, torch.Tensor]:
    """The product's weights under the seed's parameter names (its GRU is `BiGRU`)."""
    return {k.replace(".gru.", ".BiGRU."): v for k, v in product.state_dict().items()}


def test_the_baseline_model_is_the_products_function_without_padding():
    """Same parameters, same outputs: the product's time-major conv stack and its GRU padding
    handling change the speed, not the function (with no padding in the batch)."""
    torch.manual_seed(0)
    product = DeepSpeech2(ModelConfig(n_cnn=2, n_rnn=2, rnn_dim=32, n_feats=16)).eval()
    seed = SpeechRecognitionModel(2, 2, 32, 29, 16).eval()
    seed.load_state_dict(seed_state_dict(product))
    assert num_params(seed) == num_params(product)
    feats = torch.randn(3, 16, 41)
    with torch.no_grad():
        ours, _ = product(feats, torch.full((3,), 41))
        theirs = F.log_softmax(seed(feats.unsqueeze(1)), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_baseline_at_the_seed_size_has_the_seeds_parameter_count():
    with torch.device("meta"):
        assert num_params(SpeechRecognitionModel(3, 5, 512, 29, 128)) == 23_705_373


@pytest.mark.slow
def test_bench_smoke_runs_every_phase_and_writes_results(tmp_path: Path):
    manifests = build_synth_corpus(
        tmp_path / "cache", SynthSpec(train_hours=0.01, dev_utterances=6, test_utterances=6)
    )
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--smoke",
            f"--manifests-dir={manifests['train'].parent}",
            f"--out={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "targets:" in result.stdout
    results = json.loads(out.read_text())
    for phase in ("throughput", "race", "rtf"):
        assert results[phase]["baseline"] and results[phase]["product"], phase
    assert results["throughput"]["baseline"]["windows"]  # timed windows after the warm-up
    assert results["rtf"]["product int8"]["cer"] is not None
    assert {t["name"] for t in results["targets"]} >= {"training throughput, seed size"}
