"""NeMo-style JSONL manifests: one `{"audio_filepath", "text", "duration"}` object per line.

Relative audio paths are resolved against the manifest's own directory, so a corpus folder can
move (or sit in a shared cache) without rewriting its manifests.
"""

from __future__ import annotations

import hashlib
import json
import math
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


def read_manifest(path: str | Path, report: ProblemReport | None = None) -> list[Entry]:
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


def manifest_digest(paths: list[str | Path]) -> str:
    """A short content hash of manifests, recorded in checkpoints for provenance."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]
