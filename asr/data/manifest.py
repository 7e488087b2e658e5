"""NeMo-style JSONL manifests: one `{"audio_filepath", "text", "duration"}` object per line.

Relative audio paths are resolved against the manifest's own directory, so a corpus folder can
move (or sit in a shared cache) without rewriting its manifests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


class ManifestError(ValueError):
    """A manifest that cannot be read at all; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    utt_id: str
    audio_path: Path
    text: str
    duration: float


def read_manifest(path: str | Path) -> list[Entry]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    entries: list[Entry] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                audio = Path(row["audio_filepath"])
                text, duration = str(row["text"]), float(row["duration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ManifestError(f"{path}:{lineno}: bad manifest line ({e})") from None
            if not audio.is_absolute():
                audio = path.parent / audio
            utt_id = str(row.get("id") or row.get("utt_id") or audio.stem)
            entries.append(Entry(utt_id, audio, text, duration))
    return entries


def manifest_digest(paths: list[str | Path]) -> str:
    """A short content hash of manifests, recorded in checkpoints for provenance."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]
