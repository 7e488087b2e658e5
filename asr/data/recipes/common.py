"""What every recipe shares: reading durations from audio headers, counting what is skipped,
splitting by a stable hash, and writing manifests atomically.

A recipe never crashes on one bad file of a corpus of thousands: a file that is missing or whose
header cannot be read is skipped, counted by reason, and reported in one line with the first
examples, so the user sees at once whether it is one broken download or a wrong folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from asr.errors import first_line

SPLITS = ("train", "dev", "test")
EXAMPLES = 3  # file names shown per skip reason

Log = Callable[[str], None]


class RecipeError(ValueError):
    """The corpus cannot be prepared at all (wrong folder, missing table...): one line."""


@dataclass
class RecipeSpec:
    """How a recipe corpus (`data.corpus` in `asr.schema.RECIPES`) becomes train/dev/test
    manifests; the `data.recipe` group of the config schema (`asr.schema` re-exports it).

    The same options as `python -m asr.data prepare <recipe>`; a run prepares the manifests
    into `cache_dir` on first use (keyed by recipe, root and these options) and reuses them.
    """

    # Which part of the corpus each split reads: LibriSpeech folders (`train-clean-100`, a
    # comma-separated list for several), Common Voice tables (`train` for train.tsv). null: the
    # recipe's default; an empty string: no such split.
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    table: str = "transcripts.tsv"  # folder: the transcript table (path, text), under root
    # Corpora without their own splits (folder, asterisk) hold out these shares, chosen by a
    # stable hash of each file's path, so adding files never moves the old ones between splits.
    dev_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        for key in ("dev_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise ValueError(f"recipe.{key} must be in [0, 1) (got {value})")
        if self.dev_fraction + self.test_fraction >= 1:
            raise ValueError(
                "recipe.dev_fraction + recipe.test_fraction must leave some training data (< 1)"
            )


def split_parts(value: str | None, default: str) -> list[str]:
    """`spec.train` etc. -> the corpus parts it names: null = the default, "" = none,
    "a,b" = several."""
    if value is None:
        value = default
    return [part.strip() for part in value.split(",") if part.strip()]


def check_fractions(dev_fraction: float, test_fraction: float) -> None:
    if dev_fraction < 0 or test_fraction < 0 or dev_fraction + test_fraction >= 1:
        raise RecipeError(
            f"dev_fraction ({dev_fraction}) and test_fraction ({test_fraction}) must be >= 0 "
            "and leave a share for train (sum < 1)"
        )


def hash_split(key: str, dev_fraction: float, test_fraction: float) -> str:
    """The split of `key` (a relative path, a prompt name): a fixed function of the key alone,
    so adding files to a corpus never moves the old ones between train, dev and test."""
    x = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64
    if x < dev_fraction:
        return "dev"
    if x < dev_fraction + test_fraction:
        return "test"
    return "train"


@dataclass
class Skips:
    """Skipped items by reason, with the first few examples of each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES:
            shown.append(example)

    def summary(self) -> str:
        if not self.counts:
            return "none"
        return ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())

    def log_details(self, log: Log, where: str) -> None:
        for reason, n in self.counts.most_common():
            log(f"  {where}: skipped {n} ({reason}), e.g. {'; '.join(self.examples[reason])}")


def header_duration(path: Path) -> float:
    """Seconds of audio from the file's header (no decoding). Raises on an unreadable file."""
    info = sf.info(str(path))
    if info.samplerate <= 0 or info.frames <= 0:
        raise ValueError("no audio frames")
    return info.frames / info.samplerate


def _span(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


class ManifestBuilder:
    """Collects the utterances of one split, checking each file's header, then writes
    `<out>/<split>.jsonl`.

    Audio inside `out` (a recipe that unpacks its corpus there) is written relative to the
    manifest, so the folder stays valid when it is renamed or moved (the cache builds it in a
    temporary sibling); any other audio path is absolute.
    """

    def __init__(self, out: Path, split: str) -> None:
        self.out, self.split = out, split
        self.rows: list[dict] = []
        self.seconds = 0.0
        self.skips = Skips()
        self._out_resolved = out.resolve()

    def skip(self, reason: str, example: str) -> None:
        self.skips.add(reason, example)

    def add(self, audio: Path, text: str, utt_id: str) -> bool:
        """Adds one utterance if its audio is there and readable; counts it otherwise."""
        if not audio.is_file():
            self.skip("missing audio", str(audio))
            return False
        try:
            duration = header_duration(audio)
        except Exception as e:  # soundfile raises several types for broken files
            reason = first_line(e)
            self.skip("unreadable audio", f"{audio} ({reason})")
            return False
        path = audio.resolve()
        if path.is_relative_to(self._out_resolved):
            path_str = path.relative_to(self._out_resolved).as_posix()
        else:
            path_str = str(path)
        self.rows.append(
            {"audio_filepath": path_str, "text": text, "duration": duration, "id": utt_id}
        )
        self.seconds += duration
        return True

    def write(self, log: Log, prefix: str = "") -> Path | None:
        """Writes the manifest (None when the split is empty) and logs its one-line summary."""
        name = self.split
        log(
            f"{prefix}{name}: {len(self.rows)} utterances, {self.seconds / 3600:.2f} h "
            f"({_span(self.seconds)}); skipped: {self.skips.summary()}"
        )
        self.skips.log_details(log, f"{prefix}{name}")
        if not self.rows:
            return None
        path = self.out / f"{name}.jsonl"
        write_manifest(path, self.rows)
        return path


def write_manifest(path: Path, rows: list[dict]) -> None:
    """JSONL, UTF-8, written to a temporary file then renamed: a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finish(
    builders: dict[str, ManifestBuilder], log: Log, recipe: str, where: Path | str
) -> dict[str, Path]:
    """Writes every split's manifest; refuses a corpus where nothing was usable."""
    written = {split: b.write(log, prefix=f"{recipe} ") for split, b in builders.items()}
    out = {split: path for split, path in written.items() if path is not None}
    if not out:
        skipped = Skips()
        for b in builders.values():
            for reason, n in b.skips.counts.items():
                skipped.counts[reason] += n
        raise RecipeError(
            f"{recipe}: no usable utterances in {where} (skipped: {skipped.summary()})"
        )
    return out


def listing(names: list[str], limit: int = 12) -> str:
    """Names for a one-line message: the first `limit`, then how many more."""
    if not names:
        return "nothing"
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def require_root(root: Path | None, recipe: str) -> Path:
    """The corpus folder, which must exist."""
    if root is None:
        raise RecipeError(f"{recipe}: --root (data.root) is required: the corpus folder")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RecipeError(f"{recipe}: root folder not found: {root}")
    return root
