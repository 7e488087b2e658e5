"""From utterances to batches: features, duration buckets, padding.

Data flow: manifest -> `asr.data.table` (normalize text, drop what cannot train, count why;
columns that every process maps) -> `SpeechDataset` (audio -> log-mel [-> SpecAugment], in
DataLoader workers) -> `BucketBatchSampler` (similar durations share a batch) -> `collate`
(pad; lengths travel with tensors). An utterance whose audio turns out unusable at load time
is skipped, and a repaired one (resampled, mixed down, misdeclared duration) noted, in its
batch's `problems`: never a crash. The checks themselves live in `asr.data.checks`, shared
with `python -m asr.data check`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.data.audio import AudioError
from asr.data.checks import ctc_feasible, load_checked
from asr.data.table import Utterance
from asr.features import LogMel, SpecAugment

if TYPE_CHECKING:
    from asr.augment import Plan, WaveAugment
    from asr.data.checks import Loaded as LoadedAudio


class FeatureCache:
    """Log-mel features kept in memory, up to `budget_bytes` in all, first come first kept.

    One cache serves every split's dataset in a process (`data.feature_cache_mb` is the budget
    of one process). A DataLoader worker process gets its own copy, with the whole budget.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._entries: dict[object, object] = {}

    def get(self, key: object) -> object | None:
        return self._entries.get(key)

    def put(self, key: object, value: object, nbytes: int) -> None:
        if key not in self._entries and self.used_bytes + nbytes <= self.budget_bytes:
            self._entries[key] = value
            self.used_bytes += nbytes


@dataclass
class Item:
    index: int
    feats: torch.Tensor | None  # (F, T); None when the audio was unusable
    # (kind, detail) found on load: the one unusable kind when feats is None, else repairs
    problems: tuple[tuple[str, str], ...] = ()
    seconds: float | None = None  # the audio as played: its duration over its speed factor


class SpeechDataset(Dataset):
    """Audio -> normalized log-mel (F, T), with SpecAugment when `augment` is given.

    SpecAugment's masks are a pure function of (seed, epoch, utterance index), never of a
    process's global RNG: which worker loads an utterance, and when the DataLoader iterator was
    created, then cannot change them, so a run resumed mid-epoch sees the same masks as one
    that never stopped. Call `set_epoch` before creating each epoch's iterator; the epoch lives
    in shared memory, so persistent DataLoader workers see it too.

    With a `cache`, each process keeps the log-mel it computed (before the masks, in float16)
    within the cache's budget, so later epochs skip reading and transforming the audio.
    Features always pass through float16 when caching is on, computed or cached alike, so an
    utterance's features do not depend on whether this process has seen it before (a resumed
    run starts with an empty cache).
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        logmel: LogMel,
        augment: SpecAugment | None,
        seed: int = 0,
        output_frames: Callable[[float], int] | None = None,
        cache: FeatureCache | None = None,
        wave_augment: WaveAugment | None = None,
    ):
        self.utts = utts  # a list, or an UtteranceTable: indexed, never copied
        self.logmel = logmel
        self.augment = augment
        self.wave_augment = wave_augment
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()
        self.output_frames = output_frames  # seconds -> CTC frames, to recheck label lengths
        self.cache = cache
        self._key = object()  # this dataset's entries in a cache it shares with other splits

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def augment_generator(self, index: int) -> torch.Generator:
        """The RNG for one utterance's masks in the current epoch."""
        seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.utts)

    def speed_of(self, epoch: int, index: int) -> float:
        """The utterance's speed factor in `epoch`: the drawn one, unless its transcript would
        not fit the frames of the perturbed (shorter) audio; then 1.0. The batch sampler
        buckets by `duration / speed_of(...)`."""
        if self.wave_augment is None:
            return 1.0
        factor = self.wave_augment.speed_factor(epoch, index)
        utt = self.utts[index]
        fits = self.output_frames is None or ctc_feasible(
            utt.labels, self.output_frames(utt.duration / factor)
        )
        return factor if fits else 1.0

    def _load(self, index: int) -> LoadedAudio | Item:
        utt = self.utts[index]
        try:  # the audio checks of `asr.data.checks`: unusable -> skipped, repairable -> noted
            return load_checked(
                utt.audio_path, self.logmel.sample_rate, utt.duration, utt.labels,
                self.output_frames,
            )  # fmt: skip
        except AudioError as e:
            return Item(index, None, ((e.reason, str(e)),))

    def _augmented(self, index: int, plan: Plan, g: torch.Generator) -> Item:
        """Log-mel of the waveform-augmented audio: computed every time, never cached."""
        loaded = self._load(index)
        if isinstance(loaded, Item):
            return loaded
        with torch.no_grad():
            feats = self.logmel(self.wave_augment.apply(loaded.wave, plan, g))  # (F, T')
        if self.cache is not None:  # the same float16 round trip as cached features
            feats = feats.half().float()
        return Item(index, feats, loaded.notes)

    def _features(self, index: int) -> Item:
        """Log-mel and load-time notes of one utterance, from the cache when it is there."""
        cached = self.cache.get((self._key, index)) if self.cache is not None else None
        if cached is not None:
            feats, notes = cached
            return Item(index, feats.float(), notes)
        loaded = self._load(index)
        if isinstance(loaded, Item):
            return loaded
        with torch.no_grad():
            feats = self.logmel(loaded.wave)  # (F, T)
        if self.cache is not None:
            half = feats.half()
            self.cache.put((self._key, index), (half, loaded.notes), half.nbytes)
            feats = half.float()
        return Item(index, feats, loaded.notes)

    def __getitem__(self, index: int) -> Item:
        speed = 1.0
        if self.wave_augment is not None:
            speed = self.speed_of(self.epoch, index)
            plan, g = self.wave_augment.plan(self.epoch, index, speed)
            item = self._features(index) if plan.empty else self._augmented(index, plan, g)
        else:
            item = self._features(index)
        item.seconds = self.utts[index].duration / speed
        if item.feats is not None and self.augment is not None:
            with torch.no_grad():
                item.feats = self.augment(item.feats, self.augment_generator(index))
        return item


