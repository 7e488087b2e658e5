"""`python -m asr.data check MANIFEST [--fix OUT]`: read every entry, report problems by kind.

The alphabet, sample rate, maximum duration and the model's time stride come from the same
`conf/` defaults training uses (flags change them), so "check passes" means "training will use
every utterance". Exit status: 0 when every entry is usable (repairs on load are fine), 1 when
some are not, 2 when the command itself is wrong. `--fix OUT` writes the usable entries, with
durations measured from the files and absolute audio paths; other fields are kept.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.data.audio import AudioError
from asr.data.checks import ProblemReport, ctc_frames, load_checked
from asr.data.manifest import ManifestError
from asr.data.table import TextRules, Utterance, open_table
from asr.model import conv_output_lengths
from asr.schema import ConfigError


@dataclass(frozen=True)
class CtcFrames:
    """seconds -> CTC frames the model emits (picklable, for the checking processes)."""

    sample_rate: int
    hop_length: int
    stride: int

    def __call__(self, seconds):
        """Seconds -> frames; an array of durations -> an array of frame counts."""
        lengths = functools.partial(conv_output_lengths, stride=self.stride)
        return ctc_frames(
            seconds, sample_rate=self.sample_rate, hop_length=self.hop_length,
            output_lengths=lengths,
        )  # fmt: skip


@dataclass(frozen=True)
class AudioResult:
    index: int
    problem: tuple[str, str] | None  # (kind, message) when unusable
    notes: tuple[tuple[str, str], ...]  # repairs on load
    seconds: float  # the file's real duration (0 when unusable)


def _check_audio(args: tuple[int, Utterance, int, CtcFrames]) -> AudioResult:
    index, utt, sample_rate, frames = args
    try:
        loaded = load_checked(utt.audio_path, sample_rate, utt.duration, utt.labels, frames)
    except AudioError as e:
        return AudioResult(index, (e.reason, str(e)), (), 0.0)
    return AudioResult(index, None, loaded.notes, loaded.wave.numel() / sample_rate)


def _init_worker() -> None:
    torch.set_num_threads(1)  # the processes share the cores


def check_audio(
    utts: Sequence[Utterance], sample_rate: int, frames: CtcFrames, jobs: int
) -> Iterator[AudioResult]:
    """Load every utterance with the audio checks, in `jobs` processes."""
    work = ((i, u, sample_rate, frames) for i, u in enumerate(utts))
    if jobs <= 1 or len(utts) < 2:
        _init_worker()
        yield from map(_check_audio, work)
        return
    with multiprocessing.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
        yield from pool.imap(_check_audio, work, chunksize=8)


def write_fixed(manifest: Path, keep: dict[int, float], out: Path) -> int:
    """Copy the lines of `manifest` numbered in `keep` (line -> measured seconds) to `out`,
    with the measured duration and an absolute audio path. Returns the number written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    with manifest.open("rb") as f, tmp.open("w", encoding="utf-8") as w:
        for lineno, raw in enumerate(f, start=1):
            if lineno not in keep:
                continue
            row = json.loads(raw.decode("utf-8"))
            audio = Path(row["audio_filepath"])
            row["audio_filepath"] = str(audio if audio.is_absolute() else manifest.parent / audio)
            row["duration"] = round(keep[lineno], 4)
            w.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, out)
    return n


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m asr.data check",
        description="Read every entry of a NeMo-style JSONL manifest and report what is wrong.",
    )
    p.add_argument("manifest", type=Path)
    p.add_argument("--fix", type=Path, metavar="OUT", help="write the usable entries here")
    p.add_argument("--language", help="es | en (default: conf's data.language)")
    p.add_argument("--alphabet", help="a custom alphabet file (default: conf's data.alphabet)")
    p.add_argument("--stride", type=int, help="the model's time stride (default: conf's)")
    p.add_argument("--sample-rate", type=int, help="the model's sample rate (default: conf's)")
    p.add_argument("--max-duration", type=float, help="seconds (default: conf's data.max_duration)")
    p.add_argument("--data", help="a conf/data preset whose settings apply (default: conf's)")
    p.add_argument("--model", help="a conf/model preset whose stride applies (default: conf's)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="reading processes")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from asr.config import compose_train_config  # Hydra stays out of library imports

    flags = {
        "data": args.data,
        "model": args.model,
        "data.language": args.language,
        "data.alphabet": args.alphabet,
        "model.stride": args.stride,
        "data.sample_rate": args.sample_rate,
        "data.max_duration": args.max_duration,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    try:
        cfg = compose_train_config(overrides)
        from asr.text import make_vocabulary

        vocab = make_vocabulary(cfg.data.alphabet)
        report = ProblemReport()
        d = cfg.data
        frames = CtcFrames(d.sample_rate, d.hop_length, cfg.model.stride)
        utts = open_table(
            args.manifest,
            TextRules(vocab, d.language, d.max_duration),
            output_frames=frames,
            cache_dir=Path(d.cache_dir).expanduser(),
            report=report,
            log=lambda _: None,
        )
    except (ConfigError, ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    keep: dict[int, float] = {}
    for result in check_audio(utts, d.sample_rate, frames, args.jobs):
        utt = utts[result.index]
        if result.problem is not None:
            report.add(result.problem[0], utt.utt_id, result.problem[1])
            continue
        for kind, detail in result.notes:
            report.add(kind, utt.utt_id, detail)
        keep[utts.line(result.index)] = result.seconds

    n_bad = report.n_skipped
    alphabet = d.alphabet or f"the seed alphabet ({d.language})"
    n_lines = utts.entries
    print(
        f"{args.manifest}: {n_lines} entries, {len(keep)} usable, {n_bad} unusable; "
        f"checked against {alphabet}, "
        f"{d.sample_rate} Hz, max {d.max_duration:g} s, stride {cfg.model.stride}"
    )
    for line in report.table():
        print(line)
    if args.fix:
        n = write_fixed(args.manifest.resolve(), keep, args.fix)
        print(f"wrote {n} usable entries to {args.fix} (durations measured from the files)")
    return 1 if n_bad else 0
