"""The loader at scale (`python bench/run.py --phases scale`): start-up, memory, decode speed.

1. start-up: `train.py` for one step on manifests of 10k, 100k and 1M rows, each row a unique
   hard link to one of the corpus's training files (a manifest lists a file once). Wall time
   to the end of the run and the main process's peak RSS, with the utterance table built
   (cold: the table cache emptied first) and cached; interleaved rounds, medians.
2. workers: 4 DataLoader workers read a whole epoch of short clips (`bench/scale_workers.py`,
   its own subprocess): the PSS they add to the main process's, and each one's private memory
   after its first batch and after the epoch.
3. shards: the same clips written as tar shards (`python -m asr.data shard`) at two corpus
   sizes, an epoch read by 4 workers through `data=shards`: the main process's peak RSS at
   each size (flat, if nothing grows with the corpus).
4. decode: each decode path's audio seconds per CPU second on one core, features included,
   and the workers one GPU needs at the anchor rate (`bench/decode_speed.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from bench.measure import Finished
from bench.sides import PYTHON, ROOT, Manifests, run_in_project


@dataclass(frozen=True)
class ScalePlan:
    sizes: tuple[int, ...]  # manifest rows for the start-up runs
    rounds: int  # interleaved rounds of start-up runs
    worker_rows: int  # short clips read by the workers in one epoch
    shard_sizes: tuple[int, int]  # clips in the smaller and the larger shard corpus
    decode_files: int
    decode_rounds: int


SCALE_PLANS = {
    "smoke": ScalePlan((500, 1_500), 1, 200, (200, 600), 2, 1),
    "quick": ScalePlan((10_000, 100_000), 1, 5_000, (2_000, 20_000), 5, 2),
    "full": ScalePlan((10_000, 100_000, 1_000_000), 3, 50_000, (10_000, 100_000), 20, 5),
}
CLIP_SECONDS = 0.4  # the workers' clips: short, so that an epoch of many rows stays minutes


def linked_manifest(source: Path, n: int, folder: Path, *, clips: list[Path] | None = None) -> Path:
    """A manifest of `n` rows, each a new hard link to one of `source`'s files (to one of
    `clips`, short cuts, with each row's first word as its text, when given)."""
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    out = folder / f"rows-{n}.jsonl"
    with out.open("w") as f:
        for i in range(n):
            r = rows[i % len(rows)]
            sub = audio / f"{i // 10_000:04d}"
            if i % 10_000 == 0:
                sub.mkdir(exist_ok=True)
            target = clips[i % len(clips)] if clips else source.parent / r["audio_filepath"]
            link = sub / f"{i:07d}{target.suffix}"
            if not link.exists():
                os.link(target, link)
            text = r["text"].split()[0] if clips else r["text"]
            duration = CLIP_SECONDS if clips else r["duration"]
            f.write(json.dumps({"audio_filepath": str(link), "text": text, "duration": duration}))
            f.write("\n")
    return out


def short_clips(source: Path, folder: Path, count: int = 64) -> list[Path]:
    """The first CLIP_SECONDS of the corpus's first `count` training files (several: a file
    system allows a file only so many hard links, ext4 65,000)."""
    rows = [json.loads(line) for line in source.read_text().splitlines()[:count]]
    clips = []
    for i, row in enumerate(rows):
        wave, sr = sf.read(str(source.parent / row["audio_filepath"]), dtype="float32")
        clips.append(folder / f"clip-{i}.flac")
        sf.write(clips[-1], wave[: int(CLIP_SECONDS * sr)], sr)
    return clips


def checked(run: Finished, what: str) -> Finished:
    if run.returncode != 0:
        tail = "\n".join(run.log.read_text().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {run.returncode}); log {run.log}:\n{tail}")
    return run


def one_step(m: Manifests, train: Path, cache: Path, out: Path) -> Finished:
    """train.py for one step of a tiny model on `train` (the small dev split evaluated once)."""
    cmd = [
        PYTHON,
        str(ROOT / "train.py"),
        "data=manifest",
        f"data.train_manifest={train}",
        f"data.dev_manifest={m.dev_tiny}",
        "data.test_manifest=null",
        f"data.cache_dir={cache}",
        "data.batch_size=4",
        "model=ds2_small",
        "model.rnn_dim=32",
        "model.n_rnn=1",
        "trainer.max_steps=1",
        "trainer.checkpoint_every_steps=null",
        "logger=none",
        f"hydra.run.dir={out}",
    ]
    return checked(run_in_project(cmd, out.with_suffix(".log")), f"train.py on {train}")