@dataclass
class Batch:
    feats: torch.Tensor  # (B, F, T) zero-padded
    feat_lens: torch.Tensor  # (B,)
    targets: torch.Tensor  # (B, S) padded with 0
    target_lens: torch.Tensor  # (B,)
    utts: list[Utterance]
    # (utt_id, kind, detail) found at load time: the items dropped, and the repairs made
    problems: list[tuple[str, str, str]]
    # each utterance's audio as played (speed perturbation changes it); None: as in `utts`
    seconds: list[float] | None = None

    @property
    def audio_seconds(self) -> float:
        """The audio this batch trains on, in seconds: after speed perturbation, not before."""
        if self.seconds is not None:
            return sum(self.seconds)
        return sum(u.duration for u in self.utts)

    def __len__(self) -> int:
        return len(self.utts)

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader's pin_memory calls this), for non-blocking copies."""
        return dataclasses.replace(
            self,
            feats=self.feats.pin_memory(),
            feat_lens=self.feat_lens.pin_memory(),
            targets=self.targets.pin_memory(),
            target_lens=self.target_lens.pin_memory(),
        )


class Collate:
    """Pads a list of Items into a Batch (picklable, so DataLoader workers can run it)."""

    def __init__(self, utts: Sequence[Utterance]):
        self.utts = utts

    def __call__(self, items: list[Item]) -> Batch:
        good = [it for it in items if it.feats is not None]
        problems = [
            (self.utts[it.index].utt_id, kind, detail)
            for it in items
            for kind, detail in it.problems
        ]
        utts = [self.utts[it.index] for it in good]
        n_feats = good[0].feats.shape[0] if good else 0
        max_t = max((it.feats.shape[1] for it in good), default=0)
        max_s = max((len(u.labels) for u in utts), default=0)
        feats = torch.zeros(len(good), n_feats, max_t)
        targets = torch.zeros(len(good), max_s, dtype=torch.long)
        for i, (it, u) in enumerate(zip(good, utts, strict=True)):
            feats[i, :, : it.feats.shape[1]] = it.feats
            targets[i, : len(u.labels)] = torch.tensor(u.labels)
        feat_lens = torch.tensor([it.feats.shape[1] for it in good], dtype=torch.long)
        target_lens = torch.tensor([len(u.labels) for u in utts], dtype=torch.long)
        played = [
            u.duration if it.seconds is None else it.seconds
            for it, u in zip(good, utts, strict=True)
        ]
        return Batch(feats, feat_lens, targets, target_lens, utts, problems, played)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches drawn from duration buckets: `batch_size` utterances each, or, with
    `batch_seconds`, as many as fit in that much audio (at least one).

    Utterances are sorted by duration and cut into `num_buckets` equal-count buckets; each
    epoch shuffles within buckets, chunks them into batches, and shuffles the batches. So a
    batch pads little, yet the order differs every epoch. The order is a pure function of
    (seed, epoch), which lets a resumed run skip exactly the batches it already trained on.

    Under DDP each of `world_size` ranks takes every `world_size`-th batch of that same order,
    and the remainder is dropped, so the ranks see disjoint data and the same number of
    batches (none waits for a step the others never take).

    With `batch_seconds`, the greedy packing of a reshuffled bucket can give a different number
    of batches in each epoch; `batches(epoch)` is exact for any epoch.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_size: int,
        num_buckets: int = 10,
        seed: int = 0,
        *,
        shuffle: bool = True,
        batch_seconds: float | None = None,
        rank: int = 0,
        world_size: int = 1,
        speed: Callable[[int, int], float] | None = None,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world_size = rank, world_size
        self.durations = np.asarray(durations, dtype=np.float64)
        self.num_buckets = num_buckets
        self.speed = speed  # (epoch, index) -> speed factor: durations change every epoch
        self.buckets = self._bucketize(self.durations)
        self.epoch = 0
        self.start = 0  # batches of this epoch already consumed (mid-epoch resume)
        self._cache: tuple[int, Batches] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _bucketize(self, durations: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(durations, kind="stable")
        n_buckets = max(1, min(self.num_buckets, len(order) // max(self.batch_size, 1) or 1))
        return [b for b in np.array_split(order, n_buckets) if len(b)]

    def epoch_durations(self, epoch: int) -> np.ndarray:
        """Each utterance's duration as `epoch` plays it (speed perturbation shortens or
        lengthens it)."""
        if self.speed is None:
            return self.durations
        factors = [self.speed(epoch, i) for i in range(len(self.durations))]
        return self.durations / np.asarray(factors, dtype=np.float64)

    def _sizes(self, idx: np.ndarray, durations: np.ndarray) -> list[int]:
        """The sizes of the batches `idx` (one shuffled bucket) is cut into, in order."""
        if self.batch_seconds is None:
            full, rest = divmod(len(idx), self.batch_size)
            return [self.batch_size] * full + ([rest] if rest else [])
        sizes: list[int] = []
        size, seconds = 0, 0.0
        for d in durations[idx].tolist():
            if size and seconds + d > self.batch_seconds:
                sizes.append(size)
                size, seconds = 0, 0.0
            size += 1
            seconds += d
        return sizes + ([size] if size else [])

    def all_batches(self, epoch: int) -> Batches:
        """Every rank's batches of `epoch`, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        durations = self.epoch_durations(epoch)
        buckets = self.buckets if self.speed is None else self._bucketize(durations)
        order = [rng.permutation(b) if self.shuffle else b for b in buckets]
        sizes = [self._sizes(idx, durations) for idx in order]
        batches = Batches(
            np.concatenate(order) if order else np.empty(0, np.int64),
            np.asarray([n for s in sizes for n in s], np.int64),
        )
        return batches.select(rng.permutation(len(batches))) if self.shuffle else batches

    def batches(self, epoch: int) -> Batches:
        """This rank's batches of `epoch`."""
        if self._cache is None or self._cache[0] != epoch:
            every = self.all_batches(epoch)
            if self.world_size > 1:
                usable = len(every) - len(every) % self.world_size
                every = every.select(np.arange(self.rank, usable, self.world_size))
            self._cache = (epoch, every)
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        for i in range(self.start, len(batches)):
            yield batches[i]

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start


class Batches(Sequence[list[int]]):
    """An epoch's batches as two arrays, the utterance indices back to back and each batch's
    size, not a list per batch: a corpus of a million utterances keeps no Python object per
    utterance between epochs. `batches[i]` is a list of indices; comparing with a list of
    lists compares the batches."""

    def __init__(self, order: np.ndarray, sizes: np.ndarray):
        self.order, self.sizes = order, sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i):  # int -> list[int]; slice -> list[list[int]]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # negative indices, and IndexError
        return self.order[self.starts[i] : self.starts[i + 1]].tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(self[i] == list(b) for i, b in enumerate(other))

    __hash__ = None  # type: ignore[assignment]

    def select(self, which: np.ndarray) -> Batches:
        """The batches numbered `which`, in that order."""
        sizes = self.sizes[which]
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return Batches(self.order[np.repeat(self.starts[which], sizes) + within], sizes)
