"""One process: a whole epoch read by the training loader's workers, then everyone's memory.

python bench/scale_workers.py --manifest M --cache-dir C --workers 4 --out result.json
python bench/scale_workers.py --shards DIR --manifest M ...   # data=shards (M: its dev split)

Run by `bench/scale.py` in its own subprocess, so that the memory is this loader's alone. The
loader is the product's (`make_loader` over the utterance table, with SpecAugment), with the
feature cache off: a cache keeps features on purpose, and would hide what the workers copy.
Memory comes from /proc/<pid>/smaps_rollup:

- PSS, each shared page split between the processes that map it;
- USS (private pages), what a worker holds that no other process does: what it copied from the
  main process, and what it allocated itself.

The main process first builds the seed-size model and its AdamW state, as train.py's has when
its workers start (they are forked at the first batch, after the model). Its PSS is read
before the workers start, and the tree's PSS after the epoch; their difference is what the
workers add. Each worker's USS is read after its first batch and
again after the epoch: the growth between the two is what reading its share of rows cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from asr.data.loader import (  # noqa: E402
    ctc_frames_fn,
    load_splits,
    make_augment,
    make_loader,
    make_logmel,
)
from asr.data.shards import make_stream_loader  # noqa: E402
from asr.model import DeepSpeech2  # noqa: E402
from asr.schema import AugmentConfig, DataConfig, ModelConfig  # noqa: E402
from asr.text import Vocabulary  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    """PSS and USS of one process, in KiB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0])
    return {"pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def worker_pids(loader_iter) -> list[int]:
    return [w.pid for w in loader_iter._workers]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--shards", help="read the training set from these shards (data=shards)")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    d = DataConfig(
        corpus="shards" if a.shards else "manifest",
        train_manifest=None if a.shards else a.manifest,
        dev_manifest=a.manifest,
        shards_dir=a.shards,
        cache_dir=a.cache_dir,
        feature_cache_mb=0,
        batch_size=a.batch_size,
    )
    logmel = make_logmel(d)
    frames = ctc_frames_fn(logmel, DeepSpeech2(ModelConfig()).output_lengths)
    vocab = Vocabulary()
    splits = load_splits(d, vocab, frames, log=lambda _: None)
    table = splits.utts["train"]
    augment = make_augment(AugmentConfig())
    if a.shards:
        loader, epochs = make_stream_loader(
            table, d, logmel, augment=augment, vocab=vocab, output_frames=frames, seed=0,
            rank=0, world_size=1, num_workers=a.workers, pin_memory=False,
        )  # fmt: skip
        epochs.set_epoch(0)
    else:
        loader, _ = make_loader(
            table,
            logmel,
            batch_size=a.batch_size,
            augment=augment,
            shuffle=True,
            num_workers=a.workers,
            output_frames=frames,
        )
    model = DeepSpeech2(ModelConfig())  # the seed's size, as the trainer holds it
    optimizer = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # AdamW's moments exist from the first step on
    main_before = memory_kib(os.getpid())
    started = time.perf_counter()
    it = iter(loader)
    next(it)  # every worker has started (prefetching) and loaded at least one batch
    pids = worker_pids(it)
    first = [memory_kib(pid) for pid in pids]
    batches = 1 + sum(1 for _ in it)  # the rest of the epoch
    # Persistent workers stay alive after the epoch: their memory as it is now.
    last = [memory_kib(pid) for pid in pids]
    main_after = memory_kib(os.getpid())
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tree_after = main_after["pss"] + sum(m["pss"] for m in last)
    result = {
        "rows": len(table),
        "workers": a.workers,
        "batches": batches,
        "epoch_seconds": time.perf_counter() - started,
        "main_pss_before_mib": main_before["pss"] / 1024,
        "main_peak_rss_mib": peak_rss_mib,
        "main_pss_after_mib": main_after["pss"] / 1024,
        "tree_pss_after_mib": tree_after / 1024,
        "added_by_workers_mib": (tree_after - main_before["pss"]) / 1024,
        "worker_uss_first_batch_mib": [m["uss"] / 1024 for m in first],
        "worker_uss_after_epoch_mib": [m["uss"] / 1024 for m in last],
    }
    result["added_fraction"] = result["added_by_workers_mib"] / result["main_pss_before_mib"]
    result["uss_growth_in_epoch_mib"] = [
        b - f
        for f, b in zip(
            result["worker_uss_first_batch_mib"], result["worker_uss_after_epoch_mib"], strict=True
        )
    ]
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