def startup(plan: ScalePlan, m: Manifests, work: Path, log: Callable[[str], None]) -> dict:
    """Wall time and peak RSS per size, table built and cached; interleaved, medians."""
    manifests = {n: linked_manifest(m.train, n, work / "rows") for n in plan.sizes}
    runs: dict[str, list[Finished]] = {}
    for r in range(plan.rounds):
        for n in plan.sizes if r % 2 == 0 else reversed(plan.sizes):
            for state in ("built", "cached"):
                cache = work / f"cache-{n}"
                if state == "built":
                    shutil.rmtree(cache / "tables", ignore_errors=True)
                run = one_step(m, manifests[n], cache, work / f"startup-{n}-{state}-{r}")
                runs.setdefault(f"{n} {state}", []).append(run)
                log(f"start-up {n} rows, table {state}: {run.seconds:.1f} s, "
                    f"peak RSS {run.peak_rss_mib:.0f} MiB")  # fmt: skip
    shutil.rmtree(work / "rows", ignore_errors=True)  # a million links
    return {
        key: {
            "seconds": statistics.median(x.seconds for x in rs),
            "peak_rss_mib": statistics.median(x.peak_rss_mib for x in rs),
            "runs": len(rs),
        }
        for key, rs in runs.items()
    }


def read_epoch(manifest: Path, work: Path, name: str, *extra: str) -> tuple[dict, Finished]:
    """bench/scale_workers.py in its own measured subprocess: its result, and its run."""
    out = work / f"{name}.json"
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "scale_workers.py"),
        f"--manifest={manifest}",
        f"--cache-dir={work / 'cache-workers'}",
        "--workers=4",
        f"--out={out}",
        *extra,
    ]
    run = checked(run_in_project(cmd, work / f"{name}.log"), "bench/scale_workers.py")
    return json.loads(out.read_text()), run


def workers(plan: ScalePlan, m: Manifests, work: Path, log: Callable[[str], None]) -> dict:
    folder = work / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = linked_manifest(
        m.train, plan.worker_rows, folder, clips=short_clips(m.train, folder)
    )
    result, _ = read_epoch(manifest, work, "workers")
    log(f"workers: {result['rows']} rows in {result['epoch_seconds']:.0f} s; the 4 workers add "
        f"{result['added_by_workers_mib']:.0f} MiB to the main process's "
        f"{result['main_pss_before_mib']:.0f} MiB PSS")  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    return result


def shards(plan: ScalePlan, m: Manifests, work: Path, log: Callable[[str], None]) -> dict:
    """Peak memory of an epoch read from shards, at two corpus sizes."""
    out = {}
    for n in plan.shard_sizes:
        folder = work / f"shards-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        manifest = linked_manifest(m.train, n, folder, clips=short_clips(m.train, folder))
        cmd = [PYTHON, "-m", "asr.data", "shard", f"--manifest={manifest}",
               f"--out={folder / 'shards'}", f"--shard-size={max(n // 40, 10)}"]  # fmt: skip
        checked(run_in_project(cmd, folder / "shard.log"), "python -m asr.data shard")
        shutil.rmtree(folder / "audio")  # the shards hold the audio now
        result, run = read_epoch(m.dev_tiny, folder, "read", f"--shards={folder / 'shards'}")
        out[str(n)] = {
            "utterances": result["rows"],
            "batches": result["batches"],
            "epoch_seconds": result["epoch_seconds"],
            "main_peak_rss_mib": run.peak_rss_mib,
            "tree_peak_pss_mib": run.peak_pss_mib,
        }
        log(f"shards: {n} clips read in {result['epoch_seconds']:.0f} s; main peak RSS "
            f"{run.peak_rss_mib:.0f} MiB, tree peak PSS {run.peak_pss_mib:.0f} MiB")  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    return out


def decode(plan: ScalePlan, work: Path, log: Callable[[str], None]) -> dict:
    from bench import decode_speed

    return decode_speed.measure(
        work / "decode", files=plan.decode_files, rounds=plan.decode_rounds, log=log
    )


