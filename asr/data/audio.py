"""Audio in: soundfile reads it (torchaudio.load needs torchcodec), then mono at one rate."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioError(Exception):
    """An utterance whose audio cannot be used: `reason` is its kind in `asr.data.checks.KINDS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Audio(NamedTuple):
    wave: torch.Tensor  # (N,) float32 mono at the requested rate
    source_rate: int  # the file's own sample rate
    channels: int  # the file's channel count (mixed down to one)
    source_seconds: float  # the file's real duration


def read_audio(path: str | Path, sample_rate: int) -> Audio:
    """Read a file as float32 mono at `sample_rate`, and say what it was. Raises AudioError.

    `path` stays text (os.path, not pathlib): see `asr.data.table.Utterance`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError("missing_file", f"audio file not found: {path}")
    if os.path.getsize(path) == 0:
        raise AudioError("empty_audio", f"empty audio {path} (0 bytes)")
    return _decode(path, path, sample_rate)


def read_audio_bytes(data: bytes, sample_rate: int, *, name: str, ext: str) -> Audio:
    """`read_audio` of a file's bytes (a member of a tar shard); `ext` is the file's suffix,
    `name` what messages call it."""
    if not data:
        raise AudioError("empty_audio", f"empty audio {name} (0 bytes)")
    # libsndfile finds every other format from the bytes themselves; MP3 needs the hint
    return _decode(io.BytesIO(data), name, sample_rate, "MP3" if ext == "mp3" else None)


def _decode(source, name: str, sample_rate: int, fmt: str | None = None) -> Audio:
    try:
        data, sr = sf.read(source, dtype="float32", always_2d=True, format=fmt)  # (N, channels)
    except Exception as e:  # soundfile raises several types for broken files
        raise AudioError("unreadable_audio", f"unreadable audio {name}: {e}") from None
    if data.shape[0] == 0:
        raise AudioError("empty_audio", f"empty audio {name}")
    if not np.isfinite(data).all():
        raise AudioError("nonfinite_audio", f"non-finite samples in {name}")
    wave = torch.from_numpy(data.mean(axis=1))  # mixdown: mean over channels
    if sr != sample_rate:
        wave = AF.resample(wave, sr, sample_rate)
    return Audio(wave, int(sr), int(data.shape[1]), data.shape[0] / sr)
