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
]


def make_decoder(
    cfg: DecodeConfig,
    vocab: Vocabulary,
    *,
    auto_lm: Callable[[int], Path] | None = None,
    work_dir: Path,
) -> GreedyDecoder | BeamDecoder:
    """The decoder `cfg` names. `auto_lm(order)` gives the path of `decode.lm=auto`'s LM
    (built on first use); `work_dir` holds files the decoder derives (the `auto` lexicon)."""
    if not cfg.is_beam:
        return GreedyDecoder(vocab)
    from asr.decoding.beam import BeamDecoder  # needs the [decode] extra

    return BeamDecoder(cfg, vocab, auto_lm=auto_lm, work_dir=work_dir)
