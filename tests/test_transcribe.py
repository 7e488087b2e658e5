"""transcribe.py on a folder of mixed files: JSONL with word times, bad files reported by kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data.manifest import read_manifest
from asr.schema import TranscribeConfig
from asr.transcription import Transcriber, chunk_starts
from tests.conftest import run_script
from tests.test_decode_eval import random_checkpoint


@pytest.fixture(scope="module")
def ckpt(corpus_cache: Path, tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("run") / "run", corpus_cache)


@pytest.fixture(scope="module")
def waves(corpus_cache: Path) -> list[tuple[np.ndarray, int]]:
    manifest = next(corpus_cache.glob("synth_es-*/dev.jsonl"))
    return [sf.read(str(e.audio_path), dtype="float32") for e in read_manifest(manifest)[:8]]


def test_a_folder_of_mixed_files(ckpt: Path, waves, tmp_path: Path) -> None:
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    (wave, sr), (wave2, _), (wave3, _) = waves[:3]
    sf.write(folder / "a.wav", wave, sr)
    stereo_44k = np.repeat(
        np.interp(np.arange(0, len(wave2), sr / 44100), np.arange(len(wave2)), wave2)[:, None], 2, 1
    )
    sf.write(folder / "b.flac", stereo_44k, 44100)  # resampled and mixed down
    sf.write(folder / "sub" / "c.mp3", wave3, sr, format="MP3")
    long = np.concatenate([w for w, _ in waves] * 2)  # ~ 20 s: cut into chunks
    sf.write(folder / "long.wav", long, sr)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00 not really a wav file")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not audio: not an input")
    out = tmp_path / "out.jsonl"
    args = [f"ckpt={ckpt}", f"input={folder}", f"out={out}", "chunk_seconds=4", "overlap_seconds=1"]
    result = run_script("transcribe.py", [*args, f"hydra.run.dir={tmp_path / 'h'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(x["file"]).name for x in lines) == ["a.wav", "b.flac", "c.mp3", "long.wav"]
    for x in lines:
        assert set(x) == {"file", "text", "duration", "words"}
        assert x["text"] == " ".join(w["word"] for w in x["words"])
        for w in x["words"]:
            assert 0 <= w["start"] < w["end"] <= x["duration"] and 0 < w["confidence"] <= 1
    by_name = {Path(x["file"]).name: x for x in lines}
    assert by_name["long.wav"]["duration"] == pytest.approx(len(long) / sr, abs=1e-3)
    assert by_name["long.wav"]["words"][-1]["end"] > 0.8 * by_name["long.wav"]["duration"]
    assert "transcribed 4 of 6 files" in result.stdout
    assert "unreadable_audio" in result.stdout and "empty_audio" in result.stdout


def test_chunks_join_on_the_frame_grid(ckpt: Path, waves) -> None:
    wave = torch.from_numpy(np.concatenate([w for w, _ in waves]))
    whole = Transcriber(TranscribeConfig(ckpt=str(ckpt), input="-", chunk_seconds=60))
    chunked = Transcriber(
        TranscribeConfig(ckpt=str(ckpt), input="-", chunk_seconds=3, overlap_seconds=1)
    )
    a, b = whole.log_probs(wave), chunked.log_probs(wave)  # (T, C)
    assert abs(a.shape[0] - b.shape[0]) <= 1  # one frame per 20 ms either way
    agree = (a[: b.shape[0]].argmax(-1) == b[: a.shape[0]].argmax(-1)).float().mean()
    assert agree > 0.8  # the same frames: only context near chunk edges differs


def test_chunk_starts_cover_the_recording() -> None:
    starts = chunk_starts(100_000, 48_000, 16_000, 320)
    assert starts[0] == 0 and all(s % 320 == 0 for s in starts)
    assert starts[-1] + 48_000 >= 100_000 and len(starts) == 3
    assert chunk_starts(1000, 48_000, 16_000, 320) == [0]
