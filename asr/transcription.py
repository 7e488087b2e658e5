"""transcribe.py's work: audio files in, one JSON line per file out, with word times.

A recording longer than `chunk_seconds` is cut into chunks that overlap by `overlap_seconds`.
The bidirectional GRUs need each chunk whole, and a word cut at a chunk's edge comes out
broken, so neighbouring chunks share the overlap and each keeps its log-probs up to the
overlap's middle. The decoder then runs once over the joined log-probs: a word that crosses a
seam is decoded from frames that each saw at least half the overlap of context on both sides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from tqdm import tqdm

from asr import checkpoint
from asr.checkpoint import checkpoint_data, split_manifest
from asr.data.audio import AudioError, read_audio
from asr.data.checks import ProblemReport
from asr.data.loader import make_logmel
from asr.data.manifest import read_manifest
from asr.decoding import Hypothesis, make_run_decoder
from asr.decoding.words import words_of
from asr.evaluation import cache_root
from asr.features import LogMel
from asr.model import DeepSpeech2, load_model
from asr.precision import pick_device
from asr.schema import ConfigError, TranscribeConfig
from asr.text import Vocabulary

Acoustic = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# Extensions of the formats soundfile reads (libsndfile 1.2: MP3 included).
AUDIO_SUFFIXES = {f".{f.lower()}" for f in sf.available_formats()} | {".wav", ".mp3", ".opus"}


def find_inputs(source: str) -> list[Path]:
    """A file, a folder (audio files in it, recursively, by extension) or a JSONL manifest."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        return [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    if path.suffix == ".jsonl" and path.is_file():
        return [e.audio_path for e in read_manifest(path)]
    if path.is_file():
        return [path]
    raise ConfigError(f"input: no such file or folder {path}")


def chunk_starts(n_samples: int, chunk: int, overlap: int, unit: int) -> list[int]:
    """Chunk start samples, multiples of `unit` (samples per output frame) so that every
    chunk's frames fall on the recording's frame grid."""
    step = max((chunk - overlap) // unit * unit, unit)
    starts = [0]
    while starts[-1] + chunk < n_samples:
        starts.append(starts[-1] + step)
    return starts


class Transcriber:
    """Holds the model, features and decoder of one checkpoint; `__call__` does one file."""

    def __init__(self, cfg: TranscribeConfig) -> None:
        self.cfg = cfg
        ckpt = checkpoint.resolve_checkpoint(cfg.ckpt, "best.pt")
        state = checkpoint.load(ckpt, trust=cfg.trust_checkpoint)
        self.device = pick_device(cfg.device, key="device")
        data = checkpoint_data(state)
        self.vocab = Vocabulary.from_dict(state["vocab"])
        self.sample_rate = data.sample_rate
        self.logmel: LogMel = make_logmel(data)
        model: DeepSpeech2 = load_model(state)
        self.output_lengths = model.output_lengths
        self.unit = data.hop_length * model.cnn.stride[1]  # samples per output frame
        self.frame_seconds = self.unit / data.sample_rate
        self.acoustic: Acoustic = model.to(self.device)
        if cfg.runtime == "onnx":
            from asr.export import exported_for  # needs the [export] extra

            self.acoustic = exported_for(ckpt, cache_root(data) / "export")
        self.decoder = make_run_decoder(
            cfg.decode,
            self.vocab,
            language=data.language,
            train_manifest=partial(split_manifest, state, data, "train"),
            cache_dir=cache_root(data),
        )

    @torch.inference_mode()
    def log_probs(self, wave: torch.Tensor) -> torch.Tensor:
        """(N,) samples -> (T, C) log-probs on the recording's frame grid, chunk by chunk."""
        chunk = int(self.cfg.chunk_seconds * self.sample_rate)
        overlap = int(self.cfg.overlap_seconds * self.sample_rate)
        starts = chunk_starts(len(wave), chunk, overlap, self.unit)
        feats = [self.logmel(wave[s : s + chunk]) for s in starts]  # (F, T_i) each
        lens = torch.tensor([f.shape[1] for f in feats])
        batch = torch.nn.utils.rnn.pad_sequence([f.T for f in feats], batch_first=True)
        out, out_lens = self.acoustic(batch.transpose(1, 2).to(self.device), lens)  # (B, T', C)
        out = out.float().cpu()
        # Chunk i keeps frames from the middle of its overlap with i - 1 to the middle of its
        # overlap with i + 1 (global frame numbers: a chunk starting at sample s starts at s/unit).
        first = [s // self.unit for s in starts]
        seams = [f + (overlap // self.unit) // 2 for f in first[1:]]
        pieces = []
        for i, (f0, n) in enumerate(zip(first, out_lens.tolist(), strict=True)):
            lo = seams[i - 1] - f0 if i > 0 else 0
            hi = seams[i] - f0 if i < len(seams) else n
            pieces.append(out[i, lo : min(hi, n)])
        return torch.cat(pieces)  # (T, C)

    def __call__(self, path: Path) -> dict[str, Any]:
        audio = read_audio(path, self.sample_rate)  # raises AudioError
        log_probs = self.log_probs(audio.wave)
        hyps: list[Hypothesis] = self.decoder(log_probs)
        best = hyps[0]
        words = words_of(best, log_probs, self.vocab, frame_seconds=self.frame_seconds)
        duration = len(audio.wave) / self.sample_rate
        for w in words:  # the last frame may reach a few ms past the end
            w.end = min(w.end, duration)
        line: dict[str, Any] = {
            "file": str(path),
            "text": best.text,
            "duration": round(duration, 3),
            "words": [w.to_dict() for w in words],
        }
        if len(hyps) > 1:
            line["nbest"] = [{"text": h.text, "score": round(h.score, 3)} for h in hyps]
        return line


def transcribe_files(cfg: TranscribeConfig) -> dict[str, Any]:
    """Transcribe every input into `cfg.out` (JSONL); bad files are reported by kind and
    skipped. Returns a summary."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    files = find_inputs(cfg.input)
    if not files:
        raise ConfigError(f"input: no audio files in {cfg.input}")
    transcriber = Transcriber(cfg)
    report = ProblemReport()
    out = Path(cfg.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    done, audio_seconds, start = 0, 0.0, time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        for path in tqdm(files, desc="transcribe", unit="file", disable=not cfg.progress):
            try:
                line = transcriber(path)
            except AudioError as e:
                report.add(e.reason, str(path), str(e))
                tqdm.write(f"skipped {path}: {e.reason} ({e})")
                continue
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            done, audio_seconds = done + 1, audio_seconds + line["duration"]
    seconds = time.perf_counter() - start
    rtf = seconds / max(audio_seconds, 1e-9)
    print(
        f"transcribed {done} of {len(files)} files ({audio_seconds:.1f} s of audio, RTF "
        f"{rtf:.4f}) into {out}; skipped: {report.summary()}"
    )
    return {"files": len(files), "transcribed": done, "skipped": report.skipped, "rtf": rtf}
