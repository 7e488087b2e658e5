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


def run_smoke(script: str, tmp_path: Path, *args: str) -> dict:
    """`bench/<script> --smoke` on a tiny synth corpus, as CI runs it: its results JSON."""
    manifests = build_synth_corpus(
        tmp_path / "cache", SynthSpec(train_hours=0.01, dev_utterances=6, test_utterances=6)
    )
    data = manifests["train"].parent
    data_flag = "--data" if script == "gpu.py" else "--manifests-dir"
    out = tmp_path / "results.json"
    command = [sys.executable, str(ROOT / "bench" / script), "--smoke", f"{data_flag}={data}"]
    result = subprocess.run(
        [*command, f"--out={out}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "targets:" in result.stdout
    return json.loads(out.read_text())


@pytest.mark.slow
def test_bench_smoke_runs_every_phase_and_writes_results(tmp_path: Path):
    results = run_smoke("run.py", tmp_path)
    for phase in ("throughput", "race", "rtf"):
        assert results[phase]["baseline"] and results[phase]["product"], phase
    assert results["throughput"]["baseline"]["windows"]  # timed windows after the warm-up
    assert results["rtf"]["product int8"]["cer"] is not None
    assert {t["name"] for t in results["targets"]} >= {"training throughput, seed size"}


def test_gpu_bench_counts_syncs_and_copies_inside_the_steps_of_a_cuda_trace():
    """The GPU benchmark's sync count (bench/gpu_trace.py), on a CUDA trace as torch.profiler
    writes it (the CPU makes none): only what the steps issue counts, not the synchronize that
    closes the trace."""
    from bench.gpu_trace import STEP_MARK, count_trace

    def ev(cat, name, ts, dur=1, corr=None):
        return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur,
                "args": {} if corr is None else {"correlation": corr}}  # fmt: skip

    trace = {"traceEvents": [
        ev("user_annotation", STEP_MARK, 100, 100),
        ev("gpu_user_annotation", STEP_MARK, 150, 100),
        ev("cuda_runtime", "cudaLaunchKernel", 110, corr=1),
        ev("kernel", "gemm", 160, 30, corr=1),
        ev("cuda_runtime", "cudaMemcpyAsync", 120, corr=2),
        ev("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 195, corr=2),
        ev("cuda_runtime", "cudaStreamSynchronize", 121, 70),
        ev("user_annotation", STEP_MARK, 300, 50),
        ev("cuda_runtime", "cudaMemcpyAsync", 310, corr=3),
        ev("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 320, corr=3),
        ev("cuda_runtime", "cudaLaunchKernel", 330, corr=4),
        ev("kernel", "gemm", 340, 10, corr=4),
        ev("cuda_runtime", "cudaDeviceSynchronize", 400, 10),  # after the steps: not counted
        ev("cpu_op", "aten::mm", 111),
    ]}  # fmt: skip
    c = count_trace(trace, 2)
    assert c["traced_steps"] == 2 and c["cuda_events_seen"]
    assert c["sync_stream"] == 0.5 and c["sync_device"] == 0 and c["syncs"] == 0.5
    assert c["dtoh"] == 0.5 and c["htod_pageable"] == 0.5 and c["htod_pinned"] == 0
    assert c["launches"] == 1 and c["gpu_kernel_ms"] == pytest.approx(0.02)


@pytest.mark.slow
def test_gpu_bench_smoke_runs_every_phase_and_writes_results(tmp_path: Path):
    """bench/gpu.py's smoke mode: the GPU benchmark's code paths on the CPU, tiny model."""
    results = run_smoke("gpu.py", tmp_path, f"--traces={tmp_path / 'traces'}")
    assert results["machine"]["torch"] and results["machine"]["date"]
    assert set(results["matmul_peak_gflops"]) == {"fp32", "tf32", "bf16"}
    configs = {(c["side"], c["batch"], c["precision"]): c for c in results["step"]["configs"]}
    batches = results["plan"]["batches"]
    for batch in batches:  # both sides at every batch size, the product in its default precision
        assert configs[("baseline", batch, "seed")]["windows"]
        assert configs[("product", batch, results["precision_default"])]["windows"]
    for precision in ("fp32", "tf32", "bf16"):  # each precision at the largest batch (the CPU
        assert ("product", max(batches), precision) in configs  # records tf32/bf16 as skipped)
    default = results["precision_default"]  # and the padded GRUs against the packed ones
    assert configs[("product", max(batches), f"{default}/reverse")]["windows"]
    profiled = configs[("product", min(batches), results["precision_default"])]["profile"]
    assert profiled["traced_steps"] >= 1 and "syncs" in profiled
    assert list((tmp_path / "traces").glob("trace-*.json.gz"))
    for side in ("baseline", "product"):
        assert results["e2e"][side]["windows"] and results["e2e"][side]["peak_pss_mib_max"] > 0
        assert results["eval"][side]["rtf_warm"] > 0 and len(results["eval"][side]["rtfs"]) == 2
    names = " ".join(t["name"] for t in results["targets"])
    for what in ("end to end", "batch", "matmul peak", "syncs", "RTF", "host memory"):
        assert what in names, what
