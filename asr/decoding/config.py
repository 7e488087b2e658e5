"""The `decode` group's schema: greedy (the default) or a beam search with an n-gram LM.

The beam search has two modes, chosen by `unit`, the LM's unit:

- `char` (the default): lexicon-free, with a character n-gram. Any word can be spelled; the LM
  scores each character, the space included (`sil_score` is added per space). It holds on words
  the LM never saw, as real test sets have (docs/decoding.md shows the measurement).
- `word`: a lexicon (`auto`: the LM's words) and a word n-gram. Only lexicon words can come
  out, each scored by the LM and `word_score`: for closed-vocabulary tasks.

Every beam setting defaults to None, which means "the default of the mode" (`UNIT_DEFAULTS`,
then `BEAM_DEFAULTS`). A setting given where it has no effect is refused with one line
instead of silently doing nothing: any beam setting under `decode=greedy`, `lm_weight` without
an LM, `word_score`, `unk_score` and a lexicon with `unit=char`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from asr.lm import MAX_ORDER, UNITS

DECODERS = ("greedy", "beam")

# torchaudio's own defaults, except the beam threshold (25 keeps the default beam within the
# real-time budget on 2 cores; docs/decoding.md shows the measurement).
BEAM_DEFAULTS: dict[str, Any] = {
    "unit": "char",
    "beam_size": 50,
    "beam_size_token": None,  # every token
    "beam_threshold": 25.0,
    "lm": "auto",
    "lm_order": None,  # the mode's
    "lexicon": None,  # the mode's
    "lm_weight": None,  # the mode's
    "word_score": 0.0,
    "sil_score": 0.0,
    "unk_score": -math.inf,
    "nbest": 1,
}
# What differs between the modes. `char`: the weights dev picked for the quick-start checkpoint
# (docs/decoding.md), in the middle of a flat optimum; 10 tokens per frame decode the test split
# exactly as all 29 do, at half the time.
UNIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "char": {
        "lm_order": 6,
        "lexicon": "none",
        "lm_weight": 2.0,
        "sil_score": 1.0,
        "beam_size_token": 10,
    },
    "word": {"lm_order": 3, "lexicon": "auto", "lm_weight": 2.0},
}
WORD_ONLY = ("word_score", "unk_score")  # settings of the lexicon mode alone


@dataclass
class DecodeConfig:
    """`decode=greedy|beam|beam_lexicon` (Hydra group `decode`)."""

    name: str = "greedy"
    unit: str | None = None  # the LM's unit: char (lexicon-free) | word (with a lexicon)
    beam_size: int | None = None  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame (None: all)
    beam_threshold: float | None = None  # prune hypotheses this far below the best
    # An ARPA file or KenLM binary; "auto": an n-gram of the checkpoint's training transcripts
    # (what `python -m asr.lm build --ckpt` writes), built once and cached; "none": no LM.
    lm: str | None = None
    lm_order: int | None = None  # the order of the `auto` LM
    lexicon: str | None = None  # unit=word: a lexicon file or "auto" (the LM's words)
    lm_weight: float | None = None
    word_score: float | None = None  # unit=word, per word: > 0 favours more, shorter words
    sil_score: float | None = None  # added per silence (our space) token
    unk_score: float | None = None  # unit=word, per word outside the lexicon; -inf: never
    nbest: int | None = None  # hypotheses returned per utterance (transcribe.py can print them)

    def __post_init__(self) -> None:
        if self.name not in DECODERS:
            raise ValueError(f"name must be one of {'|'.join(DECODERS)} (got {self.name!r})")
        given = [
            f.name for f in fields(self) if f.name != "name" and getattr(self, f.name) is not None
        ]
        if self.name == "greedy":
            if given:
                raise ValueError(
                    f"{given[0]} is a beam-search setting and greedy decoding ignores it: "
                    "add decode=beam"
                )
            return
        if (self.unit or BEAM_DEFAULTS["unit"]) not in UNITS:
            raise ValueError(f"unit must be {'|'.join(UNITS)} (got {self.unit!r})")
        s = self.settings()
        for key in ("beam_size", "nbest"):
            if s[key] < 1:
                raise ValueError(f"{key} must be >= 1 (got {s[key]})")
        if not 2 <= s["lm_order"] <= MAX_ORDER:
            raise ValueError(
                f"lm_order must be in 2..{MAX_ORDER}: the KenLM of the decoder loads bigrams up "
                f"to {MAX_ORDER}-grams (got {s['lm_order']})"
            )
        for key in ("lm_weight", "sil_score", "beam_threshold", "word_score"):
            if key in s and not math.isfinite(s[key]):
                raise ValueError(f"{key} must be finite (got {s[key]})")
        if s["beam_size_token"] is not None and s["beam_size_token"] < 1:
            raise ValueError(f"beam_size_token must be >= 1 (got {s['beam_size_token']})")
        if s["lm"] == "none" and self.lm_weight is not None:
            raise ValueError("lm_weight has no effect without an LM (lm=none): drop it or give lm")
        if s["unit"] == "char":
            self._check_char()
        elif s["lexicon"] == "none":
            raise ValueError(
                "unit=word decodes lexicon words only and needs a lexicon (auto or a file); "
                "to decode without one, use unit=char"
            )
        elif s["lm"] == "none" and s["lexicon"] == "auto":
            raise ValueError("lexicon=auto takes the LM's words: give lm, or a lexicon file")

    def _check_char(self) -> None:
        for key in WORD_ONLY:
            if getattr(self, key) is not None:
                raise ValueError(
                    f"{key} has no effect with unit=char (lexicon-free decoding scores "
                    "characters only): drop it, or decode with unit=word"
                )
        if self.lexicon not in (None, "none"):
            raise ValueError(
                "a lexicon keeps the output to its words and unit=char decodes without one: "
                "drop decode.lexicon, or decode with unit=word"
            )

    @property
    def is_beam(self) -> bool:
        return self.name == "beam"

    def to_json(self) -> dict[str, Any]:
        """`settings()` with infinities as strings: JSON and W&B configs hold no -inf."""
        return {
            k: v if not isinstance(v, float) or math.isfinite(v) else str(v)
            for k, v in self.settings().items()
        }

    def settings(self) -> dict[str, Any]:
        """Every beam setting of the mode with the defaults filled in (what ran, for logs and
        reports); `unit=char` has no word-only settings."""
        out: dict[str, Any] = {"name": self.name}
        if not self.is_beam:
            return out
        unit = self.unit or BEAM_DEFAULTS["unit"]
        defaults = {**BEAM_DEFAULTS, **UNIT_DEFAULTS.get(unit, {})}
        for key, default in defaults.items():
            if unit == "char" and key in WORD_ONLY:
                continue
            value = getattr(self, key)
            out[key] = default if value is None else value
        return out