def targets(result: dict) -> list[tuple[str, float | None, float, bool | None]]:
    """(what, measured, target, met) for the start-up and worker targets."""
    s, out = result.get("startup", {}), []
    small, big = min(int(k.split()[0]) for k in s), max(int(k.split()[0]) for k in s)
    for state, limit in (("built", 10.0), ("cached", 3.0)):
        extra = s[f"{big} {state}"]["seconds"] - s[f"{small} {state}"]["seconds"]
        out.append((f"{big} rows over {small}, table {state}: extra seconds", extra, limit,
                    extra <= limit))  # fmt: skip
    for state in ("built", "cached"):
        extra = s[f"{big} {state}"]["peak_rss_mib"] - s[f"{small} {state}"]["peak_rss_mib"]
        out.append((f"{big} rows over {small}, table {state}: extra peak RSS (MiB)", extra,
                    250.0, extra <= 250.0))  # fmt: skip
    if "workers" in result:
        frac = result["workers"]["added_fraction"]
        out.append(("4 workers after an epoch: PSS added / main's", frac, 0.10, frac <= 0.10))
    if "shards" in result:
        small, big = (result["shards"][str(n)]["main_peak_rss_mib"] for n in
                      result["plan"]["shard_sizes"])  # fmt: skip
        growth = big / small - 1
        out.append((f"data=shards: peak RSS at {result['plan']['shard_sizes'][1]:,} clips over "
                    f"{result['plan']['shard_sizes'][0]:,}, minus 1", growth, 0.10,
                    abs(growth) <= 0.10))  # fmt: skip
    return out


def scale(mode: str, m: Manifests, work: Path, log: Callable[[str], None] = print) -> dict:
    plan = SCALE_PLANS[mode]
    started = time.time()
    result: dict = {"plan": plan.__dict__}
    result["startup"] = startup(plan, m, work / "scale", log)
    result["workers"] = workers(plan, m, work / "scale", log)
    result["shards"] = shards(plan, m, work / "scale", log)
    result["decode"] = decode(plan, work / "scale", log)
    result["targets"] = targets(result)
    result["minutes"] = (time.time() - started) / 60
    return result


def table(result: dict) -> list[str]:
    """The scale phase as Markdown: start-up, workers, decode paths, targets."""
    lines = [
        "| manifest rows | table | wall time to the end (s) | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for key, v in result["startup"].items():
        n, state = key.split()
        lines.append(f"| {int(n):,} | {state} | {v['seconds']:.1f} | {v['peak_rss_mib']:.0f} |")
    w = result["workers"]
    first = ", ".join(f"{x:.0f}" for x in w["worker_uss_first_batch_mib"])
    grown = ", ".join(f"{x:.1f}" for x in w["uss_growth_in_epoch_mib"])
    lines += [
        "",
        f"4 workers, one epoch of {w['rows']:,} clips: the main process (holding the seed-size "
        f"model and its AdamW state) had a PSS of {w['main_pss_before_mib']:.0f} MiB before "
        f"the workers started; they add "
        f"{w['added_by_workers_mib']:.0f} MiB ({w['added_fraction']:.0%}). Each worker's private "
        f"memory after its first batch: {first} MiB; grown during the epoch by {grown} MiB.",
        "",
    ]
    lines += [
        "| data=shards: clips | batches | epoch (s) | main peak RSS (MiB) | tree peak PSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for n, v in result["shards"].items():
        lines.append(f"| {int(n):,} | {v['batches']} | {v['epoch_seconds']:.0f} | "
                     f"{v['main_peak_rss_mib']:.0f} | {v['tree_peak_pss_mib']:.0f} |")  # fmt: skip
    from bench import decode_speed

    lines += ["", *decode_speed.table(result["decode"])]
    lines += ["", "| target | measured | limit | met |", "|---|---|---|---|"]
    for what, measured, limit, met in result["targets"]:
        shown = "n/a" if measured is None else f"{measured:.2f}"
        lines.append(f"| {what} | {shown} | {limit:g} | {'yes' if met else 'NO'} |")
    return lines


if __name__ == "__main__":
    sys.exit("run it as: python bench/run.py --phases scale [--smoke|--quick]")
