"""LibriSpeech as downloaded from openslr.org (English read audiobooks, 16 kHz FLAC).

Layout: `<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`, with one
`<speaker>-<chapter>.trans.txt` per chapter holding `ID TEXT` lines (upper case). `root` may
also be the folder the archives were unpacked in, which holds `LibriSpeech/`.
"""

from __future__ import annotations

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

DEFAULTS = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}


def corpus_base(root: Path) -> Path:
    """The folder that holds the subsets: `root` itself, or `root/LibriSpeech`."""
    nested = root / "LibriSpeech"
    return nested if nested.is_dir() else root


def read_subset(subset_dir: Path, builder: ManifestBuilder) -> None:
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        with trans.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                utt_id, _, text = line.strip().partition(" ")
                if not utt_id:
                    continue
                if not text.strip():
                    builder.skip("empty transcript", f"{trans}:{lineno}")
                    continue
                builder.add(trans.parent / f"{utt_id}.flac", text.strip(), utt_id)


def prepare(
    root: Path | None, out: Path, spec: RecipeSpec, language: str, log: Log = print
) -> dict[str, Path]:
    """Split -> manifest; each split reads the subsets `spec.<split>` names (comma-separated)."""
    base = corpus_base(require_root(root, "librispeech"))
    subsets = {split: split_parts(getattr(spec, split), DEFAULTS[split]) for split in SPLITS}
    found = sorted(p.name for p in base.iterdir() if p.is_dir())
    for split, names in subsets.items():
        for name in names:
            if not (base / name).is_dir():
                raise RecipeError(
                    f"librispeech: no subset folder {base / name} (for {split}); "
                    f"found: {listing(found)}"
                )
    builders: dict[str, ManifestBuilder] = {}
    for split, names in subsets.items():
        if not names:
            continue
        builder = builders[split] = ManifestBuilder(out, split)
        for name in names:
            read_subset(base / name, builder)
    return finish(builders, log, "librispeech", base)
