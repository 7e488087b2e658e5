"""Run a model over a loader: greedy transcripts, loss, and how long it took."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from asr.data.dataset import Utterance
from asr.decode import greedy_decode
from asr.metrics import cer, wer
from asr.text import Vocabulary


@dataclass
class Transcripts:
    utts: list[Utterance] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    loss_sum: float = 0.0
    audio_seconds: float = 0.0
    seconds: float = 0.0  # wall time: audio loading, features, model and decoding
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # from the batches

    @property
    def references(self) -> list[str]:
        return [u.text for u in self.utts]

    @property
    def cer(self) -> float:
        return cer(self.references, self.hypotheses)

    @property
    def wer(self) -> float:
        return wer(self.references, self.hypotheses)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(len(self.utts), 1)

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (lower is faster)."""
        return self.seconds / max(self.audio_seconds, 1e-9)


def ctc_loss(
    log_probs: torch.Tensor,
    out_lens: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
    blank: int,
    reduction: str = "mean",
) -> torch.Tensor:
    """CTC on (B, T, C) log-probs; `zero_infinity` so an impossible alignment cannot poison."""
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),  # (T, B, C), as ctc_loss wants
        targets,
        out_lens,
        target_lens,
        blank=blank,
        reduction=reduction,
        zero_infinity=True,
    )


@torch.inference_mode()  # no_grad, and no version counters or views tracked either
def transcribe(
    model: torch.nn.Module, loader: DataLoader, vocab: Vocabulary, device: torch.device
) -> Transcripts:
    model.eval()
    out = Transcripts()
    start = time.perf_counter()
    for batch in loader:
        out.problems += batch.problems
        if len(batch) == 0:
            continue
        feats, feat_lens = batch.feats.to(device), batch.feat_lens.to(device)
        log_probs, out_lens = model(feats, feat_lens)  # (B, T', C), (B,)
        target_lens = batch.target_lens.to(device)
        losses = ctc_loss(
            log_probs, out_lens, batch.targets.to(device), target_lens, vocab.blank, "none"
        )
        out.loss_sum += float((losses / target_lens.clamp(min=1)).sum())  # as "mean" does
        out.hypotheses += greedy_decode(log_probs, out_lens, vocab)
        out.utts += batch.utts
        out.audio_seconds += batch.audio_seconds
    out.seconds = time.perf_counter() - start
    return out
