"""Evaluate a checkpoint with nothing but the checkpoint: it carries its config and vocabulary."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from asr import checkpoint
from asr.data.checks import ProblemReport
from asr.data.corpus import resolve_manifests
from asr.data.dataset import prepare_utterances
from asr.data.loader import ctc_frames_fn, default_num_workers, make_loader, make_logmel
from asr.data.manifest import read_manifest
from asr.data.synth import SynthSpec
from asr.inference import transcribe
from asr.loop import pick_device
from asr.metrics import utterance_cer
from asr.model import DeepSpeech2, ModelConfig, num_params
from asr.schema import ConfigError, DataConfig, EvaluateConfig, RecipeSpec
from asr.text import Vocabulary
from asr.tracking import Tracker


def load_model(state: dict[str, Any]) -> DeepSpeech2:
    model = DeepSpeech2(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_checkpoint(cfg: EvaluateConfig, run_dir: str | Path) -> dict[str, Any]:
    """Decode a split of the checkpoint's data (or any manifest); write eval.json + a CSV."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = checkpoint.resolve_checkpoint(cfg.ckpt, "best.pt")
    state = checkpoint.load(ckpt_path)
    device = pick_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    vocab = Vocabulary.from_dict(state["vocab"])
    saved = state["config"]["data"]
    data = DataConfig(
        **{
            **saved,
            "synth": SynthSpec(**saved["synth"]),
            "recipe": RecipeSpec(**saved.get("recipe", {})),
        }
    )
    model = load_model(state)
    n_params = num_params(model)
    output_lengths = model.output_lengths
    if cfg.quantize:
        if device.type != "cpu":
            raise ConfigError("quantize=true is for CPU inference (device=cpu)")
        model = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
        )
    model.to(device)
    logmel = make_logmel(data)

    if cfg.manifest:
        source, manifest = cfg.manifest, Path(cfg.manifest).expanduser().resolve()
    else:
        source = f"{data.corpus}:{cfg.split}"
        manifest = Path(state["manifests"].get(cfg.split, ""))
        if not manifest.is_file():  # e.g. another machine: rebuild the corpus from its spec
            manifests = resolve_manifests(data)
            if cfg.split not in manifests:
                raise ConfigError(
                    f"split={cfg.split}: the checkpoint's data has no {cfg.split} split"
                )
            manifest = manifests[cfg.split]

    report = ProblemReport()
    frames = ctc_frames_fn(logmel, output_lengths)
    utts = prepare_utterances(
        read_manifest(manifest, report), vocab, data.language, math.inf, frames, report
    )
    if not utts:
        raise ConfigError(f"no usable utterances in {manifest} (skipped: {report.summary()})")
    loader, _ = make_loader(  # batches sorted by duration; on CUDA a pinned worker
        utts,
        logmel,
        None,
        cfg.batch_size,
        num_workers=default_num_workers(None, device),
        output_frames=frames,
        pin_memory=device.type == "cuda",
    )

    name = f"eval-{ckpt_path.parent.name}-{cfg.split if not cfg.manifest else manifest.stem}"
    logger = dataclasses.replace(
        cfg.logger, name=cfg.logger.name or name, tags=[*cfg.logger.tags, "eval"]
    )
    with Tracker(run_dir, logger, {"ckpt": str(ckpt_path), "source": source}) as tracker:
        start = time.perf_counter()
        out = transcribe(model, loader, vocab, device, with_loss=False)
        for utt_id, kind, detail in out.problems:
            report.add(kind, utt_id, detail)
        result = {
            "ckpt": str(ckpt_path),
            "source": source,
            "manifest": str(manifest),
            "utterances": len(out.utts),
            "audio_seconds": out.audio_seconds,
            "cer": out.cer,
            "wer": out.wer,
            "rtf": out.rtf,
            "seconds": time.perf_counter() - start,
            "quantized": cfg.quantize,
            "n_params": n_params,
            "skipped": report.skipped,
            "repaired": report.repaired,
            "trained_steps": state["counters"]["step"],
            "device": str(device),
        }
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        with open(run_dir / "utterances.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "reference", "hypothesis", "cer"])
            for u, hyp in zip(out.utts, out.hypotheses, strict=True):
                writer.writerow([u.utt_id, u.text, hyp, f"{utterance_cer(u.text, hyp):.4f}"])
        tracker.log({"eval/cer": out.cer, "eval/wer": out.wer, "eval/rtf": out.rtf}, step=0)
        rows = [[u.utt_id, u.text, h] for u, h in zip(out.utts, out.hypotheses, strict=True)]
        tracker.log_table("eval/samples", ["id", "reference", "hypothesis"], rows[:50], step=0)
        tracker.update_summary(**result)
        tracker.finish("ok")
    print(
        f"{source}: CER {out.cer:.4f} WER {out.wer:.4f} RTF {out.rtf:.4f} on {len(out.utts)} "
        f"utterances ({out.audio_seconds / 60:.1f} min); skipped: {report.summary()}"
    )
    print(f"wrote {run_dir / 'eval.json'} and {run_dir / 'utterances.csv'}")
    return result
