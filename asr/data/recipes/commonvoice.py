"""Mozilla Common Voice, one language folder as downloaded (MP3 clips, TSV tables).

Layout: `<root>/{train,dev,test,validated,...}.tsv` with columns including `path` (a clip name)
and `sentence`, and the clips in `<root>/clips/`. `root` may also be the unpacked release
(`cv-corpus-*/`), or the folder holding it, with a `<language>/` folder inside.

The tables are read with QUOTE_NONE: sentences contain quotes, and Common Voice writes them
unescaped. Text is kept raw (training normalizes it). Note that `validated.tsv` includes the
dev and test sentences: use it for train only with dev/test from another release.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from asr.data.recipes.common import (
    SPLITS,
    Log,
    ManifestBuilder,
    RecipeError,
    RecipeSpec,
    finish,
    listing,
    require_root,
    split_parts,
)

DEFAULTS = {"train": "train", "dev": "dev", "test": "test"}


def language_folder(root: Path, language: str) -> Path:
    """The folder holding the tables: root itself, root/<lang>, or root/cv-corpus-*/<lang>
    (the newest release when there are several)."""
    candidates = [root, root / language, *sorted(root.glob(f"cv-corpus-*/{language}"))[::-1]]
    for folder in candidates:
        if any(folder.glob("*.tsv")):
            return folder
    raise RecipeError(f"commonvoice: no .tsv tables in {root} (nor in {root / language})")


def read_table(table: Path, clips: Path, builder: ManifestBuilder) -> None:
    csv.field_size_limit(sys.maxsize)
    with table.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise RecipeError(f"commonvoice: {table} has no column {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, start=2):
            clip, text = (row.get("path") or "").strip(), (row.get("sentence") or "").strip()
            if not clip or not text:
                builder.skip("empty path or sentence", f"{table.name}:{lineno}")
                continue
            builder.add(clips / clip, text, Path(clip).stem)


def prepare(
    root: Path | None, out: Path, spec: RecipeSpec, language: str, log: Log = print
) -> dict[str, Path]:
    """Split -> manifest; each split reads the tables `spec.<split>` names (`train` for
    train.tsv; comma-separated for several)."""
    folder = language_folder(require_root(root, "commonvoice"), language)
    tables = {split: split_parts(getattr(spec, split), DEFAULTS[split]) for split in SPLITS}
    found = sorted(p.stem for p in folder.glob("*.tsv"))
    for split, names in tables.items():
        for name in names:
            if not (folder / f"{name}.tsv").is_file():
                raise RecipeError(
                    f"commonvoice: no table {folder / name}.tsv (for {split}); "
                    f"found: {listing(found)}"
                )
    builders: dict[str, ManifestBuilder] = {}
    for split, names in tables.items():
        if not names:
            continue
        builder = builders[split] = ManifestBuilder(out, split)
        for name in names:
            read_table(folder / f"{name}.tsv", folder / "clips", builder)
    return finish(builders, log, "commonvoice", folder)
