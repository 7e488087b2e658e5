"""Building an utterance table: a manifest read line by line into column files.

The reader (`asr.data.table`) maps what this writes. The build runs the checks that depend on
the manifest alone, records every line it drops in order, and checks each kept row's audio
file once (so the open that follows the build need not). A manifest of more than
PARALLEL_ROWS lines is read by several processes, each a contiguous part (the cores of a
training node are idle at start-up); the parts are joined in order, so the table, and the
order of its drops, are the same as one reader's.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.manifest import BadLine, parse_line, utt_id_of
from asr.text import SPACE, Normalizer, Vocabulary

TABLE_VERSION = "2"  # bump when the files or the checks change: tables rebuild
CHUNK_ROWS = 1 << 16  # rows read between writes: bounds the build's memory
STRING_COLUMNS = ("ids", "paths", "texts")
NUMBER_COLUMNS = {"labels": None, "durations": np.float64, "min_frames": np.int32,
                  "lines": np.int32}  # fmt: skip
PARALLEL_ROWS = 200_000  # about one second of reading: fewer lines are read in this process
MAX_PARTS = 8


@dataclass(frozen=True)
class TextRules:
    """What a table depends on besides its manifest: the alphabet, the language's text rules
    and the longest duration kept."""

    vocab: Vocabulary
    language: str
    max_duration: float

    def key(self) -> str:
        return json.dumps([self.vocab.symbols, self.language, repr(self.max_duration)])


def _append(path: Path, data: bytes | np.ndarray) -> None:
    with open(path, "ab") as f:
        f.write(data if isinstance(data, bytes) else data.tobytes())


class _Offsets:
    """A column's n+1 int64 offsets, written a chunk of lengths at a time."""

    def __init__(self, path: Path):
        self.path, self.end = path, 0
        _append(path, np.zeros(1, np.int64))

    def extend(self, lengths: np.ndarray) -> None:
        ends = self.end + np.cumsum(lengths, dtype=np.int64)
        _append(self.path, ends)
        self.end = int(ends[-1]) if len(ends) else self.end


