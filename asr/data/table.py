"""The utterance table: a split's utterances as columns in memory-mapped files.

Why: a corpus of a million utterances held as Python objects costs every process about 1.4 GB
and a minute of start-up, and a forked DataLoader worker slowly copies every page it reads
(reading an object writes its reference count: pytorch/pytorch #13246). Columns in files that
every process maps cost a few bytes of address space per row, are read without being copied,
and a second run, every DDP rank and every worker share the one copy in the page cache.

A table is built once per (manifest bytes, its folder, text and filter settings) into
`<cache_dir>/tables/`, guarded like the corpora (`asr.data.cache.build_once`). Its folder holds:

    ids, paths, texts   utf-8 strings back to back (`<name>.bin`) and n+1 byte offsets (`.off`);
                        an id is stored only when the manifest gives one (else the file name)
    labels              every row's labels back to back (`labels.bin`), n+1 offsets (`labels.off`)
    durations           float64, as the manifest declares them
    min_frames          int32, the fewest CTC frames each transcript needs
    lines               int32, each row's line in its manifest
    meta.json           format, row count, and every line dropped while reading, in order

The build runs the checks that depend only on the manifest (`non_utf8`, `bad_json`,
`duplicate_path`, `chars_outside_alphabet`, `empty_text`, `too_long_duration`); `open_table`
runs, on every open, the two that depend on more: `too_long_for_ctc` (the model's frame rate)
and `missing_file` (the disk as it is now). Every drop is counted by kind, in manifest order,
exactly as when the utterances were Python objects.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.cache import build_once
from asr.data.checks import ProblemReport
from asr.data.manifest import BadLine, ManifestError, parse_line, utt_id_of
from asr.disk import space_for
from asr.text import SPACE, Normalizer, Vocabulary

TABLE_VERSION = "2"  # bump when the files or the checks change: tables rebuild
CHUNK_ROWS = 1 << 16  # rows read between writes: bounds the build's memory
STRING_COLUMNS = ("ids", "paths", "texts")


@dataclass(frozen=True)
class Utterance:
    """One row of a table, as Python values: made when a batch asks for it, never kept."""

    utt_id: str
    # Text, not a Path: Python 3.11's pathlib interns every part of every Path it makes, so a
    # Path per row read would leave each file name in every worker's memory for good.
    audio_path: str
    text: str  # normalized: only vocabulary characters and single spaces
    labels: tuple[int, ...]
    duration: float


@dataclass(frozen=True)
class TextRules:
    """What a table depends on besides its manifest: the alphabet, the language's text rules
    and the longest duration kept."""

    vocab: Vocabulary
    language: str
    max_duration: float

    def key(self) -> str:
        return json.dumps([self.vocab.symbols, self.language, repr(self.max_duration)])


def table_folder(manifest: Path, rules: TextRules, cache_dir: Path) -> Path:
    """`<cache_dir>/tables/<manifest stem>-<hash>`: the hash covers the manifest's bytes, its
    folder (relative audio paths resolve against it) and the rules."""
    h = hashlib.sha256(f"{TABLE_VERSION}\0{manifest.parent}\0{rules.key()}\0".encode())
    with open(manifest, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return cache_dir / "tables" / f"{manifest.stem}-{h.hexdigest()[:16]}"


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

    def read(self, manifest: Path) -> None:
        seen: set[str] = set()
        chunk: list[tuple[str, str, str, float, int]] = []
        folder, max_duration = str(manifest.parent), self.rules.max_duration
        with open(manifest, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
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


def _map(path: Path, dtype: str | type) -> np.ndarray:
    """A read-only array over a column file's pages (an empty array for an empty file, which
    mmap refuses). A plain ndarray, not np.memmap: its slices are cheaper to make."""
    if path.stat().st_size == 0:
        return np.empty(0, dtype)
    with open(path, "rb") as f:
        return np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype)


def _read_meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text(encoding="utf-8"))


class UtteranceTable(Sequence[Utterance]):
    """The kept rows of a table: `table[i]` is an Utterance, `durations` an array.

    Everything is a read-only memory map or a NumPy array (`rows`, the kept rows' numbers), so
    a forked DataLoader worker reads it without copying a page.
    """

    def __init__(self, folder: Path, rows: np.ndarray | None = None):
        self.folder = folder
        meta = _read_meta(folder)
        self.n_rows, self.label_dtype = int(meta["rows"]), meta["label_dtype"]
        self.entries = int(meta["entries"])  # the manifest's entries, usable or not
        self._strings = {
            name: (_map(folder / f"{name}.bin", np.uint8), _map(folder / f"{name}.off", np.int64))
            for name in STRING_COLUMNS
        }
        self._labels = _map(folder / "labels.bin", self.label_dtype)
        self._label_offsets = _map(folder / "labels.off", np.int64)
        self._durations = _map(folder / "durations.bin", np.float64)
        self.min_frames = _map(folder / "min_frames.bin", np.int32)
        self.lines = _map(folder / "lines.bin", np.int32)
        self.rows = rows  # kept rows (None: all)

    def __getstate__(self) -> dict:
        """Pickled (for a spawned process) as the folder and the kept rows: mapped again."""
        return {"folder": self.folder, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["rows"])

    def __len__(self) -> int:
        return self.n_rows if self.rows is None else len(self.rows)

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} of a table of {n}")
        i %= n
        return i if self.rows is None else int(self.rows[i])

    def _string(self, name: str, row: int) -> str:
        data, offsets = self._strings[name]
        return data[offsets[row] : offsets[row + 1]].tobytes().decode(errors="surrogatepass")

    def _utt_id(self, row: int) -> str:
        return utt_id_of(self._string("ids", row), self._string("paths", row))

    def __getitem__(self, i: int) -> Utterance:  # type: ignore[override]
        row = self._row(int(i))
        return Utterance(
            self._utt_id(row),
            self._string("paths", row),
            self._string("texts", row),
            tuple(self.labels(i).tolist()),
            float(self._durations[row]),
        )

    def __iter__(self) -> Iterator[Utterance]:
        for i in range(len(self)):
            yield self[i]

    def labels(self, i: int) -> np.ndarray:
        row = self._row(int(i))
        return self._labels[self._label_offsets[row] : self._label_offsets[row + 1]]

    def audio_path(self, i: int) -> str:
        return self._string("paths", self._row(int(i)))

    def line(self, i: int) -> int:
        """The row's line in its manifest."""
        return int(self.lines[self._row(int(i))])

    @functools.cached_property
    def durations(self) -> np.ndarray:
        """(n,) float64: the declared durations of the kept rows."""
        return self._durations if self.rows is None else self._durations[self.rows]

    @property
    def audio_paths(self) -> Sequence[str]:
        """The kept rows' audio paths, read on demand."""
        return _Paths(self)


class _Paths(Sequence[str]):
    def __init__(self, table: UtteranceTable):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.table.audio_path(i)


class FileCheck:
    """`os.path.isfile` for many paths: a folder met often is listed once (`os.scandir`)
    instead of one `stat` per file, about 4 times faster on a corpus's folders of thousands.

    The first LIST_AFTER files of a folder are checked one by one, so a folder holding one
    utterance among many other files is never listed whole. `DirEntry.is_file` follows links
    as `isfile` does; a folder that cannot be listed falls back to `isfile`.
    """

    LIST_AFTER = 8

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.listed: dict[str, frozenset[str] | None] = {}

    def _listing(self, folder: str) -> frozenset[str] | None:
        try:
            with os.scandir(folder or ".") as entries:
                return frozenset(e.name for e in entries if e.is_file())
        except OSError:
            return None

    def __call__(self, paths: Sequence[str]) -> list[bool]:
        found = []
        for path in paths:
            folder, _, name = path.rpartition("/")
            names = self.listed.get(folder)
            if names is None:
                n = self.asked[folder] = self.asked.get(folder, 0) + 1
                if n == self.LIST_AFTER and folder not in self.listed:
                    names = self.listed[folder] = self._listing(folder)
            found.append(name in names if names is not None else os.path.isfile(path))
        return found


def _existing(table: UtteranceTable, rows: np.ndarray) -> np.ndarray:
    """Which of `rows` have their audio file on disk now (bool, aligned with `rows`)."""
    data, offsets = table._strings["paths"]
    found = np.zeros(len(rows), bool)
    check = FileCheck()
    for start in range(0, len(rows), CHUNK_ROWS):
        part = rows[start : start + CHUNK_ROWS]
        lo, hi = int(offsets[part[0]]), int(offsets[part[-1] + 1])
        blob = data[lo:hi].tobytes()  # one copy per chunk, then slices of bytes
        ends = offsets[part + 1] - lo
        begins = offsets[part] - lo
        paths = [
            blob[a:b].decode(errors="surrogatepass")
            for a, b in zip(begins.tolist(), ends.tolist(), strict=True)
        ]
        found[start : start + len(part)] = check(paths)
    return found


def open_table(
    manifest: str | Path,
    rules: TextRules,
    *,
    output_frames: Callable[[np.ndarray], np.ndarray],
    cache_dir: Path,
    report: ProblemReport,
    log: Callable[[str], None] = print,
) -> UtteranceTable:
    """The usable utterances of `manifest`: its table (built on first use), less the rows whose
    transcript needs more CTC frames than `output_frames(durations)` gives, or whose audio file
    is missing. Every drop is added to `report`."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"manifest not found: {manifest}")
    folder = table_folder(manifest, rules, cache_dir)
    exists_now: list[np.ndarray] = []  # found by the build, when this call builds

    def build(tmp: Path) -> None:
        log(f"reading {manifest} into an utterance table ...")
        with space_for(tmp, manifest.stat().st_size):  # the columns take about as much
            builder = _Builder(tmp, rules)
            builder.read(manifest)
            builder.finish()
        exists_now.append(np.asarray(builder.exists, bool))

    build_once(folder, build, log)
    table = UtteranceTable(folder)
    meta = _read_meta(folder)
    for kind, utt_id, detail in meta["dropped"]:
        report.add(kind, utt_id, detail)
    report.dropped_chars.update(meta["dropped_chars"])
    del meta

    durations = table.durations
    frames = np.asarray(output_frames(durations))
    too_long = (durations > 0) & (frames < table.min_frames)
    for row in np.flatnonzero(too_long).tolist():
        report.add("too_long_for_ctc", table._utt_id(row))
    fits = np.flatnonzero(~too_long)
    found = exists_now[0][fits] if exists_now else _existing(table, fits) if len(fits) else []
    missing = fits[~np.asarray(found, bool)]
    for row in missing.tolist():
        report.add("missing_file", table._utt_id(row), table._string("paths", row))
    if not too_long.any() and not len(missing):
        return table
    keep = np.ones(len(durations), bool)
    keep[too_long] = False
    keep[missing] = False
    return UtteranceTable(folder, np.flatnonzero(keep))
