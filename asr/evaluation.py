"""Evaluate a checkpoint with nothing but the checkpoint: it carries its config and vocabulary.

The acoustic model's log-probs go through `asr.decoding.emissions`' cache, so the jobs of a
decoder-tuning sweep (`evaluate.py --multirun decode=beam decode.lm_weight=...`) run the model
once between them and then only decode.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from asr import checkpoint
from asr.checkpoint import checkpoint_data, split_manifest
from asr.data.checks import ProblemReport
from asr.data.loader import ctc_frames_fn, default_num_workers, make_loader, make_logmel
from asr.data.table import TextRules, open_table
from asr.decoding import GreedyDecoder, make_run_decoder
from asr.decoding.emissions import cached_emissions, compute_emissions, emission_key
from asr.features import FEATURE_KEYS
from asr.metrics import cer, utterance_cer, wer
from asr.model import DeepSpeech2, load_model, num_params
from asr.precision import pick_device
from asr.schema import ConfigError, DataConfig, EvaluateConfig, default_cache_dir
from asr.text import Vocabulary, oov_rate
from asr.tracking import Tracker


def cache_root(data: DataConfig) -> Path:
    """Where derived files go (log-probs, LMs, lexicons, exports): the data's cache."""
    return Path(data.cache_dir or default_cache_dir()).expanduser()


def _acoustic_model(
    cfg: EvaluateConfig, model: DeepSpeech2, ckpt: Path, device: torch.device, cache: Path
):
    """What computes the log-probs, and its name in the emissions cache key."""
    if cfg.runtime == "onnx":
        from asr.export import exported_for  # needs the [export] extra

        return exported_for(ckpt, cache / "export"), "onnx"
    if cfg.quantize:
        if device.type != "cpu":
            raise ConfigError("quantize=true is for CPU inference (device=cpu)")
        model = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
        )
        return model, "torch-int8"
    return model.to(device), "torch"