class _LabelEncoder:
    """Normalized texts -> labels, a chunk at a time: code points looked up in one array
    operation instead of a dictionary per character."""

    def __init__(self, vocab: Vocabulary):
        chars = [" " if s == SPACE else s for s in vocab.symbols]
        codes = np.array([ord(c) for c in chars], np.uint32)
        self.order = np.argsort(codes)
        self.codes = codes[self.order]
        self.dtype = np.uint8 if len(chars) <= 256 else np.int32

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(labels back to back, each text's length)."""
        points = np.frombuffer("".join(texts).encode("utf-32-le"), "<u4")
        labels = self.order[np.searchsorted(self.codes, points)].astype(self.dtype)
        return labels, np.fromiter(map(len, texts), np.int64, len(texts))


def _min_frames(labels: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`checks.min_ctc_frames` of each row at once: its labels, plus one blank between each
    pair of equal neighbours."""
    starts = np.cumsum(lengths) - lengths
    repeat = np.zeros(len(labels), np.int64)
    repeat[1:] = labels[1:] == labels[:-1]
    repeat[starts] = 0  # a row's first label has no neighbour before it in the row
    return (lengths + np.add.reduceat(repeat, starts)).astype(np.int32) if len(labels) else lengths


class _Builder:
    """Reads a manifest line by line into the columns, dropping (and recording) what the
    manifest alone shows cannot train."""

    def __init__(self, folder: Path, rules: TextRules):
        folder.mkdir(parents=True)
        self.folder, self.rules = folder, rules
        self.normalize = Normalizer(rules.language, rules.vocab).split
        self.encode = _LabelEncoder(rules.vocab)
        self.offsets = {
            name: _Offsets(folder / f"{name}.off") for name in (*STRING_COLUMNS, "labels")
        }
        self.rows = 0
        self.entries = 0  # lines that are not blank
        self.dropped: list[tuple[str, str, str]] = []  # (kind, utt_id, detail), in order
        self.dropped_chars: dict[str, int] = {}
        self.exists: list[bool] = []  # each row's audio file, as the disk is while building
        self.check_files = FileCheck()
        self.seen_hashes = array("q")  # hash() of each path read: parts find shared files

    def read(
        self, manifest: Path, *, start: int = 0, end: int | None = None, first_line: int = 1
    ) -> None:
        """The lines of `manifest` from byte `start` (line `first_line`) to byte `end`."""
        seen: set[str] = set()
        chunk: list[tuple[str, str, str, float, int]] = []
        folder, max_duration = str(manifest.parent), self.rules.max_duration
        with open(manifest, "rb") as f:
            f.seek(start)
            at = start
            for lineno, raw in enumerate(f, start=first_line):
                if end is not None and at >= end:
                    break
                at += len(raw)
                try:
                    parsed = parse_line(raw, folder)
                except BadLine as e:
                    self.entries += 1
                    detail = "" if e.kind == "non_utf8" else str(e)
                    self.dropped.append((e.kind, f"{manifest.name}:{lineno}", detail))
                    continue
                if parsed is None:
                    continue
                self.entries += 1
                explicit, audio, raw_text, duration = parsed
                if audio in seen:
                    utt_id = utt_id_of(explicit, audio)
                    self.dropped.append(("duplicate_path", utt_id, f"line {lineno}"))
                    continue
                seen.add(audio)
                self.seen_hashes.append(hash(audio))
                text, dropped = self.normalize(raw_text)
                if dropped:
                    for c in dropped:
                        self.dropped_chars[c] = self.dropped_chars.get(c, 0) + 1
                    detail = "".join(sorted(set(dropped)))
                    self.dropped.append(
                        ("chars_outside_alphabet", utt_id_of(explicit, audio), detail)
                    )
                elif not text:
                    self.dropped.append(("empty_text", utt_id_of(explicit, audio), ""))
                elif duration > max_duration:
                    self.dropped.append(("too_long_duration", utt_id_of(explicit, audio), ""))
                else:
                    chunk.append((explicit, audio, text, duration, lineno))
                    if len(chunk) == CHUNK_ROWS:
                        self._write(chunk)
                        chunk = []
        self._write(chunk)

    def _write(self, chunk: list[tuple[str, str, str, float, int]]) -> None:
        if not chunk:
            return
        ids, paths, texts, durations, lines = zip(*chunk, strict=True)
        self.exists += self.check_files(paths)  # saves the open that follows a pass
        for name, values in zip(STRING_COLUMNS, (ids, paths, texts), strict=True):
            # surrogatepass: a JSON path may hold any code point; it comes back the same
            encoded = [v.encode(errors="surrogatepass") for v in values]
            _append(self.folder / f"{name}.bin", b"".join(encoded))
            self.offsets[name].extend(np.fromiter(map(len, encoded), np.int64, len(encoded)))
        labels, lengths = self.encode(list(texts))
        _append(self.folder / "labels.bin", labels)
        self.offsets["labels"].extend(lengths)
        _append(self.folder / "durations.bin", np.asarray(durations, np.float64))
        _append(self.folder / "min_frames.bin", _min_frames(labels, lengths).astype(np.int32))
        _append(self.folder / "lines.bin", np.asarray(lines, np.int32))
        self.rows += len(chunk)

    def finish(self) -> None:
        for name in ("labels", "durations", "min_frames", "lines", *STRING_COLUMNS):
            _append(self.folder / f"{name}.bin", b"")  # present, if empty
        meta = {
            "version": TABLE_VERSION,
            "rows": self.rows,
            "entries": self.entries,
            "label_dtype": np.dtype(self.encode.dtype).str,
            "dropped": self.dropped,
            "dropped_chars": self.dropped_chars,
        }
        text = json.dumps(meta, ensure_ascii=False)
        (self.folder / "meta.json").write_text(text, encoding="utf-8")


class FileCheck:
    """`os.path.isfile` for many paths: a folder met often is listed once (`os.scandir`)
    instead of one `stat` per file, about 4 times faster on a corpus's folders of thousands.

    The first LIST_AFTER files of a folder are checked one by one, so a folder holding one
    utterance among many other files is never listed whole. Listings are kept up to KEEP_NAMES
    names in all, the oldest dropped first; a folder needed again after its listing was
    dropped (a manifest not grouped by folder) is checked file by file from then on, so the
    cost is never worse than a stat per file. `DirEntry.is_file` follows links as `isfile`
    does; a folder that cannot be listed falls back to `isfile`.
    """

    LIST_AFTER = 8
    KEEP_NAMES = 200_000  # about 20 MB of file names

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.live: dict[str, frozenset[str]] = {}  # listings kept, oldest first
        self.tried: set[str] = set()  # folders listed (or failed to list) once
        self.names = 0

    def _list(self, folder: str) -> frozenset[str] | None:
        self.tried.add(folder)
        try:
            with os.scandir(folder or ".") as entries:
                names = frozenset(e.name for e in entries if e.is_file())
        except OSError:
            return None
        self.live[folder] = names
        self.names += len(names)
        while self.names > self.KEEP_NAMES and len(self.live) > 1:
            self.names -= len(self.live.pop(next(iter(self.live))))
        return names

    def __call__(self, paths: Sequence[str]) -> list[bool]:
        found = []
        for path in paths:
            folder, _, name = path.rpartition("/")
            names = self.live.get(folder)
            if names is None and folder not in self.tried:
                n = self.asked[folder] = self.asked.get(folder, 0) + 1
                if n >= self.LIST_AFTER:
                    names = self._list(folder)
            found.append(name in names if names is not None else os.path.isfile(path))
        return found


def build_table(manifest: Path, folder: Path, rules: TextRules) -> np.ndarray:
    """Write `manifest`'s table into `folder` (created here); returns, per row, whether its
    audio file exists now."""
    parts = _parts(manifest)
    if len(parts) > 1:
        try:
            return _build_in_parts(manifest, folder, rules, parts)
        except _SerialInstead:
            shutil.rmtree(folder, ignore_errors=True)
    builder = _Builder(folder, rules)
    builder.read(manifest)
    builder.finish()
    return np.asarray(builder.exists, bool)


class _SerialInstead(Exception):
    """A part-wise build that cannot give one reader's result: read the manifest whole."""


def _parts(manifest: Path) -> list[tuple[int, int | None, int]]:
    """(first byte, end byte, first line number) of each part: one per PARALLEL_ROWS lines,
    at most one per core (and MAX_PARTS), each starting at a line."""
    size = manifest.stat().st_size
    with open(manifest, "rb") as f:
        head = f.read(1 << 20)
        per_line = len(head) / max(head.count(b"\n"), 1)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        n = int(min(MAX_PARTS, cores, size / per_line // PARALLEL_ROWS))
        if n <= 1:
            return [(0, None, 1)]
        bounds = []
        for k in range(1, n):
            f.seek(size * k // n)
            f.readline()  # to the start of the next line
            bounds.append(f.tell())
        bounds = sorted({b for b in bounds if 0 < b < size})
        f.seek(0)
        lines, done = [], 0
        for b in bounds:  # the line number at each bound: newlines before it
            done += f.read(b - f.tell()).count(b"\n")
            lines.append(done + 1)
    starts, ends = [0, *bounds], [*bounds, None]
    return list(zip(starts, ends, [1, *lines], strict=True))


def _read_part(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    """In a child process: one part into its own folder; (files found, path hashes)."""
    manifest, folder, rules, start, end, first_line = args
    builder = _Builder(folder, rules)
    builder.read(manifest, start=start, end=end, first_line=first_line)
    builder.finish()
    return np.asarray(builder.exists, bool), np.frombuffer(builder.seen_hashes, np.int64)


def _build_in_parts(manifest: Path, folder: Path, rules: TextRules, parts: list) -> np.ndarray:
    folder.mkdir(parents=True)
    work = [(manifest, folder / f"part-{k}", rules, *p) for k, p in enumerate(parts)]
    try:  # fork: the children share this process's hash seed, so their path hashes compare
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            results = pool.map(_read_part, work)
    except AssertionError:  # "daemonic processes are not allowed to have children"
        raise _SerialInstead from None
    seen = np.empty(0, np.int64)
    for _, hashes in results:
        # A file listed in two parts is a duplicate only one reader finds in order (and
        # rarely met): then the whole manifest is read by one reader instead.
        if np.isin(hashes, seen).any():
            raise _SerialInstead
        seen = np.concatenate([seen, hashes])
    _join([folder / f"part-{k}" for k in range(len(parts))], folder)
    return np.concatenate([found for found, _ in results])


def _join(parts: list[Path], folder: Path) -> None:
    """The parts' columns, one after the other, into `folder`; offsets moved by what came
    before; the drops in order."""
    meta = {"version": TABLE_VERSION, "rows": 0, "entries": 0, "dropped": [], "dropped_chars": {}}
    for k, part in enumerate(parts):
        got = json.loads((part / "meta.json").read_text(encoding="utf-8"))
        for name in (*STRING_COLUMNS, "labels"):
            offsets = np.fromfile(part / f"{name}.off", np.int64)
            base = int(np.fromfile(folder / f"{name}.off", np.int64)[-1]) if k else 0
            _append(folder / f"{name}.off", (offsets if k == 0 else offsets[1:]) + base)
        for name in (*STRING_COLUMNS, *NUMBER_COLUMNS):
            with open(part / f"{name}.bin", "rb") as src, open(folder / f"{name}.bin", "ab") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
        meta["rows"] += got["rows"]
        meta["entries"] += got["entries"]
        meta["label_dtype"] = got["label_dtype"]
        meta["dropped"] += got["dropped"]
        for c, n in got["dropped_chars"].items():
            meta["dropped_chars"][c] = meta["dropped_chars"].get(c, 0) + n
        shutil.rmtree(part)
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
