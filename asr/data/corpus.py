"""Which manifests a run trains on: the generated default corpus, or the user's own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from asr.data.manifest import ManifestError
from asr.data.synth import SynthSpec, build_synth_corpus

SPLITS = ("train", "dev", "test")


def resolve_manifests(
    corpus: str,
    cache_dir: str | Path,
    synth: SynthSpec,
    manifests: dict[str, str | None],
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Split name -> manifest path. Builds `synth_es` in the cache on first use.

    `manifests` holds user-given paths (absolute, or relative to the current directory); a
    missing test manifest is allowed (the run then reports no test score).
    """
    if corpus == "synth_es":
        return build_synth_corpus(Path(cache_dir).expanduser(), synth, log=log)
    if corpus != "manifest":
        raise ValueError(f"unknown corpus {corpus!r}")
    out: dict[str, Path] = {}
    for split in SPLITS:
        value = manifests.get(split)
        if not value:
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ManifestError(f"data.{split}_manifest not found: {path}")
        out[split] = path
    return out
