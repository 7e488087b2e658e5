"""Greedy CTC decoding: best class per frame, merge repeats, drop blanks."""

from __future__ import annotations

import torch

from asr.text import Vocabulary


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
