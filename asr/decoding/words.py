"""Words with times and confidences, from a hypothesis's labels and the frames they came at."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from asr.decoding.greedy import Hypothesis
from asr.text import SPACE, Vocabulary


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the recording
    end: float
    confidence: float  # mean over its characters of the model's probability at their frame

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def words_of(
    hyp: Hypothesis,
    log_probs: torch.Tensor,
    vocab: Vocabulary,
    *,
    frame_seconds: float,
    offset_frames: int = 0,
) -> list[Word]:
    """Split `hyp` at spaces into words. A word starts at the frame of its first character and
    ends one frame after its last (CTC emits a character as a spike, not a span), so times are
    exact to a frame. `log_probs` (T, C) are the frames `hyp` was decoded from."""
    space = vocab.symbols.index(SPACE) if SPACE in vocab.symbols else -1
    words: list[Word] = []
    chars: list[tuple[int, int]] = []  # (label, frame) of the current word
    for label, frame in [*zip(hyp.labels, hyp.frames, strict=True), (space, -1)]:
        if label != space:
            chars.append((label, frame))
            continue
        if chars:
            probs = [math.exp(float(log_probs[f, lab])) for lab, f in chars]
            words.append(
                Word(
                    word=vocab.decode([lab for lab, _ in chars]),
                    start=(chars[0][1] + offset_frames) * frame_seconds,
                    end=(chars[-1][1] + 1 + offset_frames) * frame_seconds,
                    confidence=sum(probs) / len(probs),
                )
            )
        chars = []
    return words
