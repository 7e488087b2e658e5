"""`data=shards`: training streamed from tar shards (`python -m asr.data shard`), each read
front to back, with batches that are a pure function of (seed, epoch) and an exact resume.

Why not WebDataset's pipeline: the shards are WebDataset's format (written by its TarWriter,
read by its tar iterator), but its pipeline draws batches as the data arrives, so which batch
comes k-th depends on timing and worker count, and a resumed run can only start an epoch
again. Here an epoch is planned first, from the index alone (durations; no tar is opened):

- the shards are shuffled per epoch and dealt to the R = ranks x streams readers (a stream is
  one DataLoader worker, or the main process without workers): reader g takes every R-th;
- each reader passes its shards' utterances through a shuffle buffer into duration buckets,
  and a bucket that fills becomes a batch (lhotse's dynamic bucketing, with the buffer's draws
  from `default_rng([seed, epoch, g])`);
- every reader keeps as many batches as the shortest one has, so every rank takes the same
  number of steps; global batch j is reader (rank, j % streams)'s batch j // streams, which is
  the order in which a DataLoader returns its workers' batches.

A reader then streams its shards, keeps the utterances its next batches need, and yields each
batch once the last of them has been read. Resumed at batch k, each worker computes the same
plan, and starts reading at the shard and offset of the first utterance still needed: a few
shards' worth of the buffer at most, never the epoch from the start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from asr.data.audio import AudioError, read_audio_bytes
from asr.data.checks import check_loaded
from asr.data.dataset import Batch, Batches, Collate, Item
from asr.data.shard_plan import (
    ShardError,
    ShardIndex,
    StreamSpec,
    epoch_length,
    plan_reader,
    reader_shards,
)
from asr.data.table import Utterance
from asr.data.workers import worker_options
from asr.features import LogMel, SpecAugment
from asr.schema import ConfigError, DataConfig
from asr.text import Vocabulary

_say = functools.partial(print, flush=True)  # a worker's line, out before the worker ends


class ShardStream(IterableDataset):
    """The training batches of one rank, read from its readers' shards (see the module doc).
    Yields collated Batches; `set_epoch`/`set_position` reach persistent workers through
    shared memory, as SpeechDataset's epoch does."""

    def __init__(
        self,
        index: ShardIndex,
        spec: StreamSpec,
        *,
        rank: int,
        logmel: LogMel,
        augment: SpecAugment | None,
        vocab: Vocabulary,
        output_frames: Callable[[float], int],
        log: Callable[[str], None] = _say,
    ):
        self.index, self.spec, self.rank = index, spec, rank
        self.logmel, self.augment, self.vocab = logmel, augment, vocab
        self.output_frames, self.log = output_frames, log
        # (epoch, first batch, batches per reader), shared with the workers
        self._state = torch.zeros(3, dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        self._state[0] = epoch

    def set_position(self, epoch: int, start: int, length: int) -> None:
        self._state[0], self._state[1], self._state[2] = epoch, start, length

    def __len__(self) -> int:
        """This rank's batches still to come in the epoch (for progress bars)."""
        _, start, length = (int(x) for x in self._state)
        return max(self.spec.streams * length - start, 0)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != self.spec.streams:
            raise ShardError(f"planned for {self.spec.streams} streams, read by {workers}")
        epoch, start, length = (int(x) for x in self._state)
        stream = (worker + start) % workers
        first = (start + worker) // workers  # this worker's first batch of its stream's plan
        reader = self.rank * workers + stream
        plan = plan_reader(self.index, self.spec, epoch, reader)
        if first >= length:
            return
        batches = Batches(plan.order[: plan.starts[length]], plan.sizes[:length])
        yield from self._read(batches, first, epoch, reader)

    def _read(self, plan: Batches, first: int, epoch: int, reader: int) -> Iterator[Batch]:
        """Stream the reader's shards from the first utterance still needed; yield each batch
        when its last utterance has been read."""
        from webdataset.tariterators import group_by_keys, tar_file_iterator

        wanted = set(plan.order[plan.starts[first] :].tolist())
        shards = reader_shards(self.index, self.spec, epoch)[reader]
        pending: dict[int, dict] = {}
        b, said = first, first == 0
        for s in shards.tolist():
            lo, hi = int(self.index.starts[s]), int(self.index.starts[s] + self.index.counts[s])
            here = [u for u in range(lo, hi) if u in wanted]
            if not here:
                continue
            if not said:
                self.log(f"stream {reader}: resumed at {self.index.files[s]}, utterance "
                         f"{here[0] - lo} of {hi - lo} (batch {first} of {len(plan)})")  # fmt: skip
                said = True
            path = self.index.folder / self.index.files[s]
            with open(path, "rb") as f:
                f.seek(int(self.index.offsets[here[0]]))
                members = ({**m, "__url__": str(path)} for m in tar_file_iterator(f))
                for sample in group_by_keys(members):
                    uid = int(sample["__key__"])
                    if uid in wanted:
                        pending[uid] = sample
                    while b < len(plan) and all(u in pending for u in plan[b]):
                        yield self._batch([pending.pop(u) for u in plan[b]], plan[b], epoch)
                        b += 1
                    if uid >= here[-1]:
                        break  # the rest of this shard is not needed
        if b < len(plan):
            raise ShardError(f"stream {reader}: the shards ended before batch {b} of {len(plan)}")

    def _batch(self, samples: list[dict], uids: list[int], epoch: int) -> Batch:
        utts: dict[int, Utterance] = {}
        items = []
        for uid, sample in zip(uids, samples, strict=True):
            item, utts[uid] = self._item(uid, sample, epoch)
            items.append(item)
        return Collate(utts)(items)

    def _item(self, uid: int, sample: dict, epoch: int) -> tuple[Item, Utterance]:
        meta = json.loads(sample["json"])
        ext = next(k for k in sample if not k.startswith("__") and k != "json")
        duration = float(self.index.durations[uid])
        try:
            labels = tuple(self.vocab.encode(meta["text"]))
        except ValueError as e:
            utt = Utterance(meta["id"], meta["source"], meta["text"], (), duration)
            return Item(uid, None, (("chars_outside_alphabet", str(e)),)), utt
        utt = Utterance(meta["id"], meta["source"], meta["text"], labels, duration)
        try:
            audio = read_audio_bytes(
                sample[ext], self.logmel.sample_rate, name=meta["source"], ext=ext
            )
            loaded = check_loaded(
                audio, meta["source"], self.logmel.sample_rate, duration, labels, self.output_frames
            )
        except AudioError as e:
            return Item(uid, None, ((e.reason, str(e)),)), utt
        with torch.no_grad():
            feats = self.logmel(loaded.wave)  # (F, T)
            if self.augment is not None:
                seed = np.random.SeedSequence([self.spec.seed, epoch, uid]).generate_state(1)[0]
                feats = self.augment(feats, torch.Generator().manual_seed(int(seed)))
        return Item(uid, feats, loaded.notes, duration), utt


class ShardEpochs:
    """The training loop's view of the plan (what BucketBatchSampler is for a table): how many
    batches an epoch has on this rank, and where the next iteration starts."""

    def __init__(self, stream: ShardStream):
        self.stream = stream
        self.start = 0  # batches of the epoch already trained on
        self._lengths: dict[int, int] = {}

    def length(self, epoch: int) -> int:
        if epoch not in self._lengths:
            self._lengths = {epoch: epoch_length(self.stream.index, self.stream.spec, epoch)}
        return self._lengths[epoch]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.stream.set_position(epoch, start, self.length(epoch))
        self.start = start

    def batches(self, epoch: int) -> range:
        return range(self.stream.spec.streams * self.length(epoch))

    def __len__(self) -> int:
        return len(self.batches(self.stream.epoch)) - self.start


def make_stream_loader(
    index: ShardIndex,
    d: DataConfig,
    logmel: LogMel,
    *,
    augment: SpecAugment | None,
    vocab: Vocabulary,
    output_frames: Callable[[float], int],
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int,
    pin_memory: bool,
) -> tuple[DataLoader, ShardEpochs]:
    """data=shards: this rank's training batches, streamed from its shards (each worker one
    stream of `asr.data.shards`, collating its own batches)."""
    spec = StreamSpec(
        seed=seed,
        batch_size=d.batch_size,
        batch_seconds=d.batch_seconds,
        buffer=d.shuffle_buffer,
        num_buckets=d.num_buckets,
        max_duration=d.max_duration,
        world_size=world_size,
        streams=max(num_workers, 1),
    )
    if len(index.files) < spec.readers:
        raise ConfigError(
            f"data.shards_dir holds {len(index.files)} shards for {spec.readers} streams "
            f"({world_size} ranks x {spec.streams}): each stream reads its own shards; write "
            "smaller shards (--shard-size) or use fewer data.num_workers"
        )
    stream = ShardStream(
        index, spec, rank=rank, logmel=logmel, augment=augment, vocab=vocab,
        output_frames=output_frames,
    )  # fmt: skip
    loader = DataLoader(
        stream, batch_size=None, **worker_options(num_workers, pin_memory=pin_memory, seed=seed)
    )
    return loader, ShardEpochs(stream)
