"""One training step (`train_step`), what it leaves behind, kept where the step ran, and how a
bad step is undone there: the pieces that let a CUDA step run without ever waiting for the host.

A step's loss, gradient norm and finiteness stay on the device (`StepResult`). `DeviceTally`
adds them up, step after step, with device operations only; the trainer reads it once per log
window (`trainer.log_every_steps`) and at each checkpoint, which is also where it decides that
too many non-finite steps in a row end the run. `skip_if_nonfinite` steps the optimizer or
leaves weights and optimizer state untouched, decided on the device, the way GradScaler and
the fused optimizers' `found_inf` do it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from asr.data.dataset import Batch
from asr.distributed import Vote
from asr.inference import ctc_loss


@dataclass
class StepResult:
    """One step, as 0-d tensors on the training device: reading one is a host sync."""

    loss: Tensor  # the (global, under DDP) batch's mean loss
    grad_norm: Tensor  # before clipping
    finite: Tensor  # bool; False: the step was skipped, weights and optimizer state untouched
    audio_seconds: float | Tensor  # trained on in this step (by all ranks, under DDP)


def skip_if_nonfinite(optimizer: torch.optim.Optimizer, finite: Tensor) -> None:
    """`optimizer.step()` when `finite`, else nothing at all: not the weights, the moments, nor
    the step count.

    Fused Adam/AdamW/SGD take the decision on the device (`found_inf`). Other optimizers have
    no such input, so their step waits for the host to read `finite`: a sync, which is why
    `optim.fused` is the default.
    """
    if optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()  # read by the fused kernels
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif bool(finite):
        optimizer.step()


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    blank: int,
    grad_clip: float,
    device: torch.device,
    *,
    autocast: contextlib.AbstractContextManager | None = None,
    vote: Callable[..., Vote] | None = None,
    loss_fn: Callable[..., Tensor] = ctc_loss,
) -> StepResult:
    """One optimizer step on a batch; a non-finite loss or gradient skips it entirely.

    Nothing here reads a device value on the host: lengths stay on the host (where the
    collate made them), and whether the step was finite is decided on the device
    (`skip_if_nonfinite`). Under DDP, `vote` agrees on the step with the other ranks before
    the backward pass (see `DDP.vote`): the loss is then the global batch's, and one rank's
    non-finite loss skips the step on every rank. `loss_fn` is `asr.inference.ctc_loss`'s
    signature: (log_probs, out_lens, targets, target_lens, blank) -> mean loss.
    """
    model.train()
    # non_blocking: with pinned batches (CUDA) the copies overlap the work already queued.
    feats = batch.feats.to(device, non_blocking=True)  # (B, F, T)
    targets = batch.targets.to(device, non_blocking=True)  # (B, S)
    with autocast or contextlib.nullcontext():
        log_probs, out_lens = model(feats, batch.feat_lens)  # (B, T', C), (B,) on the host
    loss = loss_fn(log_probs, out_lens, targets, batch.target_lens, blank)
    reported, audio_seconds = loss.detach(), batch.audio_seconds
    if vote is not None:
        agreed = vote(reported, len(batch), audio_seconds)
        reported, audio_seconds = agreed.loss, agreed.audio_seconds
        loss = loss * agreed.scale  # unequal batch sizes across ranks; 0 when skipping
    loss.backward()  # under DDP, also averages the gradients over the ranks
    # Averaged gradients are equal on every rank, so their norm and finiteness are too.
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    finite = torch.isfinite(reported) & torch.isfinite(grad_norm)
    skip_if_nonfinite(optimizer, finite)
    optimizer.zero_grad(set_to_none=True)
    return StepResult(reported, grad_norm, finite, audio_seconds)


@dataclass
class TallyReading:
    """What the steps since the last reading added up to, read on the host."""

    loss_sum: float  # over finite steps
    finite_steps: int
    nonfinite_steps: int
    streak: int  # non-finite steps in a row at the last step
    worst_streak: int  # the longest such run since the last reading
    last_loss: float
    last_grad_norm: float
    audio_seconds: float


class DeviceTally:
    """Sums of the steps since the last `read`, as one small tensor on the training device."""

    # slots of the tensor
    LOSS, FINITE, NONFINITE, STREAK, WORST, LAST_LOSS, LAST_NORM, AUDIO = range(8)

    def __init__(self, device: torch.device, streak: int = 0) -> None:
        self.sums = torch.zeros(8, dtype=torch.float64, device=device)
        self.sums[self.STREAK] = streak  # a resumed run continues its streak

    def add(self, result: StepResult) -> None:
        """Device operations only: no host read."""
        s, ok = self.sums, result.finite
        s[self.LOSS] += torch.where(ok, result.loss.double(), 0.0)
        s[self.FINITE] += ok.double()
        s[self.NONFINITE] += (~ok).double()
        s[self.STREAK] = torch.where(ok, 0.0, s[self.STREAK] + 1)
        s[self.WORST] = torch.maximum(s[self.WORST], s[self.STREAK])
        s[self.LAST_LOSS] = result.loss.double()
        s[self.LAST_NORM] = result.grad_norm.double()
        s[self.AUDIO] += result.audio_seconds

    def unread_audio_seconds(self) -> float:
        """Audio trained on since the last reading, leaving the sums as they are (a host sync:
        for moments that sync anyway, such as an evaluation)."""
        return float(self.sums[self.AUDIO])

    def read(self) -> TallyReading:
        """The sums since the last reading (one host sync), then start the next ones."""
        v = self.sums.tolist()
        streak = v[self.STREAK]
        self.sums.zero_()
        self.sums[self.STREAK] = streak
        self.sums[self.WORST] = streak
        return TallyReading(
            loss_sum=v[self.LOSS],
            finite_steps=int(v[self.FINITE]),
            nonfinite_steps=int(v[self.NONFINITE]),
            streak=int(streak),
            worst_streak=int(v[self.WORST]),
            last_loss=v[self.LAST_LOSS],
            last_grad_norm=v[self.LAST_NORM],
            audio_seconds=v[self.AUDIO],
        )


@dataclass
class LogWindow:
    """The host's side of a log window: what the readings since the last log line add up to,
    and the training time they took (evaluations and checkpoints excluded)."""

    start: float  # time.perf_counter() when the window opened
    paused: float = 0.0  # seconds inside the window that were not training
    loss_sum: float = 0.0
    finite_steps: int = 0
    audio_seconds: float = 0.0

    def add(self, reading: TallyReading) -> None:
        self.loss_sum += reading.loss_sum
        self.finite_steps += reading.finite_steps
        self.audio_seconds += reading.audio_seconds

    def pause(self, seconds: float) -> None:
        """Leave out time that was not training (an evaluation, a checkpoint)."""
        self.paused += seconds

    def speed(self, now: float) -> float:
        """Audio seconds trained on per second of training time."""
        return self.audio_seconds / max(now - self.start - self.paused, 1e-9)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.finite_steps if self.finite_steps else math.nan
