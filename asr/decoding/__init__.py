"""From log-probs to text: greedy or beam search (`decode` group), word times, and the cache
of log-probs that makes tuning a decoder cost decoding time only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from asr.decoding.config import BEAM_DEFAULTS, DecodeConfig
from asr.decoding.greedy import GreedyDecoder, Hypothesis, greedy_decode
from asr.text import Vocabulary

if TYPE_CHECKING:
    from asr.decoding.beam import BeamDecoder

__all__ = [
    "BEAM_DEFAULTS",
    "DecodeConfig",
    "GreedyDecoder",
    "Hypothesis",
    "greedy_decode",
    "make_decoder",
    "make_run_decoder",
]


def make_decoder(
    cfg: DecodeConfig,
    vocab: Vocabulary,
    *,
    auto_lm: Callable[[int, str], Path] | None = None,
    work_dir: Path,
) -> GreedyDecoder | BeamDecoder:
    """The decoder `cfg` names. `auto_lm(order, unit)` gives the path of `decode.lm=auto`'s LM
    (built on first use); `work_dir` holds files the decoder derives (the `auto` lexicon, the
    token list of a character LM)."""
    if not cfg.is_beam:
        return GreedyDecoder(vocab)
    from asr.decoding.beam import BeamDecoder  # needs the [decode] extra

    return BeamDecoder(cfg, vocab, auto_lm=auto_lm, work_dir=work_dir)


def make_run_decoder(
    cfg: DecodeConfig,
    vocab: Vocabulary,
    *,
    language: str,
    train_manifest: Callable[[], Path],
    cache_dir: Path,
) -> GreedyDecoder | BeamDecoder:
    """`make_decoder` for a run's data: `lm=auto` is an n-gram of `train_manifest()`'s
    transcripts, built once into `cache_dir/lm`; derived files go to `cache_dir/decode`."""
    from asr.lm import cached_lm

    def auto_lm(order: int, unit: str) -> Path:
        manifest = train_manifest()
        return cached_lm(
            manifest, order=order, language=language, vocab=vocab, cache_dir=cache_dir, unit=unit
        )

    return make_decoder(cfg, vocab, auto_lm=auto_lm, work_dir=cache_dir / "decode")
