"""Any folder of audio files with a transcript table: the way to bring your own recordings.

The table (`spec.table`, default `transcripts.tsv`, under root) has two columns, `path` (relative
to root) and `text`; `.csv` is comma-separated (quote a text holding commas), anything else
tab-separated. A header row naming the columns is allowed, and then other columns may be present
and the two may come in any order.

There are no given splits: `spec.dev_fraction` / `spec.test_fraction` of the files go to dev and
test, chosen by a hash of each relative path, so adding files never moves the old ones.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path, PurePosixPath

from asr.data.recipes.common import (
    SPLITS,
    Log,
    ManifestBuilder,
    RecipeError,
    RecipeSpec,
    Skips,
    check_fractions,
    finish,
    hash_split,
    listing,
    require_root,
)

PATH_HEADERS = ("path", "audio_filepath", "audio", "file", "filename")
TEXT_HEADERS = ("text", "transcript", "sentence", "transcription")


def read_table(table: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty row."""
    csv.field_size_limit(sys.maxsize)
    if table.suffix.lower() == ".csv":
        dialect: dict = {"delimiter": ","}
    else:  # tab-separated, and quotes are part of the text
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    with table.open(encoding="utf-8-sig", newline="") as f:
        return [
            (lineno, row)
            for lineno, row in enumerate(csv.reader(f, **dialect), start=1)
            if any(cell.strip() for cell in row)
        ]


def column_indices(header: list[str]) -> tuple[int, int] | None:
    """(path column, text column) when `header` is a header row, else None."""
    names = [cell.strip().lower() for cell in header]
    path_col = next((names.index(h) for h in PATH_HEADERS if h in names), None)
    text_col = next((names.index(h) for h in TEXT_HEADERS if h in names), None)
    if path_col is None or text_col is None:
        return None
    return path_col, text_col


def prepare(
    root: Path | None, out: Path, spec: RecipeSpec, language: str, log: Log = print
) -> dict[str, Path]:
    """Split -> manifest of the files `spec.table` lists, split by hash of their path."""
    root = require_root(root, "folder")
    check_fractions(spec.dev_fraction, spec.test_fraction)
    table = root / spec.table
    if not table.is_file():
        tables = sorted(p.name for p in root.glob("*") if p.suffix.lower() in (".tsv", ".csv"))
        raise RecipeError(
            f"folder: transcript table not found: {table} "
            f"(tables in root: {listing(tables)}; set --table / data.recipe.table)"
        )
    rows = read_table(table)
    columns = column_indices(rows[0][1]) if rows else None
    if columns is not None:
        rows = rows[1:]
    path_col, text_col = columns or (0, 1)

    builders = {split: ManifestBuilder(out, split) for split in SPLITS}
    table_skips = Skips()
    seen: set[str] = set()
    for lineno, cells in rows:
        where = f"{table.name}:{lineno}"
        if len(cells) <= max(path_col, text_col):
            table_skips.add("row without path and text", where)
            continue
        rel, text = cells[path_col].strip(), cells[text_col].strip()
        key = PurePosixPath(rel.replace("\\", "/")).as_posix()
        if not rel or not text:
            table_skips.add("empty path or text", where)
            continue
        if key in seen:
            table_skips.add("repeated path (first kept)", where)
            continue
        seen.add(key)
        split = hash_split(key, spec.dev_fraction, spec.test_fraction)
        builders[split].add(root / key, text, key)
    if table_skips.counts:
        log(f"folder {table}: skipped rows: {table_skips.summary()}")
        table_skips.log_details(log, f"folder {table.name}")
    return finish(builders, log, "folder", root)
