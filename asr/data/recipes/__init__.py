"""Corpus recipes: a corpus as downloaded -> NeMo-style JSONL manifests.

Each recipe is `prepare(root, out, spec, language, log) -> {split: manifest path}`, writing
`<out>/<split>.jsonl` with the raw transcripts (training normalizes them) and durations read
from the audio headers. Run one with `python -m asr.data prepare <recipe> ...`, or let training
prepare it into the cache (`data=<recipe> data.root=...`, see `asr.data.corpus`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asr.data.recipes import asterisk, commonvoice, folder, librispeech
from asr.data.recipes.common import RecipeError, RecipeSpec

Recipe = Callable[..., dict[str, Path]]

REGISTRY: dict[str, Recipe] = {
    "librispeech": librispeech.prepare,
    "commonvoice": commonvoice.prepare,
    "folder": folder.prepare,
    "asterisk": asterisk.prepare,
}
# Recipes whose root may be omitted: they download their data.
ROOT_OPTIONAL = frozenset({"asterisk"})

__all__ = ["REGISTRY", "ROOT_OPTIONAL", "Recipe", "RecipeError", "prepare"]


def prepare(
    name: str,
    root: Path | None,
    out: Path,
    spec: RecipeSpec,
    language: str,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Runs recipe `name`; RecipeError (one line) when it cannot."""
    if name not in REGISTRY:
        raise RecipeError(f"unknown recipe {name!r}; one of {', '.join(REGISTRY)}")
    return REGISTRY[name](root, Path(out), spec, language, log=log)