def evaluate_checkpoint(cfg: EvaluateConfig, run_dir: str | Path) -> dict[str, Any]:
    """Decode a split of the checkpoint's data (or any manifest); write eval.json + a CSV."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint.resolve_checkpoint(cfg.ckpt, "best.pt")
    state = checkpoint.load(ckpt_path, trust=cfg.trust_checkpoint)
    device = pick_device(cfg.device, key="device")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    vocab = Vocabulary.from_dict(state["vocab"])
    data = checkpoint_data(state)
    if cfg.manifest:
        source, manifest = cfg.manifest, Path(cfg.manifest).expanduser().resolve()
    else:
        source, manifest = f"{data.corpus}:{cfg.split}", split_manifest(state, data, cfg.split)
    decoder = make_run_decoder(  # before the model runs: a bad LM fails in a second
        cfg.decode,
        vocab,
        language=data.language,
        train_manifest=partial(split_manifest, state, data, "train"),
        cache_dir=cache_root(data),
    )

    model = load_model(state)
    n_params = num_params(model)
    logmel = make_logmel(data)
    report = ProblemReport()
    frames = ctc_frames_fn(logmel, model.output_lengths)
    utts = open_table(  # every duration kept: a test set is scored whole
        manifest,
        TextRules(vocab, data.language, math.inf),
        output_frames=frames,
        cache_dir=cache_root(data),
        report=report,
    )
    if not utts:
        raise ConfigError(f"no usable utterances in {manifest} (skipped: {report.summary()})")
    acoustic, runtime = _acoustic_model(cfg, model, ckpt_path, device, cache_root(data))

    def forward_pass():
        loader, _ = make_loader(  # batches sorted by duration; on CUDA a pinned worker
            utts,
            logmel,
            batch_size=cfg.batch_size,
            num_workers=default_num_workers(None, device),
            output_frames=frames,
            pin_memory=device.type == "cuda",
        )
        return compute_emissions(acoustic, loader, device)

    features = {k: getattr(data, k) for k in FEATURE_KEYS}
    key = emission_key(ckpt=ckpt_path, manifest=manifest, features=features, runtime=runtime)
    cache = cache_root(data) / "emissions" if cfg.cache_emissions else None
    emissions, cached = cached_emissions(key, cache, forward_pass)
    report.merge(emissions.problems)

    start = time.perf_counter()
    hypotheses = [decoder(lp)[0].text for lp in emissions.log_probs]
    decode_seconds = time.perf_counter() - start
    references = [u.text for u in emissions.utts]
    audio = max(emissions.audio_seconds, 1e-9)
    scores = {"cer": cer(references, hypotheses), "wer": wer(references, hypotheses)}
    greedy, known = hypotheses, None
    if cfg.decode.is_beam:  # greedy on the same log-probs, and the words the LM has seen
        greedy = [GreedyDecoder(vocab)(lp)[0].text for lp in emissions.log_probs]
        known = decoder.known_words()
    result = {
        "ckpt": str(ckpt_path),
        "source": source,
        "manifest": str(manifest),
        "utterances": len(emissions.utts),
        "audio_seconds": emissions.audio_seconds,
        **scores,
        **against_greedy(references, hypotheses, scores, greedy=greedy, known=known),
        "rtf": (emissions.forward_seconds + decode_seconds) / audio,
        "decode_rtf": decode_seconds / audio,
        "decode": cfg.decode.to_json(),
        "objective": cfg.objective,
        "runtime": runtime,
        "emissions_cached": cached,
        "quantized": cfg.quantize,
        "n_params": n_params,
        "skipped": report.skipped,
        "repaired": report.repaired,
        "trained_steps": state["counters"]["step"],
        "device": str(device),
    }
    write_results(cfg, run_dir, result, emissions.utts, hypotheses)
    how = "cached log-probs" if cached else "the model's forward pass"
    print(
        f"{source} [{cfg.decode.name}]: CER {result['cer']:.4f} WER {result['wer']:.4f} "
        f"RTF {result['rtf']:.4f} (decoding {result['decode_rtf']:.4f}) on {len(references)} "
        f"utterances ({audio / 60:.1f} min, {how}); skipped: {report.summary()}"
    )
    if cfg.decode.is_beam:
        oov = result["oov_rate"]
        print(
            f"  greedy on the same: CER {result['greedy_cer']:.4f} WER {result['greedy_wer']:.4f}"
            f"; words new to the LM: {'unknown' if oov is None else f'{oov:.1%}'}"
        )
    print(f"wrote {run_dir / 'eval.json'} and {run_dir / 'utterances.csv'}")
    return result


def against_greedy(
    references: list[str],
    hypotheses: list[str],
    scores: dict[str, float],
    *,
    greedy: list[str],
    known: set[str] | None,
) -> dict[str, Any]:
    """A decoder's result (`scores`: its CER and WER) beside greedy decoding's on the same
    log-probs: greedy's WER and CER, `guarded_wer` (WER, or 1 + WER when the CER is worse than
    greedy's), the share of reference words the LM never saw (`oov_rate`, None when the LM does
    not say) and, on the utterances whose words it all saw, both WERs."""
    greedy_cer = cer(references, greedy)
    out: dict[str, Any] = {
        "greedy_cer": greedy_cer,
        "greedy_wer": wer(references, greedy),
        "guarded_wer": scores["wer"] if scores["cer"] <= greedy_cer else 1.0 + scores["wer"],
        "oov_rate": None if known is None else oov_rate(references, known),
    }
    if known is not None:
        inside = [i for i, r in enumerate(references) if set(r.split()) <= known]
        if inside:
            refs = [references[i] for i in inside]
            out["in_vocab_utterances"] = len(inside)
            out["in_vocab_wer"] = wer(refs, [hypotheses[i] for i in inside])
            out["in_vocab_greedy_wer"] = wer(refs, [greedy[i] for i in inside])
    return out


def write_results(
    cfg: EvaluateConfig, run_dir: Path, result: dict[str, Any], utts: list, hypotheses: list[str]
) -> None:
    """eval.json, utterances.csv, and the run in W&B (decode settings in its config)."""
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(run_dir / "utterances.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "reference", "hypothesis", "cer"])
        for u, hyp in zip(utts, hypotheses, strict=True):
            writer.writerow([u.utt_id, u.text, hyp, f"{utterance_cer(u.text, hyp):.4f}"])
    ckpt_dir = Path(result["ckpt"]).parent.name
    split = cfg.split if not cfg.manifest else Path(cfg.manifest).stem
    name = f"eval-{ckpt_dir}-{split}"
    logger = dataclasses.replace(
        cfg.logger, name=cfg.logger.name or name, tags=[*cfg.logger.tags, "eval"]
    )
    config = {k: result[k] for k in ("ckpt", "source", "decode", "runtime")}
    with Tracker(run_dir, logger, config) as tracker:
        metrics = {f"eval/{k}": result[k] for k in ("cer", "wer", "rtf", "decode_rtf")}
        tracker.log(metrics, step=0)
        rows = [[u.utt_id, u.text, h] for u, h in zip(utts, hypotheses, strict=True)]
        tracker.log_table("eval/samples", ["id", "reference", "hypothesis"], rows[:50], step=0)
        tracker.update_summary(**result)
        tracker.finish("ok")
