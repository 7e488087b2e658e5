"""Corpus-level WER and CER with jiwer, reference first (the seed swapped the arguments)."""

from __future__ import annotations

import jiwer


def _check(references: list[str], hypotheses: list[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references or any(not r.strip() for r in references):
        raise ValueError("references must be non-empty strings (empty ones are filtered earlier)")


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word errors over all reference words: an empty hypothesis counts as all deletions."""
    _check(references, hypotheses)
    return float(jiwer.wer(references, hypotheses))


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Character errors (spaces included) over all reference characters."""
    _check(references, hypotheses)
    return float(jiwer.cer(references, hypotheses))


def utterance_cer(reference: str, hypothesis: str) -> float:
    return float(jiwer.cer(reference, hypothesis))
