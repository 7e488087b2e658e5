"""An epoch of shards planned from their index alone: which shards each stream reads, and
the batches it makes of them (see `asr.data.shards` for the why and the reading).

- the shards are shuffled per epoch and dealt to the R = ranks x streams readers: reader g
  takes every R-th;
- each reader passes its shards' utterances through a shuffle buffer into duration buckets,
  and a bucket that fills becomes a batch (lhotse's dynamic bucketing, with the buffer's draws
  from `default_rng([seed, epoch, g])`);
- every reader keeps as many batches as the shortest one has (`epoch_length`), so every rank
  takes the same number of steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.dataset import Batches
from asr.text import Vocabulary


class ShardError(ValueError):
    """A shard folder that cannot be read, or does not fit the run; the message names it."""


class ShardIndex:
    """What `python -m asr.data shard` wrote beside the tars: per utterance its duration and
    where it starts in its tar (memory-mapped), per shard its file and count."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        try:
            self.meta = json.loads((self.folder / "index.json").read_text())
            self.durations = np.load(self.folder / "durations.npy", mmap_mode="r")
            self.offsets = np.load(self.folder / "offsets.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise ShardError(f"data.shards_dir: not a shard folder ({e})") from None
        self.files = [s["file"] for s in self.meta["shards"]]
        self.counts = np.asarray([s["utterances"] for s in self.meta["shards"]], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.edges: dict[int, np.ndarray] = {}  # num_buckets -> duration bounds (bucket_edges)
        if int(self.counts.sum()) != len(self.durations):
            raise ShardError(f"{self.folder}: index.json and durations.npy disagree")

    def __len__(self) -> int:
        return len(self.durations)

    def check_rules(self, vocab: Vocabulary, language: str) -> None:
        """The shards' transcripts were normalized with one alphabet and language: the run's."""
        rules = self.meta["rules"]
        if tuple(rules["symbols"]) != vocab.symbols or rules["language"] != language:
            raise ShardError(
                f"{self.folder} was written for language {rules['language']} and "
                f"{len(rules['symbols'])} symbols; the run has {language} and "
                f"{len(vocab.symbols)}: shard the manifest again with this run's data settings"
            )


@dataclass(frozen=True)
class StreamSpec:
    """How an epoch of shards is cut into batches (from the data config and the run)."""

    seed: int
    batch_size: int
    batch_seconds: float | None
    buffer: int  # utterances in each reader's shuffle buffer
    num_buckets: int
    max_duration: float
    world_size: int
    streams: int  # readers per rank: its DataLoader workers, or 1 without

    @property
    def readers(self) -> int:
        return self.world_size * self.streams


def reader_shards(index: ShardIndex, spec: StreamSpec, epoch: int) -> list[np.ndarray]:
    """Each reader's shards in `epoch`, in reading order."""
    order = np.random.default_rng([spec.seed, epoch]).permutation(len(index.files))
    return [order[g :: spec.readers] for g in range(spec.readers)]


def bucket_edges(index: ShardIndex, spec: StreamSpec) -> np.ndarray:
    """Duration bounds of equal-count buckets over the whole corpus (the same for all)."""
    if spec.num_buckets not in index.edges:
        qs = np.linspace(0, 1, spec.num_buckets + 1)[1:-1]
        durations = np.asarray(index.durations)
        index.edges[spec.num_buckets] = np.quantile(durations, qs) if len(index) else qs
    return index.edges[spec.num_buckets]


def plan_reader(index: ShardIndex, spec: StreamSpec, epoch: int, reader: int) -> Batches:
    """Reader `reader`'s batches of `epoch` (utterance numbers), planned from the index.

    Everything per utterance stays in arrays (positions in the reader's stream are what the
    buffer and the buckets hold): the memory is a few bytes per utterance, not an object."""
    shards = reader_shards(index, spec, epoch)[reader]
    uids = np.concatenate(
        [np.arange(index.starts[s], index.starts[s] + index.counts[s]) for s in shards] or [[]]
    ).astype(np.int64)
    durations = np.asarray(index.durations)[uids]
    kept = durations <= spec.max_duration
    uids, durations = uids[kept], durations[kept]
    rng = np.random.default_rng([spec.seed, epoch, reader])
    draws = rng.random(len(uids))
    bucket_of = np.searchsorted(bucket_edges(index, spec), durations, side="right")
    buckets: list[list[int]] = [[] for _ in range(spec.num_buckets)]
    filled = [0.0] * spec.num_buckets
    order = np.empty(len(uids), np.int64)  # the batches' positions, back to back
    sizes: list[int] = []
    done = 0

    def emit(b: int) -> None:
        nonlocal done
        order[done : done + len(buckets[b])] = buckets[b]
        done += len(buckets[b])
        sizes.append(len(buckets[b]))
        buckets[b], filled[b] = [], 0.0

    def put(p: int) -> None:
        b, d = int(bucket_of[p]), float(durations[p])
        if spec.batch_seconds is not None and buckets[b] and filled[b] + d > spec.batch_seconds:
            emit(b)
        buckets[b].append(p)
        filled[b] += d
        if spec.batch_seconds is None and len(buckets[b]) == spec.batch_size:
            emit(b)

    buffer: list[int] = []
    for p in range(len(uids)):
        buffer.append(p)
        if len(buffer) > spec.buffer:
            j = int(draws[p] * len(buffer))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            put(buffer.pop())
    for j in rng.permutation(len(buffer)).tolist():
        put(buffer[j])
    for b in range(spec.num_buckets):
        if buckets[b]:
            emit(b)
    return Batches(uids[order], np.asarray(sizes, np.int64))


def epoch_length(index: ShardIndex, spec: StreamSpec, epoch: int) -> int:
    """Batches per reader in `epoch`: the shortest reader's count, kept by all."""
    return min(len(plan_reader(index, spec, epoch, g)) for g in range(spec.readers))
