"""evaluate.py with decoders: the log-prob cache, a real tuning sweep, and its report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from asr import checkpoint, lm
from asr.data.manifest import read_manifest
from asr.data.sentences_es import generate_sentences
from asr.data.synth import SynthSpec
from asr.decoding import DecodeConfig
from asr.evaluation import evaluate_checkpoint
from asr.lm import arpa_unigrams
from asr.lm import cli as lm_cli
from asr.model import DeepSpeech2, ModelConfig
from asr.schema import DataConfig, EvaluateConfig
from asr.text import Vocabulary, normalize, oov_rate
from asr.tracking import LoggerConfig
from tests.conftest import TINY_CORPUS, TINY_MODEL, run_script
from tests.wandb_offline import read_offline_run

MODEL = ModelConfig(n_cnn=1, n_rnn=1, rnn_dim=32, n_feats=32, dropout=0.0)


def random_checkpoint(run: Path, cache: Path, seed: int = 0) -> Path:
    """A checkpoint in the trainer's format over the tiny corpus, with random weights whose
    last layer is scaled up, so that greedy decoding emits characters and spaces (words).
    Another `seed`, other weights: another key in the log-prob cache."""
    torch.manual_seed(seed)
    model = DeepSpeech2(MODEL)
    with torch.no_grad():
        model.classifier[-1].weight.mul_(30)
    spec = SynthSpec(train_hours=0.03, dev_utterances=12, test_utterances=12)
    data = DataConfig(n_mels=32, cache_dir=str(cache), synth=spec)
    corpus = next(cache.glob("synth_es-*/train.jsonl")).parent
    manifests = {p.stem: str(p) for p in corpus.glob("*.jsonl")}
    state = {
        "format_version": checkpoint.FORMAT_VERSION,
        "model": model.state_dict(),
        "counters": {"step": 7},
        "config": {"model": dataclasses.asdict(MODEL), "data": dataclasses.asdict(data)},
        "vocab": Vocabulary().to_dict(),
        "manifests": manifests,
    }
    run.mkdir(parents=True, exist_ok=True)
    checkpoint.save_atomic(state, run / "best.pt")
    return run


@pytest.fixture(scope="module")
def ckpt(corpus_cache: Path, tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("run") / "run", corpus_cache)


def evaluate(ckpt: Path, out: Path, **kwargs) -> dict:
    settings = {"split": "dev", "logger": LoggerConfig(kind="none"), **kwargs}
    cfg = EvaluateConfig(ckpt=str(ckpt), **settings)
    return evaluate_checkpoint(cfg, out)


def test_the_second_job_runs_no_forward_pass(ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []
    forward = DeepSpeech2.forward
    monkeypatch.setattr(DeepSpeech2, "forward", lambda *a: calls.append(1) or forward(*a))
    first = evaluate(ckpt, tmp_path / "a", cache_emissions=False)
    assert calls and not first["emissions_cached"]
    n_batches = len(calls)

    calls.clear()
    second = evaluate(ckpt, tmp_path / "b")  # fills the cache
    assert len(calls) == n_batches and not second["emissions_cached"]
    assert second["cer"] == first["cer"] and second["wer"] == first["wer"]

    calls.clear()
    beam = DecodeConfig(name="beam", lm_weight=0.5, sil_score=1.0)
    third = evaluate(ckpt, tmp_path / "c", decode=beam)
    assert calls == [] and third["emissions_cached"]  # decoding only
    assert third["decode"]["lm_weight"] == 0.5 and third["decode"]["name"] == "beam"
    assert third["utterances"] == second["utterances"] == 12
    # greedy's numbers on the same log-probs, beside the beam search's
    assert (third["greedy_cer"], third["greedy_wer"]) == (second["cer"], second["wer"])
    assert 0 <= third["oov_rate"] < 1  # dev words the LM of the training transcripts never saw

    calls.clear()  # another feature setting is another key: computed again
    fourth = evaluate(ckpt, tmp_path / "d", quantize=True)
    assert calls and not fourth["emissions_cached"] and fourth["runtime"] == "torch-int8"


def test_onnx_runtime_gives_what_torch_gives(ckpt: Path, corpus_cache: Path, tmp_path) -> None:
    torch_result = evaluate(ckpt, tmp_path / "torch", cache_emissions=False)
    onnx_result = evaluate(ckpt, tmp_path / "onnx", runtime="onnx", cache_emissions=False)
    assert onnx_result["runtime"] == "onnx" and onnx_result["utterances"] == 12
    assert onnx_result["cer"] == pytest.approx(torch_result["cer"], abs=0.01)
    # exported once, checked against torch, into the data's cache (not beside the checkpoint)
    assert list((corpus_cache / "export").glob("*.onnx.json")) and not list(ckpt.glob("*.onnx"))


@pytest.mark.slow
def test_a_tuning_sweep_reports_the_best_settings(corpus_cache: Path, tmp_path: Path) -> None:
    ckpt = random_checkpoint(tmp_path / "run", corpus_cache, seed=1)  # not in the cache yet
    sweep_dir = tmp_path / "tune"
    args = [
        "--multirun",
        f"ckpt={ckpt}",
        "+sweep=decode_grid",
        "decode.lm_weight=0,1.5",
        "decode.sil_score=-1,0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    result = run_script("evaluate.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.glob("*/eval.json"))
    assert len(jobs) == 6
    results = [json.loads((j / "eval.json").read_text()) for j in jobs]
    assert all(r["source"].endswith(":dev") and r["decode"]["name"] == "beam" for r in results)
    assert sum(not r["emissions_cached"] for r in results) == 1  # one forward pass in all
    # The best by guarded_wer: the lowest WER among settings whose CER is no worse than greedy's
    best = min(results, key=lambda r: (r["guarded_wer"], r["wer"]))
    command = (
        f"python evaluate.py ckpt={best['ckpt']} split=test decode=beam "
        f"decode.lm_weight={best['decode']['lm_weight']} "
        f"decode.sil_score={best['decode']['sil_score']}"
    )
    assert command in result.stdout
    assert (sweep_dir / "plots" / "wer_heatmap.png").is_file()
    report = (sweep_dir / "tuning.md").read_text()
    assert "wer_heatmap.png" in report
    greedy = results[0]
    assert f"greedy on the same split: WER {greedy['greedy_wer']:.4f} CER " in report
    assert f"words new to the LM: {greedy['oov_rate']:.1%}" in report
    worse = [r for r in results if r["cer"] > r["greedy_cer"]]
    assert f"settings with a worse CER than greedy: {len(worse)} of 6" in report
    assert report.count(" worse |") == len(worse)  # each marked in its row
    # W&B: one group for the sweep; each run carries its decode settings and WER.
    runs = [read_offline_run(j / "wandb") for j in jobs]
    assert {r.group for r in runs} == {str(sweep_dir)}
    for run, r in zip(runs, results, strict=True):
        assert run.config["decode"]["sil_score"] == r["decode"]["sil_score"]
        assert run.summary["wer"] == r["wer"]


def test_lm_of_a_checkpoints_training_transcripts(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "lm.arpa"
    assert lm_cli.main(["build", "--ckpt", str(ckpt), "--order", "3", "--out", str(out)]) == 0
    manifests = checkpoint.load(ckpt / "best.pt")["manifests"]
    words = {s: {w for e in read_manifest(Path(p)) for w in normalize(e.text, "es").text.split()}
             for s, p in manifests.items()}  # fmt: skip
    assert set(arpa_unigrams(out)) == words["train"]  # training transcripts only
    # decode.lm=auto builds the same model once, into the data's cache
    built = lm.cached_lm(
        Path(manifests["train"]), order=3, language="es", vocab=Vocabulary(), cache_dir=tmp_path
    )
    assert built.read_text() == out.read_text()
    assert (
        lm.cached_lm(
            Path(manifests["train"]), order=3, language="es", vocab=Vocabulary(), cache_dir=tmp_path
        )
        == built
    )


def test_an_lm_of_other_text_decodes_the_test_split(ckpt: Path, tmp_path: Path) -> None:
    """What users do: a character LM built from a domain text (here: generated sentences that
    share none with the test split), given to evaluate.py. The share of test words it never
    saw is counted against that text's words."""
    manifests = checkpoint.load(ckpt / "best.pt")["manifests"]
    test_texts = [e.text for e in read_manifest(Path(manifests["test"]))]
    domain = [s for s in generate_sentences(400, seed=7) if s not in set(test_texts)]
    text = tmp_path / "domain.txt"
    text.write_text("\n".join(domain) + "\n")
    out = tmp_path / "domain-chars.arpa"
    args = ["build", "--text", str(text), "--unit", "char", "--out", str(out)]
    assert lm_cli.main(args) == 0
    result = evaluate(
        ckpt, tmp_path / "e", split="test", decode=DecodeConfig(name="beam", lm=str(out))
    )
    known = {w for s in domain for w in normalize(s, "es").text.split()}
    references = [normalize(t, "es").text for t in test_texts]
    assert result["oov_rate"] == pytest.approx(oov_rate(references, known))
    assert result["decode"]["lm"] == str(out) and result["decode"]["unit"] == "char"


@pytest.mark.slow
def test_training_evaluates_with_the_beam_search(corpus_cache: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        *TINY_CORPUS,
        *TINY_MODEL,
        f"data.cache_dir={corpus_cache}",
        "data.batch_size=4",
        "trainer.max_steps=2",
        "decode=beam",
        "decode.lm_weight=1",
        f"hydra.run.dir={run_dir}",
    ]
    result = run_script("train.py", args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["test_wer"] >= 0
    config = read_offline_run(run_dir / "wandb").config
    assert config["decode"]["name"] == "beam" and config["decode"]["lm_weight"] == 1.0
