"""How fast each audio decode path feeds training, per CPU core, features included.

python bench/decode_speed.py                      # 20 files, 5 rounds
python bench/decode_speed.py --files 3 --rounds 1  # smoke: seconds
python bench/decode_speed.py --out decode.json     # also write the result as JSON

The synthetic corpus's first training clips (16 kHz FLAC) are re-encoded into 8 paths: WAV
(PCM_16), FLAC (PCM_16), MP3 and Ogg/Opus, each at 16 kHz and at 48 kHz (upsampled first). The
measured operation per file is exactly a DataLoader worker's: `asr.data.audio.read_audio` (read,
mixdown, resample to 16 kHz) then the product's log-mel, `make_logmel(DataConfig())`.

- One thread (`torch.set_num_threads(1)`): a loader worker is one process on one core, so the
  rate of one thread is the rate of one worker.
- Process CPU time (`time.process_time`), and wall time beside it: the machine is shared, and CPU
  time counts only the work this process did, not the time it waited for a core.
- The 8 paths are interleaved in rounds (round r runs every path once over all files, the order
  rotated by r), after one untimed warm-up pass (page cache, first-call costs); each path's rate
  is its median over rounds. Decode and log-mel are timed separately in the same loop.

From the per-core rate: the worker processes one GPU needs at an anchor rate (default 1,500 audio
seconds per second, the seed model's estimated bound on an H100 at batch 10), one core each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as AF  # noqa: E402

from asr.data.audio import read_audio  # noqa: E402
from asr.data.corpus import resolve_manifests  # noqa: E402
from asr.data.loader import make_logmel  # noqa: E402
from asr.schema import DataConfig  # noqa: E402

SOURCE_RATE = 16000  # the corpus's rate, and the rate read_audio delivers
# name -> (soundfile format, subtype, file suffix)
FORMATS = {
    "wav": ("WAV", "PCM_16", ".wav"),
    "flac": ("FLAC", "PCM_16", ".flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
    "opus": ("OGG", "OPUS", ".opus"),
}
PATHS = [(fmt, rate) for fmt in FORMATS for rate in (16000, 48000)]  # (format, file rate)


def source_clips(*, files: int, log: Callable[[str], None]) -> list[torch.Tensor]:
    """The first `files` training clips of the synthetic corpus, each (N,) float32 at 16 kHz."""
    manifest = resolve_manifests(DataConfig(), log=log)["train"]
    clips = []
    with open(manifest, encoding="utf-8") as f:
        for line in itertools.islice(f, files):
            audio = read_audio(manifest.parent / json.loads(line)["audio_filepath"], SOURCE_RATE)
            clips.append(audio.wave)  # (N,)
    if len(clips) < files:
        raise ValueError(f"{manifest} has {len(clips)} utterances, fewer than --files {files}")
    return clips


def encode(clips: list[torch.Tensor], *, fmt: str, rate: int, folder: Path) -> list[Path]:
    """Write every clip as `fmt` at `rate` Hz into `folder`; soundfile's errors propagate."""
    format_, subtype, suffix = FORMATS[fmt]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, wave in enumerate(clips):  # wave: (N,) at 16 kHz
        if rate != SOURCE_RATE:
            wave = AF.resample(wave, SOURCE_RATE, rate)  # (N * rate / 16000,)
        path = folder / f"{i:04d}{suffix}"
        sf.write(str(path), wave.numpy(), rate, format=format_, subtype=subtype)
        paths.append(path)
    return paths


def run_pass(files: list[Path], logmel: torch.nn.Module) -> dict[str, float]:
    """Decode + featurize every file once: CPU and wall seconds of each part, decoded seconds."""
    t = {"decode_cpu": 0.0, "decode_wall": 0.0, "logmel_cpu": 0.0, "logmel_wall": 0.0}
    decoded = 0.0
    with torch.no_grad():
        for path in files:
            c0, w0 = time.process_time(), time.perf_counter()
            audio = read_audio(path, SOURCE_RATE)  # wave (N,) at 16 kHz
            c1, w1 = time.process_time(), time.perf_counter()
            logmel(audio.wave)  # (n_mels, T)
            c2, w2 = time.process_time(), time.perf_counter()
            t["decode_cpu"] += c1 - c0
            t["decode_wall"] += w1 - w0
            t["logmel_cpu"] += c2 - c1
            t["logmel_wall"] += w2 - w1
            decoded += audio.wave.numel() / SOURCE_RATE
    return {**t, "decoded_seconds": decoded}


