"""`python -m asr.data shard --manifest M --out DIR --shard-size N`: tar shards for streaming.

A corpus past one disk, or past what a file system serves one file at a time, trains from
shards (`data=shards`): tar files of whole utterances read front to back, as WebDataset, NeMo's
tarred datasets and lhotse's Shar do. Each utterance is one WebDataset sample, three members
under one key (its number in the corpus, `%09d`):

    <key>.<ext>    the audio file's bytes as they were (.flac, .wav, .mp3, .opus, ...)
    <key>.json     {"id", "text" (normalized), "duration", "source" (the original path)}

The format is WebDataset's, written by its `TarWriter`, so its tools read these shards too.
Beside the tars, the index that lets training plan an epoch without opening one:

    index.json       the shards (file, utterances, seconds), the text rules, the source
    durations.npy    float64, every utterance's duration, in key order
    offsets.npy      int64, where each utterance's first member starts in its tar

The manifest is read through the utterance table (`asr.data.table`): the same checks and
drops as training, with the text rules given here, reported by kind; only usable utterances
are written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

from asr.data.checks import ProblemReport
from asr.data.manifest import ManifestError
from asr.data.shard_plan import ShardError
from asr.data.table import TextRules, UtteranceTable, open_table
from asr.disk import DiskFullError, space_for

SHARDS_VERSION = "1"


def _write_shard(path: Path, table: UtteranceTable, rows: range) -> list[int]:
    """The rows' samples into one tar; returns where each sample's first member starts."""
    from webdataset import TarWriter

    with open(path, "wb") as f, TarWriter(f, encoder=False, mtime=0) as tar:
        for i in rows:
            utt = table[i]
            ext = os.path.splitext(utt.audio_path)[1].lstrip(".").lower() or "audio"
            meta = {"id": utt.utt_id, "text": utt.text, "duration": utt.duration,
                    "source": utt.audio_path}  # fmt: skip
            with open(utt.audio_path, "rb") as audio:
                tar.write({"__key__": f"{i:09d}", ext: audio.read(),
                           "json": json.dumps(meta, ensure_ascii=False).encode()})  # fmt: skip
    # The writer streams in records, so where a sample starts is read back from the headers.
    offsets, last = [], None
    with tarfile.open(path) as tar:
        for member in tar:
            key = member.name.split(".", 1)[0]
            if key != last:
                offsets.append(member.offset)
                last = key
    if len(offsets) != len(rows):
        raise ShardError(f"{path}: wrote {len(rows)} utterances, found {len(offsets)}")
    return offsets


def write_shards(
    table: UtteranceTable, out: Path, *, shard_size: int, rules: TextRules, source: str, log=print
) -> dict:
    """Every utterance of `table` into tars of `shard_size` under `out` (a new folder), with the
    index. Written beside `out` and renamed into place: a crash leaves no half a corpus."""
    if out.exists() and any(out.iterdir()):
        raise ShardError(f"{out} exists and is not empty: choose a new --out")
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, shards, offsets = len(table), [], []
    started = time.perf_counter()
    try:
        for k, start in enumerate(range(0, n, shard_size)):
            rows = range(start, min(start + shard_size, n))
            name = f"shard-{k:06d}.tar"
            size = sum(os.path.getsize(table.audio_path(i)) for i in rows)
            with space_for(tmp / name, size):
                offsets += _write_shard(tmp / name, table, rows)
            seconds = float(table.durations[rows.start : rows.stop].sum())
            shards.append({"file": name, "utterances": len(rows), "seconds": seconds})
            log(f"  {name}: {len(rows)} utterances, {seconds / 3600:.2f} h")
        np.save(tmp / "durations.npy", np.asarray(table.durations, np.float64))
        np.save(tmp / "offsets.npy", np.asarray(offsets, np.int64))
        index = {
            "version": SHARDS_VERSION,
            "source": source,
            "rules": {
                "symbols": list(rules.vocab.symbols),
                "language": rules.language,
                "max_duration": rules.max_duration,
            },
            "utterances": n,
            "seconds": float(np.sum(table.durations)),
            "shards": shards,
        }
        (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {len(shards)} shards, {n} utterances, {index['seconds'] / 3600:.2f} h, to {out} "
        f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    return index


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m asr.data shard",
        description="Write a manifest's usable utterances as tar shards for data=shards.",
    )
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="a new folder for the shards")
    p.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    p.add_argument("--language", help="es | en (default: conf's data.language)")
    p.add_argument("--alphabet", help="a custom alphabet file (default: conf's data.alphabet)")
    p.add_argument("--max-duration", type=float, help="seconds (default: conf's)")
    p.add_argument("--data", help="a conf/data preset whose settings apply (default: conf's)")
    p.add_argument("--model", help="a conf/model preset whose stride applies (default: conf's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from asr.config import compose_train_config  # Hydra stays out of library imports
    from asr.data.check import CtcFrames
    from asr.schema import ConfigError
    from asr.text import make_vocabulary

    flags = {"data": args.data, "model": args.model, "data.language": args.language,
             "data.alphabet": args.alphabet, "data.max_duration": args.max_duration}  # fmt: skip
    try:
        if args.shard_size < 1:
            raise ShardError(f"--shard-size must be >= 1 (got {args.shard_size})")
        cfg = compose_train_config([f"{k}={v}" for k, v in flags.items() if v is not None])
        d = cfg.data
        rules = TextRules(make_vocabulary(d.alphabet), d.language, d.max_duration)
        report = ProblemReport()
        table = open_table(
            args.manifest.resolve(),
            rules,
            output_frames=CtcFrames(d.sample_rate, d.hop_length, cfg.model.stride),
            cache_dir=Path(d.cache_dir).expanduser(),
            report=report,
            log=lambda _: None,
        )
        print(f"{args.manifest}: {len(table)} usable utterances; skipped: {report.summary()}")
        write_shards(
            table,
            args.out.resolve(),
            shard_size=args.shard_size,
            rules=rules,
            source=str(args.manifest.resolve()),
        )
    except DiskFullError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, ManifestError, ShardError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
