"""A manifest holding every kind of bad entry `asr.data.checks` knows, mixed with good ones.

Built from a good manifest (the tiny synth_es corpus): its entries stay, and one or more of each
bad kind is added, made from copies of its audio where the kind needs real speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

# kind -> how many entries of that kind the builder adds
BAD_KINDS = {
    "non_utf8": 1,
    "bad_json": 2,
    "duplicate_path": 2,
    "missing_file": 2,
    "unreadable_audio": 1,
    "empty_audio": 2,
    "nonfinite_audio": 1,
    "empty_text": 2,
    "chars_outside_alphabet": 1,
    "too_long_duration": 1,
    "too_long_for_ctc": 1,
}
REPAIRED_KINDS = {"resampled": 1, "mixed_down": 1, "duration_mismatch": 1}


def _rows(manifest: Path) -> list[dict]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for r in rows:  # absolute paths: the bad manifest lives elsewhere
        p = Path(r["audio_filepath"])
        r["audio_filepath"] = str(p if p.is_absolute() else manifest.parent / p)
    return rows


def build_bad_manifest(good_manifest: Path, out_dir: Path) -> Path:
    """Write `out_dir/bad.jsonl`: every good entry plus BAD_KINDS and REPAIRED_KINDS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    good = _rows(good_manifest)
    a, b, c = good[0], good[1], good[2]
    wave, sr = sf.read(a["audio_filepath"], dtype="float32")

    def audio(name: str, data: np.ndarray, rate: int = sr, subtype: str | None = None) -> str:
        path = out_dir / name
        sf.write(path, data, rate, subtype=subtype)
        return str(path)

    def entry(path: str, text: str, duration: float) -> str:
        return json.dumps({"audio_filepath": path, "text": text, "duration": duration})

    nan_wave = wave.copy()
    nan_wave[100] = np.nan
    resampled = AF.resample(torch.from_numpy(wave), sr, 8000).numpy()
    unreadable = out_dir / "corrupt.wav"
    unreadable.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage, not audio")
    dur = a["duration"]
    lines = [json.dumps(r, ensure_ascii=False) for r in good]
    bad = [
        b"\xff\xfe not utf-8 \xc3\x28\n",  # non_utf8
        b'{"audio_filepath": "x.wav", "text": "hola"\n',  # bad_json: truncated
        b'{"audio_filepath": "x.wav", "text": "hola", "duration": "long"}\n',  # bad_json: type
        entry(a["audio_filepath"], a["text"], dur).encode() + b"\n",  # duplicate_path
        entry(b["audio_filepath"], b["text"], b["duration"]).encode() + b"\n",  # duplicate_path
        entry(str(out_dir / "nowhere.wav"), "hola", 1.0).encode() + b"\n",  # missing_file
        entry("also/missing.flac", "adios", 1.0).encode() + b"\n",  # missing_file (relative)
        entry(str(unreadable), "hola", 1.0).encode() + b"\n",  # unreadable_audio
        entry(audio("empty.wav", np.zeros(0, np.float32)), "hola", 1.0).encode() + b"\n",
        # empty_audio too, with the duration measured from the file (not too_long_for_ctc)
        entry(audio("empty0.wav", np.zeros(0, np.float32)), "hola", 0.0).encode() + b"\n",
        entry(audio("nan.wav", nan_wave, subtype="FLOAT"), a["text"], dur).encode() + b"\n",
        entry(audio("e1.wav", wave), "   ", dur).encode() + b"\n",  # empty_text
        entry(audio("e2.wav", wave), " ¿¡?! ", dur).encode() + b"\n",  # empty after normalizing
        entry(audio("chars.wav", wave), "tengo 25 años", dur).encode() + b"\n",
        entry(audio("long.wav", wave), a["text"], 30.0).encode() + b"\n",  # too_long_duration
        entry(audio("ctc.wav", wave[: sr // 4]), "una frase larguisima " * 4, 0.25).encode()
        + b"\n",  # too_long_for_ctc: 0.25 s cannot hold 80 characters
        # repaired on load, and trained on:
        entry(audio("r8k.wav", resampled, 8000), a["text"], dur).encode() + b"\n",
        entry(audio("stereo.wav", np.stack([wave, wave], 1)), a["text"], dur).encode() + b"\n",
        entry(
            audio("misdeclared.wav", sf.read(c["audio_filepath"], dtype="float32")[0]),
            c["text"],
            c["duration"] + 2.0,
        ).encode()
        + b"\n",  # duration_mismatch
    ]
    # interleave: bad entries between good ones, as in a real corpus
    out = out_dir / "bad.jsonl"
    with out.open("wb") as f:
        for i, line in enumerate(lines):
            f.write(line.encode() + b"\n")
            if i < len(bad):
                f.write(bad[i])
        for line in bad[len(lines) :]:
            f.write(line)
    return out
