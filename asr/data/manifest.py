"""NeMo-style JSONL manifests: one `{"audio_filepath", "text", "duration"}` object per line.

Relative audio paths are resolved against the manifest's own directory, so a corpus folder can
move (or sit in a shared cache) without rewriting its manifests.
"""

from __future__ import annotations

import hashlib
import json
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


def parse_line(raw: bytes, folder: str) -> tuple[str, str, str, float] | None:
    """One manifest line -> (utt_id, audio path, text, duration), or None for a blank line.

    A relative audio path is joined to `folder` (the manifest's own). Raises BadLine.
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("non_utf8", str(e)) from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
        audio = row["audio_filepath"]
        if not isinstance(audio, str):
            kind = type(audio).__name__
            raise TypeError(f"expected str, bytes or os.PathLike object, not {kind}")
        text, duration = row["text"], float(row["duration"])
        if not isinstance(text, str) or not math.isfinite(duration) or duration < 0:
            raise ValueError("text must be a string, duration a finite number >= 0")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BadLine("bad_json", str(e)) from None
    path = _as_path_str(audio, folder)
    stem = os.path.splitext(os.path.basename(path))[0]
    return str(row.get("id") or row.get("utt_id") or stem), path, text, duration


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
            utt_id, audio, text, duration = parsed
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
