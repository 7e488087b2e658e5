"""The reader the utterance table replaced, kept as it was: the oracle the table is held to.

Before the table, a manifest was read line by line into `Entry` objects (`read_manifest`),
normalized character by character (`normalize`) and checked row by row (`prepare_utterances`),
giving a list of `Utterance` objects. This is that code, copied unchanged from the version
before the table (only gathered into one file, the one name clash resolved: `reference_`).
`tests/test_table.py` checks that the table keeps the same utterances, with the same labels,
and drops the same lines for the same reasons.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from asr.data.checks import ProblemReport, ctc_feasible
from asr.data.manifest import Entry, ManifestError
from asr.data.table import Utterance
from asr.text import LANGUAGES, Vocabulary


@dataclass
class Normalized:
    text: str
    dropped: Counter[str] = field(default_factory=Counter)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def reference_normalize(text: str, language: str, vocab: Vocabulary | None = None) -> Normalized:
    """Raw transcript -> text made only of `vocab` characters and single spaces."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {'|'.join(LANGUAGES)} (got {language!r})")
    vocab = vocab or Vocabulary()
    allowed = vocab.characters
    text = unicodedata.normalize("NFC", text).lower()
    if language == "es" and "ñ" not in allowed:
        text = text.replace("ñ", "ni")  # before accent stripping, which would make it "n"
    text = text.replace("’", "'").replace("`", "'")
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    for c in text:
        if c not in allowed and not c.isspace():
            base = _strip_accents(c)  # á -> a, unless the alphabet has á itself
            if base and all(b in allowed for b in base):
                kept.append(base)
                continue
        if c in allowed:
            kept.append(c)
        elif c.isspace() or c in "-_/":
            kept.append(" ")  # word separators
        elif unicodedata.category(c).startswith("P"):
            continue  # punctuation carries no sound: removed by rule, not counted
        else:
            dropped[c] += 1
    return Normalized(" ".join("".join(kept).split()), dropped)


def reference_read_manifest(path: str | Path, report: ProblemReport | None = None) -> list[Entry]:
    """Entries of a manifest, in order.

    With a `report`, a line that is not UTF-8 or not a valid entry, and an audio file listed a
    second time, are skipped and counted there (kinds `non_utf8`, `bad_json`,
    `duplicate_path`); without one, a bad line raises ManifestError naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    entries: list[Entry] = []
    seen: set[Path] = set()
    with path.open("rb") as f:  # bytes: one non-UTF-8 line must not hide the others
        for lineno, raw in enumerate(f, start=1):
            where = f"{path.name}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if report is None:
                    raise ManifestError(f"{path}:{lineno}: not UTF-8 ({e})") from None
                report.add("non_utf8", where)
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(row["audio_filepath"])
                text, duration = row["text"], float(row["duration"])
                if not isinstance(text, str) or not math.isfinite(duration) or duration < 0:
                    raise ValueError("text must be a string, duration a finite number >= 0")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                if report is None:
                    raise ManifestError(f"{path}:{lineno}: bad manifest line ({e})") from None
                report.add("bad_json", where, str(e))
                continue
            if not audio.is_absolute():
                audio = path.parent / audio
            utt_id = str(row.get("id") or row.get("utt_id") or audio.stem)
            if report is not None and audio in seen:
                report.add("duplicate_path", utt_id, f"line {lineno}")
                continue
            seen.add(audio)
            entries.append(Entry(utt_id, audio, text, duration, lineno))
    return entries


class TextCheck(NamedTuple):
    problem: str | None  # an unusable kind, or None
    text: str  # normalized
    labels: tuple[int, ...]
    dropped: Counter[str]  # characters outside the alphabet


def check_transcript(
    raw: str,
    duration: float,
    vocab: Vocabulary,
    language: str,
    max_duration: float,
    output_frames: Callable[[float], int],
) -> TextCheck:
    """The checks that need no audio: transcript, declared duration, CTC length."""
    norm = reference_normalize(raw, language, vocab)
    if norm.dropped:
        return TextCheck("chars_outside_alphabet", norm.text, (), norm.dropped)
    if not norm.text:
        return TextCheck("empty_text", "", (), norm.dropped)
    if duration > max_duration:
        return TextCheck("too_long_duration", norm.text, (), norm.dropped)
    labels = tuple(vocab.encode(norm.text))
    # A declared duration of 0 is what a manifest measured from an empty file holds: no
    # transcript fits it, but the problem is the audio. Leave the verdict to the audio checks
    # (`load_checked`), which report `empty_audio`, or redo the CTC check on the real duration.
    if duration > 0 and not ctc_feasible(labels, output_frames(duration)):
        return TextCheck("too_long_for_ctc", norm.text, labels, norm.dropped)
    return TextCheck(None, norm.text, labels, norm.dropped)


def reference_prepare_utterances(
    entries: Sequence[Entry],
    vocab: Vocabulary,
    language: str,
    max_duration: float,
    output_frames: Callable[[float], int],
    report: ProblemReport,
) -> list[Utterance]:
    """Keep the entries that can train; every one dropped is counted in `report` by kind.

    These are the checks that need no audio (see `asr.data.checks`); the audio checks run when
    an utterance is loaded. `output_frames(duration)` is the CTC frame count the model emits.
    """
    utts: list[Utterance] = []
    for e in entries:
        check = check_transcript(e.text, e.duration, vocab, language, max_duration, output_frames)
        report.dropped_chars.update(check.dropped)
        if check.problem is None and not e.audio_path.is_file():
            report.add("missing_file", e.utt_id, str(e.audio_path))
        elif check.problem is not None:
            detail = "".join(sorted(check.dropped)) if check.dropped else ""
            report.add(check.problem, e.utt_id, detail)
        else:
            utts.append(Utterance(e.utt_id, e.audio_path, check.text, check.labels, e.duration))
    return utts
