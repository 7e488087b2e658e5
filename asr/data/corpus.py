"""Which manifests a run trains on: the generated default corpus, a prepared recipe corpus, or
the user's own manifests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from asr.data import recipes
from asr.data.manifest import ManifestError
from asr.data.synth import DONE_MARKER, _exclusive_lock, _is_complete, build_synth_corpus
from asr.schema import RECIPES, ConfigError, DataConfig, RecipeSpec

SPLITS = ("train", "dev", "test")
RECIPES_VERSION = "1"  # bump when a recipe's output changes, so cached manifests rebuild


def resolve_manifests(d: DataConfig, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Split name -> manifest path for the data config `d`.

    `synth_es` is built in the cache on first use, a recipe corpus (`data.corpus` in RECIPES)
    prepared there from `data.root`. For `manifest`, the user-given paths (absolute, or relative
    to the current directory); a missing test manifest is allowed (the run then reports no test
    score).
    """
    if d.corpus == "synth_es":
        return build_synth_corpus(Path(d.cache_dir).expanduser(), d.synth, log=log)
    if d.corpus in RECIPES:
        return prepare_recipe_corpus(d, log=log)
    if d.corpus != "manifest":
        raise ValueError(f"unknown corpus {d.corpus!r}")
    out: dict[str, Path] = {}
    for split in SPLITS:
        value = getattr(d, f"{split}_manifest")
        if not value:
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ManifestError(f"data.{split}_manifest not found: {path}")
        out[split] = path
    return out


def _recipe_spec(d: DataConfig) -> RecipeSpec:
    # A config rebuilt from a checkpoint's plain dict holds the spec as a dict.
    return d.recipe if isinstance(d.recipe, RecipeSpec) else RecipeSpec(**d.recipe)


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
    spec = dataclasses.asdict(_recipe_spec(d))
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

    Safe when several sweep jobs start at once, as `synth_es` is: an exclusive flock guards
    check-and-build, the recipe writes into a temporary sibling that is renamed into place with
    `DONE` inside. The cache is keyed by the root's path, not its content: after changing the
    corpus files, delete the folder to read them again.
    """
    final = recipe_corpus_dir(d)
    if _is_complete(final):
        log(f"{d.corpus}: reusing the manifests in {final} (delete it to re-read the corpus)")
        return _manifests(final)
    cache_dir = final.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / f"{final.name}.lock", log):
        if not _is_complete(final):  # else built by the process we waited for
            for stale in cache_dir.glob(f".tmp-{final.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():
                shutil.rmtree(final)
            tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}"
            tmp.mkdir()
            log(f"{d.corpus}: preparing manifests (first use) into {final} ...")
            try:
                recipes.prepare(d.corpus, _recipe_root(d), tmp, _recipe_spec(d), d.language, log)
                (tmp / DONE_MARKER).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
                os.rename(tmp, final)
            except recipes.RecipeError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                raise ConfigError(str(e)) from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return _manifests(final)