def summarize(
    passes: list[dict[str, float]], *, audio_seconds: float, anchor_rate: float
) -> dict[str, float | int]:
    """One path's timed passes -> median rates over rounds, log-mel share, workers for anchor."""
    per_cpu = statistics.median(audio_seconds / (p["decode_cpu"] + p["logmel_cpu"]) for p in passes)
    per_wall = statistics.median(
        audio_seconds / (p["decode_wall"] + p["logmel_wall"]) for p in passes
    )
    logmel_cpu = sum(p["logmel_cpu"] for p in passes)
    decode_cpu = sum(p["decode_cpu"] for p in passes)
    return {
        "audio_s_per_cpu_s": per_cpu,
        "audio_s_per_wall_s": per_wall,
        "logmel_share": logmel_cpu / (logmel_cpu + decode_cpu),
        "workers_for_anchor": math.ceil(anchor_rate / per_cpu),
    }


def measure(
    work: Path,
    *,
    files: int,
    rounds: int,
    anchor_rate: float = 1500.0,
    log: Callable[[str], None] = print,
) -> dict:
    """Encode, warm up, time `rounds` interleaved rounds of the 8 paths; a JSON-able dict."""
    clips = source_clips(files=files, log=log)
    audio_seconds = sum(w.numel() for w in clips) / SOURCE_RATE  # the sources' true duration
    logmel = make_logmel(DataConfig())
    rows: dict[tuple[str, int], dict] = {}
    encoded: dict[tuple[str, int], list[Path]] = {}
    for fmt, rate in PATHS:
        row = rows[fmt, rate] = {"format": fmt, "source_rate": rate}
        try:
            encoded[fmt, rate] = encode(clips, fmt=fmt, rate=rate, folder=work / f"{fmt}_{rate}")
            size = sum(p.stat().st_size for p in encoded[fmt, rate])
            row["bytes_per_audio_second"] = size / audio_seconds
        except Exception as e:  # libsndfile refuses a format or subtype: report, don't fake
            row["error"] = f"encode: {type(e).__name__}: {e}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        log(f"decode_speed: {files} files ({audio_seconds:.1f} audio s), warm-up pass")
        for key in list(encoded):  # warm-up, untimed; also finds files that do not read back
            try:
                p = run_pass(encoded[key], logmel)
                rows[key]["decoded_s_per_source_s"] = p["decoded_seconds"] / audio_seconds
            except Exception as e:
                rows[key]["error"] = f"decode: {type(e).__name__}: {e}"
                del encoded[key]
        keys = list(encoded)
        passes: dict[tuple[str, int], list[dict[str, float]]] = {k: [] for k in keys}
        for r in range(rounds):
            log(f"decode_speed: round {r + 1}/{rounds}")
            shift = r % len(keys) if keys else 0
            for key in keys[shift:] + keys[:shift]:
                passes[key].append(run_pass(encoded[key], logmel))
    finally:
        torch.set_num_threads(threads)
    for key, timed in passes.items():
        rows[key].update(summarize(timed, audio_seconds=audio_seconds, anchor_rate=anchor_rate))
    return {
        "anchor_rate": anchor_rate,
        "files": files,
        "audio_seconds": audio_seconds,
        "rounds": rounds,
        "paths": [rows[k] for k in PATHS],
    }


def table(result: dict) -> list[str]:
    """The result as a Markdown table, one row per path."""
    anchor = f"{result['anchor_rate']:,.0f}"
    lines = [
        "| format | source rate | kB per audio s | audio s per CPU s (1 core) | log-mel share "
        f"| workers for {anchor} audio s/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for p in result["paths"]:
        head = f"| {p['format']} | {p['source_rate'] // 1000} kHz "
        if "error" in p:
            lines.append(head + f"| error: {p['error']} | | | |")
            continue
        lines.append(
            head + f"| {p['bytes_per_audio_second'] / 1000:.1f} | {p['audio_s_per_cpu_s']:.0f} "
            f"| {p['logmel_share']:.0%} | {p['workers_for_anchor']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20, help="training clips per path")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    ap.add_argument("--anchor", type=float, default=1500.0, help="audio s/s one GPU consumes")
    ap.add_argument("--work", type=Path, help="folder for the encoded files (default: temp)")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="decode_speed_"))
    try:
        result = measure(work, files=args.files, rounds=args.rounds, anchor_rate=args.anchor)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(table(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
