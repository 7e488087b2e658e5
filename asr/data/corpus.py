"""Which manifests a run trains on: the generated default corpus, a prepared recipe corpus, or
the user's own manifests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from asr.data import recipes
from asr.data.cache import build_once
from asr.data.manifest import ManifestError
from asr.data.synth import build_synth_corpus
from asr.schema import RECIPES, ConfigError, DataConfig

SPLITS = ("train", "dev", "test")
RECIPES_VERSION = "1"  # bump when a recipe's output changes, so cached manifests rebuild


def resolve_manifests(d: DataConfig, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Split name -> manifest path for the data config `d`.

    `synth_es` is built in the cache on first use, a recipe corpus (`data.corpus` in RECIPES)
    prepared there from `data.root`. For `manifest`, the user-given paths (absolute, or relative
    to the current directory); a missing test manifest is allowed (the run then reports no test
    score). For `shards`, the same for dev and test (train is streamed from its shards).
    """
    if d.corpus == "synth_es":
        return build_synth_corpus(Path(d.cache_dir).expanduser(), d.synth, log=log)
    if d.corpus in RECIPES:
        return prepare_recipe_corpus(d, log=log)
    if d.corpus not in ("manifest", "shards"):
        raise ValueError(f"unknown corpus {d.corpus!r}")
    out: dict[str, Path] = {}
    for split in SPLITS:
        value = getattr(d, f"{split}_manifest")
        if d.corpus == "shards" and split == "train":
            continue  # streamed from data.shards_dir
        if not value:
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ManifestError(f"data.{split}_manifest not found: {path}")
        out[split] = path
    return out


def _recipe_root(d: DataConfig) -> Path | None:
    """The resolved corpus folder; None for a recipe that downloads its data itself."""
    if d.root in (None, "", "fetch", "???"):
        if d.corpus in recipes.ROOT_OPTIONAL:
            return None
        raise ConfigError(f"data.root is required for data.corpus={d.corpus}: the corpus folder")
    root = Path(d.root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"data.root not found: {root}")
    return root


def recipe_corpus_dir(d: DataConfig) -> Path:
    """`<cache_dir>/<recipe>-<hash of recipe, root, spec, language>`."""
    spec = dataclasses.asdict(d.recipe)
    spec["dev_fraction"], spec["test_fraction"] = (
        float(spec["dev_fraction"]),
        float(spec["test_fraction"]),
    )
    root = _recipe_root(d)
    payload = {
        "recipe": d.corpus,
        "root": str(root) if root else "fetch",
        "spec": spec,
        "language": d.language,
        "version": RECIPES_VERSION,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return Path(d.cache_dir).expanduser() / f"{d.corpus}-{digest}"


def _manifests(corpus: Path) -> dict[str, Path]:
    return {s: corpus / f"{s}.jsonl" for s in SPLITS if (corpus / f"{s}.jsonl").is_file()}


def prepare_recipe_corpus(d: DataConfig, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Prepares the manifests of recipe `d.corpus` into the cache on first use, then reuses them.

    Safe when several sweep jobs start at once, as `synth_es` is (`asr.data.cache.build_once`).
    The cache is keyed by the root's path, not its content: after changing the
    corpus files, delete the folder to read them again.
    """
    final = recipe_corpus_dir(d)

    def build(tmp: Path) -> None:
        tmp.mkdir()
        log(f"{d.corpus}: preparing manifests (first use) into {final} ...")
        try:
            recipes.prepare(d.corpus, _recipe_root(d), tmp, d.recipe, d.language, log)
        except recipes.RecipeError as e:
            raise ConfigError(str(e)) from None

    if not build_once(final, build, log):
        log(f"{d.corpus}: reusing the manifests in {final} (delete it to re-read the corpus)")
    return _manifests(final)
