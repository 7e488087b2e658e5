"""The acoustic model's log-probs over a manifest, computed once and cached.

Tuning a decoder is a sweep over its settings with the acoustic model fixed. Each job needs
the same log-probs, so they are cached on disk, keyed by what determines them: the checkpoint's
bytes, the manifest's bytes, the feature settings and the runtime. A 50-point grid then runs
the model once and spends the rest of its time decoding. Parallel jobs that miss together wait
on a file lock while the first computes.

A cache folder can be shared between users, so a cached file holds tensors and plain values
only and is read with torch's weights-only unpickler: a file that needs more is not trusted,
only recomputed over (with a warning naming it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from asr.data.dataset import Batch, Utterance
from asr.disk import write_atomic
from asr.errors import first_line

FORMAT = 2  # bump when the cached layout changes (2: utterances as plain values)


@dataclass
class Emissions:
    utts: list[Utterance] = field(default_factory=list)
    log_probs: list[torch.Tensor] = field(default_factory=list)  # (T_i, C) real frames only
    audio_seconds: float = 0.0
    forward_seconds: float = 0.0  # wall time of audio loading, features and the model
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        """Tensors and plain values only, which the weights-only unpickler reads back."""
        utts = [dataclasses.asdict(u) for u in self.utts]
        return {**self.__dict__, "utts": utts}

    @classmethod
    def from_plain(cls, state: dict[str, Any]) -> Emissions:
        utts = [Utterance(**u) for u in state["utts"]]
        problems = [tuple(p) for p in state["problems"]]
        return cls(**{**state, "utts": utts, "problems": problems})


@torch.inference_mode()
def compute_emissions(
    model: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    loader: Iterable[Batch],
    device: torch.device,
) -> Emissions:
    """Run `model` (a DeepSpeech2, or an exported model) over every batch of `loader`."""
    out = Emissions()
    start = time.perf_counter()
    for batch in loader:
        out.problems += batch.problems
        if len(batch) == 0:
            continue
        feats = batch.feats.to(device, non_blocking=True)  # (B, F, T)
        log_probs, out_lens = model(feats, batch.feat_lens)  # (B, T', C), (B,)
        log_probs = log_probs.float().cpu()
        for row, n in zip(log_probs, out_lens.tolist(), strict=True):
            out.log_probs.append(row[:n].clone())  # (T_i, C): padding frames dropped
        out.utts += batch.utts
        out.audio_seconds += batch.audio_seconds
    out.forward_seconds = time.perf_counter() - start
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def emission_key(*, ckpt: Path, manifest: Path, features: dict[str, Any], runtime: str) -> str:
    """What the log-probs depend on, as one hash (manifest by content: audio files named in
    it are assumed unchanged)."""
    parts = {
        "format": FORMAT,
        "ckpt": file_digest(ckpt),
        "manifest": file_digest(manifest),
        "features": features,
        "runtime": runtime,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s `.lock` sibling (other processes wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_cached(path: Path) -> Emissions | None:
    """The emissions cached in `path`, or None (with a warning, and the file deleted so that
    it is recomputed over) for a torn or foreign file, or one that would need code to load."""
    try:
        return Emissions.from_plain(torch.load(path, weights_only=True))
    except pickle.UnpicklingError:
        reason = "it needs more than tensors and plain values to load"
    except Exception as e:
        reason = first_line(e)
    print(f"warning: ignoring the cached log-probs {path} ({reason}); recomputing")
    path.unlink(missing_ok=True)
    return None


def cached_emissions(
    key: str, cache_dir: Path | None, compute: Callable[[], Emissions]
) -> tuple[Emissions, bool]:
    """(emissions, True) from `cache_dir/<key>.pt` when there, else computed and stored
    (False). `cache_dir` None: always computed, never stored."""
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / f"{key}.pt"
    with file_lock(path):
        cached = read_cached(path) if path.is_file() else None
        if cached is not None:
            return cached, True
        emissions = compute()
        buffer = io.BytesIO()
        torch.save(emissions.to_plain(), buffer)
        write_atomic(path, buffer.getbuffer())
        return emissions, False
