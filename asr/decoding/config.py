"""The `decode` group's schema: greedy (the default) or a beam search with a word LM.

Every beam setting defaults to None, which means "the default in `BEAM_DEFAULTS`". A setting
given where it has no effect is refused with one line instead of silently doing nothing:

- any beam setting under `decode=greedy`;
- `lm_weight` without an LM;
- `word_score` and `unk_score` without a lexicon: torchaudio's decoder then treats the LM as a
  character LM and drops both (see docs/decoding.md, "Which settings matter").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

DECODERS = ("greedy", "beam")
LEXICON_MODES = ("auto", "none")  # or a path to a lexicon file

# torchaudio's own defaults, except the beam threshold (25 keeps the default beam within the
# real-time budget on 2 cores; docs/decoding.md shows the measurement).
BEAM_DEFAULTS: dict[str, Any] = {
    "beam_size": 50,
    "beam_size_token": None,  # every token
    "beam_threshold": 25.0,
    "lm": "auto",
    "lm_order": 3,
    "lexicon": "auto",
    "lm_weight": 2.0,
    "word_score": 0.0,
    "sil_score": 0.0,
    "unk_score": -math.inf,
    "nbest": 1,
}


@dataclass
class DecodeConfig:
    """`decode=greedy|beam` (Hydra group `decode`)."""

    name: str = "greedy"
    beam_size: int | None = None  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens tried per frame (None: all)
    beam_threshold: float | None = None  # prune hypotheses this far below the best
    # An ARPA file or KenLM binary; "auto": an n-gram of the checkpoint's training transcripts
    # (what `python -m asr.lm build --ckpt` writes), built once and cached; "none": no LM.
    lm: str | None = None
    lm_order: int | None = None  # the order of the `auto` LM
    lexicon: str | None = None  # a lexicon file, "auto" (the LM's words) or "none"
    lm_weight: float | None = None
    word_score: float | None = None  # added per word: > 0 favours more, shorter words
    sil_score: float | None = None  # added per silence (our space) token
    unk_score: float | None = None  # per word outside the lexicon; -inf: never
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
        s = self.settings()
        for key in ("beam_size", "nbest"):
            if s[key] < 1:
                raise ValueError(f"{key} must be >= 1 (got {s[key]})")
        if s["lm_order"] < 2:
            raise ValueError(
                f"lm_order must be >= 2: KenLM loads bigrams and up (got {s['lm_order']})"
            )
        for key in ("lm_weight", "word_score", "sil_score", "beam_threshold"):
            if not math.isfinite(s[key]):
                raise ValueError(f"{key} must be finite (got {s[key]})")
        if s["beam_size_token"] is not None and s["beam_size_token"] < 1:
            raise ValueError(f"beam_size_token must be >= 1 (got {s['beam_size_token']})")
        if s["lm"] == "none" and self.lm_weight is not None:
            raise ValueError("lm_weight has no effect without an LM (lm=none): drop it or give lm")
        if s["lm"] == "none" and s["lexicon"] == "auto":
            raise ValueError("lexicon=auto takes the LM's words: give lm, or a lexicon file")
        if s["lexicon"] == "none":
            for key in ("word_score", "unk_score"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"{key} has no effect without a lexicon (lexicon=none): torchaudio's "
                        "decoder then scores characters only; give lexicon=auto or a file"
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
        """Every beam setting with the defaults filled in (what ran, for logs and reports)."""
        out = {"name": self.name}
        if self.is_beam:
            for key, default in BEAM_DEFAULTS.items():
                value = getattr(self, key)
                out[key] = default if value is None else value
        return out
