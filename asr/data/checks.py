"""What can be wrong with an utterance: every problem has one name, used everywhere.

`python -m asr.data check` runs all checks eagerly over a manifest. Training runs the same
checks lazily: line, file and text checks when a manifest is read into its utterance table
(`asr.data.table`), audio
checks when an utterance is loaded (`load_checked`, in the DataLoader workers). Either way an
unusable utterance is skipped and counted by kind in a `ProblemReport`, never a crash; a
repairable one (another sample rate, several channels, a wrong declared duration) is repaired
on load and counted too, so the user learns what the corpus holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from asr.data.audio import Audio, AudioError, read_audio


class Kind(NamedTuple):
    name: str
    usable: bool  # True: repaired on load and trained on; False: skipped
    description: str


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("non_utf8", False, "manifest line is not UTF-8"),
        Kind("bad_json", False, "malformed JSON line, or a field missing or of the wrong type"),
        Kind("duplicate_path", False, "audio file listed again (the first entry is kept)"),
        Kind("missing_file", False, "audio file not found"),
        Kind("unreadable_audio", False, "unreadable or corrupt audio file"),
        Kind("empty_audio", False, "audio of zero length"),
        Kind("nonfinite_audio", False, "NaN or inf samples"),
        Kind("empty_text", False, "empty or whitespace-only transcript"),
        Kind("chars_outside_alphabet", False, "transcript has characters outside the alphabet"),
        Kind("too_long_duration", False, "longer than data.max_duration"),
        Kind("too_long_for_ctc", False, "transcript needs more CTC frames than the model emits"),
        Kind("resampled", True, "another sample rate: resampled on load"),
        Kind("mixed_down", True, "several channels: mixed down to mono on load"),
        Kind("duration_mismatch", True, "declared duration disagrees with the file"),
    )
}


def duration_mismatch(declared: float, actual: float) -> bool:
    """Manifests round durations, so allow 0.1 s or 2%, whichever is larger."""
    return abs(declared - actual) > max(0.1, 0.02 * actual)


def min_ctc_frames(labels: tuple[int, ...] | list[int]) -> int:
    """CTC needs one frame per label plus a blank between each pair of repeated labels."""
    repeats = sum(1 for a, b in pairwise(labels) if a == b)
    return len(labels) + repeats


@dataclass
class ProblemReport:
    """Problems by kind: counts, the first few examples of each, and the characters outside the
    alphabet. An (utterance, kind) pair counts once, however many epochs meet it."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    dropped_chars: Counter[str] = field(default_factory=Counter)  # outside the alphabet
    max_examples: int = 5
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add(self, kind: str, utt_id: str, detail: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        if (kind, utt_id) in self._seen:
            return
        self._seen.add((kind, utt_id))
        self.counts[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < self.max_examples:
            examples.append(f"{utt_id} ({detail})" if detail else utt_id)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """`(kind, utt_id) in report`: already counted."""
        return key in self._seen

    def merge(self, found: Iterable[tuple[str, str, str]]) -> None:
        """Add problems found elsewhere (another DDP rank's shard) as (utt_id, kind, detail):
        each still counts once."""
        for utt_id, kind, detail in found:
            self.add(kind, utt_id, detail)

    @property
    def skipped(self) -> dict[str, int]:
        """Unusable utterances by kind (what training dropped)."""
        return {k: n for k, n in sorted(self.counts.items()) if not KINDS[k].usable}

    @property
    def repaired(self) -> dict[str, int]:
        """Usable utterances repaired on load, by kind."""
        return {k: n for k, n in sorted(self.counts.items()) if KINDS[k].usable}

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in self.skipped.items()]
        text = ", ".join(parts) if parts else "none"
        if self.repaired:
            text += "; repaired on load: " + ", ".join(f"{n} {k}" for k, n in self.repaired.items())
        return text

    def table(self) -> list[str]:
        """One line per kind: count, description, first examples (for the checker's output)."""
        lines = []
        for kind, n in sorted(self.counts.items(), key=lambda kv: (KINDS[kv[0]].usable, kv[0])):
            k = KINDS[kind]
            tag = "repaired" if k.usable else "UNUSABLE"
            shown = "; ".join(self.examples.get(kind, []))
            lines.append(f"  {tag:8} {kind:22} {n:6}  {k.description}. e.g. {shown}")
        if self.dropped_chars:
            chars = ", ".join(f"{c!r}: {n}" for c, n in self.dropped_chars.most_common(20))
            lines.append(f"  characters outside the alphabet: {chars}")
        return lines


def ctc_frames(seconds, *, sample_rate: int, hop_length: int, output_lengths: Callable):
    """Seconds of audio -> the CTC frames a model emits for them, without loading any audio:
    the log-mel's frames (center=True framing), then the model's `output_lengths`. An array of
    durations (a whole table's) gives an array of frame counts."""
    s = np.asarray(seconds, dtype=np.float64)
    samples = np.rint(np.atleast_1d(s) * sample_rate).astype(np.int64)
    out = output_lengths(torch.from_numpy(samples // hop_length + 1)).numpy()
    return int(out[0]) if s.ndim == 0 else out


def ctc_feasible(labels: tuple[int, ...], frames: int) -> bool:
    return frames >= min_ctc_frames(labels)


class Loaded(NamedTuple):
    wave: torch.Tensor  # (N,) float32 mono at the requested rate
    notes: tuple[tuple[str, str], ...]  # (kind, detail) of repairs made on load


def load_checked(
    path: str | Path,
    sample_rate: int,
    declared_duration: float,
    labels: tuple[int, ...],
    output_frames: Callable[[float], int] | None = None,
) -> Loaded:
    """Load an utterance's audio with every audio check. Raises AudioError(kind) if unusable.

    `output_frames(seconds)` is the model's CTC frame count: the label length is checked again
    against the real duration, since a declared duration can be wrong.
    """
    audio = read_audio(path, sample_rate)
    return check_loaded(audio, path, sample_rate, declared_duration, labels, output_frames)


def check_loaded(
    audio: Audio,
    name: str | Path,
    sample_rate: int,
    declared_duration: float,
    labels: tuple[int, ...],
    output_frames: Callable[[float], int] | None = None,
) -> Loaded:
    """The checks of `load_checked` on audio already read (`name` is what messages call it)."""
    notes = []
    if audio.source_rate != sample_rate:
        notes.append(("resampled", f"{audio.source_rate} Hz"))
    if audio.channels > 1:
        notes.append(("mixed_down", f"{audio.channels} channels"))
    if duration_mismatch(declared_duration, audio.source_seconds):
        notes.append(
            (
                "duration_mismatch",
                f"declared {declared_duration:.2f} s, file {audio.source_seconds:.2f} s",
            )
        )
    if output_frames is not None and not ctc_feasible(labels, output_frames(audio.source_seconds)):
        raise AudioError(
            "too_long_for_ctc",
            f"{name}: {len(labels)} labels do not fit {audio.source_seconds:.2f} s of audio",
        )
    return Loaded(audio.wave, tuple(notes))
