"""Greedy CTC decoding: best class per frame, merge repeats, drop blanks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asr.text import Vocabulary


@dataclass
class Hypothesis:
    """One decoding of one utterance.

    `labels` are our vocabulary's labels as emitted (blanks and repeats merged away, spaces
    kept), and `frames[i]` is the output frame where `labels[i]` was emitted: what word times
    and confidences are computed from (`asr.decoding.words`).
    """

    text: str
    labels: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0  # log-probability of the path (greedy), or the decoder's total score


def greedy_decode(log_probs: torch.Tensor, out_lens: torch.Tensor, vocab: Vocabulary) -> list[str]:
    """(B, T, C) log-probs and (B,) valid lengths -> one string per utterance."""
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    texts = []
    for path, length in zip(best.tolist(), out_lens.tolist(), strict=True):
        labels, prev = [], None
        for label in path[:length]:
            if label != prev and label != vocab.blank:
                labels.append(label)
            prev = label
        texts.append(" ".join(vocab.decode(labels).split()))
    return texts


class GreedyDecoder:
    """`decode=greedy`: the best path, with the frame of each emitted label."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def __call__(self, log_probs: torch.Tensor) -> list[Hypothesis]:
        """(T, C) log-probs of one utterance's real frames -> [its best path]."""
        best, label_of = log_probs.max(dim=-1)  # (T,), (T,)
        labels, frames, prev = [], [], None
        for t, label in enumerate(label_of.tolist()):
            if label != prev and label != self.vocab.blank:
                labels.append(label)
                frames.append(t)
            prev = label
        text = " ".join(self.vocab.decode(labels).split())
        return [Hypothesis(text, labels, frames, float(best.sum()))]
