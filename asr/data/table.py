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

The build (`asr.data.table_build`) runs the checks that depend only on the manifest
(`non_utf8`, `bad_json`, `duplicate_path`, `chars_outside_alphabet`, `empty_text`,
`too_long_duration`); `open_table` runs, on every open, the two that depend on more:
`too_long_for_ctc` (the model's frame rate) and `missing_file` (the disk as it is now). Every
drop is counted by kind, in manifest order, exactly as when the utterances were Python objects.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.cache import build_once
from asr.data.checks import ProblemReport
from asr.data.manifest import ManifestError, utt_id_of
from asr.data.table_build import (
    CHUNK_ROWS,
    STRING_COLUMNS,
    TABLE_VERSION,
    FileCheck,
    TextRules,
    build_table,
)
from asr.disk import space_for

__all__ = ["TextRules", "Utterance", "UtteranceTable", "open_table", "table_folder"]


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


def table_folder(manifest: Path, rules: TextRules, cache_dir: Path) -> Path:
    """`<cache_dir>/tables/<manifest stem>-<hash>`: the hash covers the manifest's bytes, its
    folder (relative audio paths resolve against it) and the rules."""
    h = hashlib.sha256(f"{TABLE_VERSION}\0{manifest.parent}\0{rules.key()}\0".encode())
    with open(manifest, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return cache_dir / "tables" / f"{manifest.stem}-{h.hexdigest()[:16]}"


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
            exists_now.append(build_table(manifest, tmp, rules))

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
