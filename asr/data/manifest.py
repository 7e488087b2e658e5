"""NeMo-style JSONL manifests: one `{"audio_filepath", "text", "duration"}` object per line.

Relative audio paths are resolved against the manifest's own directory, so a corpus folder can
move (or sit in a shared cache) without rewriting its manifests.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import math
import os
from dataclasses import dataclass
from pathlib import Path

from asr.data.checks import ProblemReport


class ManifestError(ValueError):
    """A manifest that cannot be read at all; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    utt_id: str
    audio_path: Path
    text: str
    duration: float  # as declared; the audio checks compare it with the file
    line: int = 0  # 1-based line in its manifest, for messages


class BadLine(ValueError):
    """One manifest line that is not an entry: `kind` is `non_utf8` or `bad_json`."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def _as_path_str(audio: str, folder: str) -> str:
    """`str(Path(folder) / audio)`, without building Paths in the common case (a million
    lines are read at start-up): the same string, so duplicates are found the same way."""
    joined = audio if audio.startswith("/") or not folder else f"{folder}/{audio}"
    odd = "//" in joined or "/./" in joined or joined.startswith("./")
    return str(Path(joined)) if odd or joined.endswith(("/", "/.")) else joined


_scan = json.scanner.make_scanner(json.JSONDecoder())  # what json.loads runs, without its wrapping


def _loads(line: str) -> object:
    """`json.loads(line)`, about twice as fast on a line that is one JSON value: the scanner
    is called directly. Anything else goes to json.loads, for the same verdict and message."""
    try:
        obj, end = _scan(line, 0)
        if not line[end:].strip(" \t\n\r"):  # json's whitespace, no other
            return obj
    except (StopIteration, ValueError, RecursionError):
        pass
    return json.loads(line)


def utt_id_of(explicit: str, path: str) -> str:
    """A row's id: its `id` (or `utt_id`) field, else its audio file's name without suffix."""
    return explicit or os.path.splitext(os.path.basename(path))[0]


def parse_line(raw: bytes, folder: str) -> tuple[str, str, str, float] | None:
    """One manifest line -> (explicit id or "", audio path, text, duration), or None for a
    blank line (`utt_id_of` gives the id: a million file names need not be split at start-up).

    A relative audio path is joined to `folder` (the manifest's own). Raises BadLine.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("non_utf8", str(e)) from None
    if not line.strip():
        return None
    try:
        row = _loads(line)
        audio = row["audio_filepath"]
        if not isinstance(audio, str):
            kind = type(audio).__name__
            raise TypeError(f"expected str, bytes or os.PathLike object, not {kind}")
        text, duration = row["text"], float(row["duration"])
        if not isinstance(text, str) or not math.isfinite(duration) or duration < 0:
            raise ValueError("text must be a string, duration a finite number >= 0")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BadLine("bad_json", str(e)) from None
    explicit = row.get("id") or row.get("utt_id")
    return (str(explicit) if explicit else ""), _as_path_str(audio, folder), text, duration


def read_manifest(path: str | Path, report: ProblemReport | None = None) -> list[Entry]:
    """Entries of a manifest, in order (for small manifests and text; training reads the
    utterance table, `asr.data.table`, built by the same `parse_line`).

    With a `report`, a line that is not UTF-8 or not a valid entry, and an audio file listed a
    second time, are skipped and counted there (kinds `non_utf8`, `bad_json`,
    `duplicate_path`); without one, a bad line raises ManifestError naming file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    entries: list[Entry] = []
    seen: set[str] = set()
    folder = str(path.parent)
    with path.open("rb") as f:  # bytes: one non-UTF-8 line must not hide the others
        for lineno, raw in enumerate(f, start=1):
            try:
                parsed = parse_line(raw, folder)
            except BadLine as e:
                if report is None:
                    what = "not UTF-8" if e.kind == "non_utf8" else "bad manifest line"
                    raise ManifestError(f"{path}:{lineno}: {what} ({e})") from None
                report.add(e.kind, f"{path.name}:{lineno}", "" if e.kind == "non_utf8" else str(e))
                continue
            if parsed is None:
                continue
            explicit, audio, text, duration = parsed
            utt_id = utt_id_of(explicit, audio)
            if report is not None and audio in seen:
                report.add("duplicate_path", utt_id, f"line {lineno}")
                continue
            seen.add(audio)
            entries.append(Entry(utt_id, Path(audio), text, duration, lineno))
    return entries


def manifest_digest(paths: list[str | Path]) -> str:
    """A short content hash of manifests, recorded in checkpoints for provenance."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]
