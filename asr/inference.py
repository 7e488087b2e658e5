"""Run a model over a loader: greedy transcripts, loss, and how long it took; under DDP each
rank a shard of the batches, gathered back (`transcribe_shards`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from asr.data.dataset import Batch, Utterance
from asr.decoding.greedy import GreedyDecoder, Hypothesis, greedy_decode
from asr.metrics import cer, wer
from asr.text import Vocabulary

if TYPE_CHECKING:
    from asr.distributed import DDP as Collectives


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
    """CTC on (B, T, C) log-probs; `zero_infinity` so an impossible alignment cannot poison.

    `out_lens` and `target_lens` are best on the host: torch's CTC reads them there, and copies
    device ones back first (a sync). "mean" is torch's (each loss over its target length, then
    the batch mean), computed here so that no host-built tensor is copied to the device.
    """
    losses = F.ctc_loss(
        log_probs.transpose(0, 1).float(),  # (T, B, C), as ctc_loss wants
        targets,
        out_lens,
        target_lens,
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )  # (B,)
    if reduction == "none":
        return losses
    per_char = losses / target_lens.to(losses.device, non_blocking=True).clamp_min(1)
    return per_char.mean() if reduction == "mean" else per_char.sum()


@torch.inference_mode()  # no_grad, and no version counters or views tracked either
def transcribe(
    model: torch.nn.Module,
    loader: Iterable[Batch],
    vocab: Vocabulary,
    device: torch.device,
    *,
    with_loss: bool = True,
    decoder: Callable[[torch.Tensor], list[Hypothesis]] | None = None,
) -> Transcripts:
    """Transcripts of every batch (greedy, or `decoder`'s: `decode=beam` in training), and the
    CTC loss when `with_loss` (the dev evaluation reports it; evaluate.py does not need it).
    Lengths stay on the host."""
    model.eval()
    out = Transcripts()
    start = time.perf_counter()
    for batch in loader:
        out.problems += batch.problems
        if len(batch) == 0:
            continue
        feats = batch.feats.to(device, non_blocking=True)  # (B, F, T)
        log_probs, out_lens = model(feats, batch.feat_lens)  # (B, T', C), (B,) on the host
        if with_loss:
            targets = batch.targets.to(device, non_blocking=True)
            losses = ctc_loss(log_probs, out_lens, targets, batch.target_lens, vocab.blank, "sum")
            out.loss_sum += float(losses)  # per target character, as "mean" does
        if decoder is None or isinstance(decoder, GreedyDecoder):
            out.hypotheses += greedy_decode(log_probs, out_lens, vocab)  # batched: faster
        else:
            rows = log_probs.float().cpu()
            out.hypotheses += [
                decoder(r[:n])[0].text for r, n in zip(rows, out_lens.tolist(), strict=True)
            ]
        out.utts += batch.utts
        out.audio_seconds += batch.audio_seconds
    out.seconds = time.perf_counter() - start
    return out


def transcribe_shards(
    model: torch.nn.Module,
    loader: Iterable[Batch],
    vocab: Vocabulary,
    device: torch.device,
    ranks: Collectives,
    *,
    with_loss: bool = True,
    decoder: Callable[[torch.Tensor], list[Hypothesis]] | None = None,
) -> Transcripts:
    """`transcribe` over this rank's shard of the batches (`asr.data.loader.shard_batches`),
    gathered into the whole split's result on every rank.

    Batches are put back into the order one process uses, so the WER/CER are the numbers a
    single process computes, and the loss is summed in the same order too.
    """
    if not ranks.enabled:
        return transcribe(model, loader, vocab, device, with_loss=with_loss, decoder=decoder)
    start = time.perf_counter()
    mine = [
        transcribe(model, [b], vocab, device, with_loss=with_loss, decoder=decoder) for b in loader
    ]
    gathered = ranks.all_gather((mine, time.perf_counter() - start))
    parts = [p for p, _ in gathered]
    out = Transcripts(seconds=max(s for _, s in gathered))  # the slowest rank's wall time
    world = len(parts)
    for i in range(sum(len(p) for p in parts)):  # global batch i is on rank i % world
        part = parts[i % world][i // world]
        out.utts += part.utts
        out.hypotheses += part.hypotheses
        out.loss_sum += part.loss_sum
        out.audio_seconds += part.audio_seconds
        out.problems += part.problems
    return out
