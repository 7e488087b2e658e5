"""How much of a run's budget is spent, and when it is due to save or to stop early.

The budgets are `trainer.max_steps`, `max_epochs` and `max_minutes`, whichever ends first; the
learning rate follows the largest fraction spent (`asr.optim.progress`). The clock counts the
training loop's wall time across resumes (the checkpoint carries what earlier sessions spent).
Every answer here is this process's own: under DDP the trainer agrees on them with the other
ranks (`Trainer.ranks_agree_to_stop`), because each rank reads its own clock.
"""

from __future__ import annotations

import time

from asr.optim import progress
from asr.resume import Counters
from asr.schema import TrainerConfig

__all__ = ["Budget"]


class Budget:
    def __init__(self, trainer: TrainerConfig, counters: Counters) -> None:
        self.t, self.counters = trainer, counters
        self.elapsed_before = counters.elapsed_seconds  # earlier sessions of this run
        self.session_start = self.last_saved = time.perf_counter()
        self.batches_this_epoch = 1  # this rank's; with data.batch_seconds they vary by epoch

    def elapsed(self) -> float:
        """Seconds of the training loop so far, evaluations included (max_minutes)."""
        return self.elapsed_before + time.perf_counter() - self.session_start

    def progress(self) -> float:
        """The largest fraction of any budget used (1.0: over); the learning rate follows it."""
        c, t = self.counters, self.t
        epochs = c.epoch + c.batch_in_epoch / self.batches_this_epoch
        minutes = self.elapsed() / 60
        return progress(c.step, epochs, minutes, t.max_steps, t.max_epochs, t.max_minutes)

    def clock_says_save(self) -> bool:
        """`trainer.checkpoint_every_minutes` have passed since the last save."""
        every = self.t.checkpoint_every_minutes
        return bool(every) and (time.perf_counter() - self.last_saved) / 60 >= every

    def saved(self) -> None:
        self.last_saved = time.perf_counter()

    def save_is_due(self, *, clock_due: bool) -> bool:
        """last.pt between evaluations: every `trainer.checkpoint_every_steps` steps, or when
        the clock says so (`clock_due`, as all ranks agreed: saving gathers every rank's RNG).
        Not when the epoch's end, which evaluates and saves, comes right after."""
        c, every = self.counters, self.t.checkpoint_every_steps
        by_steps = bool(every) and c.step % every == 0
        return (
            (by_steps or clock_due)
            and c.last_eval_step != c.step
            and c.batch_in_epoch < self.batches_this_epoch
        )

    def patience_out(self) -> bool:
        """Early stopping: `trainer.patience` dev evaluations in a row without a better CER."""
        return bool(self.t.patience) and self.counters.evals_since_best >= self.t.patience
