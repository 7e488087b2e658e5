"""The trainer: `Trainer(cfg, run_dir).run() -> best dev CER`.

    Trainer.__init__      set-up: ranks, device, data, model, optimizer, resume (asr.resume)
    Trainer.run           epochs until a budget, a signal or patience stops them; then `finish`
    Trainer.run_epoch     for each batch: `train_step`, then log / evaluate / save when due
    train_step            (asr.step) CTC -> backward -> clip -> optimizer step, skipped on the
                          device if anything is non-finite: no host read on CUDA
    Trainer.log_window    once per trainer.log_every_steps: the step's numbers reach the host
    Trainer.evaluate_dev  dev WER/CER -> best.pt, last.pt
    Trainer.save          a self-describing checkpoint, written atomically
    Trainer.finish        best.pt on test -> summary.json, W&B

Exact resume: a run killed at any moment (even SIGKILL) and restarted with the same command
ends with the same weights, bit for bit, as one that never stopped (with step or epoch
budgets): everything a step depends on is in the checkpoint (weights, optimizer, counters,
every RNG) or a pure function of (seed, epoch, position), such as the batch order and
SpecAugment's masks; nothing else draws from the global RNG that dropout uses.

Signals (asr.cluster): SIGTERM and Ctrl-C save last.pt and stop; the scheduler's warning
(USR2) saves last.pt and has the job requeued, to resume in the same run directory.

Under DDP (`torchrun --nproc_per_node=N train.py`, or Slurm tasks; see asr.distributed) each
rank trains on its own shard of the batches; every decision that ends, skips or saves a step
is taken by all ranks together (the methods named `ranks_...`), and rank 0 alone writes the
checkpoints, metrics, summary and W&B run. Each rank's RNG state is saved, so a resume with
the same number of ranks is exact too.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import torch
from tqdm import tqdm

from asr import checkpoint, distributed
from asr.budget import Budget
from asr.cluster import RunInterrupted, StopFlag
from asr.data.dataset import Batch
from asr.disk import warn_if_low
from asr.inference import Transcripts, ctc_loss, transcribe_shards
from asr.optim import lr_at, set_lr
from asr.precision import configure_precision, pick_device
from asr.resume import Counters
from asr.run_log import NonFiniteError, RunLog
from asr.run_parts import build_run_parts
from asr.schema import TrainConfig
from asr.step import StepResult, TallyReading, train_step
from asr.tracking import NullTracker, Tracker

__all__ = ["Counters", "NonFiniteError", "RunInterrupted", "StepResult", "Trainer", "train"]


def train(cfg: TrainConfig, run_dir: str | Path, overrides: list[str] | None = None) -> float:
    """Train (or resume) the run in `run_dir`; return its best dev CER."""
    return Trainer(cfg, run_dir, overrides=overrides).run()


class Trainer:
    """One training run; see the module docstring for its parts."""

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, *, overrides: list[str] | None = None
    ) -> None:
        self.cfg, self.t = cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        wall_start = time.time()
        self.ddp = distributed.setup()  # one process, or this rank of a DDP job
        self.device = self.ddp.bind(pick_device(self.t.device))
        self.autocast = configure_precision(self.t.precision, self.device)
        if self.t.num_threads:
            torch.set_num_threads(self.t.num_threads)
        parts = build_run_parts(cfg, self.run_dir, ddp=self.ddp, device=self.device)
        self.vocab, self.model, self.data = parts.vocab, parts.model, parts.data
        self.train_model, self.optimizer = parts.train_model, parts.optimizer
        self.decoder, self.counters, self.n_params = parts.decoder, parts.counters, parts.n_params
        self.run_id, self.resume_from = parts.run_id, parts.resume_from
        self.report = self.data.report  # loading the audio adds to it
        self.train_loader, self.train_sampler = self.data.train_loader, self.data.train_sampler
        self.eval_loaders = self.data.eval_loaders
        self.meta = checkpoint.run_meta(cfg, overrides, self.vocab, self.data.manifests)
        self.budget = Budget(self.t, self.counters)
        self.log = RunLog(
            device=self.device,
            counters=self.counters,
            report=self.report,
            elapsed=self.budget.elapsed,
            n_samples=self.t.n_samples_logged,
            fail_after=self.t.max_nonfinite_steps,
            ddp=self.ddp,
            wall_start=wall_start,
        )
        self.stop = StopFlag()
        self.clock_save_due = False
        self.budget.batches_this_epoch = self._batches_in(self.counters.epoch)

    @property
    def tracker(self) -> Tracker | NullTracker:
        return self.log.tracker

    def _batches_in(self, epoch: int) -> int:  # with data.batch_seconds, they vary by epoch
        return max(len(self.train_sampler.batches(epoch)), 1)

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> float:
        """Train until a budget, a signal or patience says stop; then test best.pt."""
        n_utts = len(self.data.utts["train"])
        meta, run_id = self.meta, self.run_id
        if self.ddp.is_main:  # said now rather than at the first save
            warn_if_low(self.run_dir, checkpoint_bytes=checkpoint.estimated_bytes(self.model))
        with self.log.start(self.run_dir, self.cfg.logger, meta, run_id, self.n_params, n_utts):
            with self.stop:
                done = self.ranks_agree_to_stop()
                while not done:
                    done = self.run_epoch()
                self.ranks_agree_to_stop()  # the same, before choosing how the run ends
                if self.stop.agreed is not None:
                    self._stop_interrupted()
            self.finish()
        return self.counters.best_dev_cer

    def run_epoch(self) -> bool:
        """Train on the rest of the current epoch; True when the run should stop."""
        c = self.counters
        # Both are pure functions of (seed, epoch): resuming mid-epoch skips exactly the
        # batches already trained on, and the rest get the same SpecAugment masks.
        self.train_sampler.set_epoch(c.epoch, c.batch_in_epoch)
        self.train_loader.dataset.set_epoch(c.epoch)
        self.budget.batches_this_epoch = self._batches_in(c.epoch)
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {c.epoch}",
            leave=False,
            dynamic_ncols=True,
            disable=not self.ddp.is_main,
        )
        step_start = time.perf_counter()
        for batch in bar:
            c.batch_in_epoch += 1
            self.log.note_problems(batch.problems)
            skip, step_progress = self.ranks_agree_to_skip(batch)
            if skip:
                continue
            lr = lr_at(step_progress, self.cfg.optim)
            set_lr(self.optimizer, lr)
            result = train_step(
                self.train_model,
                self.optimizer,
                batch,
                self.vocab.blank,
                self.t.grad_clip,
                self.device,
                autocast=self.autocast,
                vote=self.ddp.vote if self.ddp.enabled else None,
                loss_fn=ctc_loss,  # this module's, looked up at each step
            )
            self.log.add(result)
            c.step += 1
            c.train_seconds += time.perf_counter() - step_start
            if c.step % self.t.log_every_steps == 0:
                self.log_window(lr, bar)
            if self.after_step():
                bar.close()
                return True
            step_start = time.perf_counter()
        bar.close()
        return self.end_epoch()

    def after_step(self) -> bool:
        """Evaluate and save when due; True when the run should stop."""
        c, t = self.counters, self.t
        stop = self.ranks_agree_to_stop()
        if not stop and t.eval_every_steps and c.step % t.eval_every_steps == 0:
            self.evaluate_dev()
            stop = self.budget.patience_out()
        elif not stop and self.budget.save_is_due(clock_due=self.clock_save_due):
            paused = time.perf_counter()
            self.save("last.pt")
            self.log.pause(time.perf_counter() - paused)
        return stop

    def end_epoch(self) -> bool:
        """The epoch ran to its end: dev evaluation, then the next epoch. Stopped by a signal,
        the epoch-end work (the evaluation) is left to the resumed run, which finds this epoch
        with no batch left and does it first, as a run that never stopped would have. Agree
        first: a signal may have reached one rank since the last step's vote."""
        c = self.counters
        if self.ranks_agree_to_stop() and self.stop.agreed is not None:
            return True
        c.epoch += 1
        c.batch_in_epoch = 0
        if c.last_eval_step != c.step:
            self.evaluate_dev()
        return self.ranks_agree_to_stop() or self.budget.patience_out()

    # ---- decisions ----------------------------------------------------------------------------

    def ranks_agree_to_skip(self, batch: Batch) -> tuple[bool, float]:
        """Every rank takes each step or none does (a batch whose utterances were all unusable
        on one rank skips it everywhere), at the same progress, hence learning rate."""
        empty, step_progress = self.ddp.max(len(batch) == 0, self.budget.progress())
        return empty > 0, step_progress

    def ranks_agree_to_stop(self) -> bool:
        """A budget spent or a signal received, agreed by all ranks: a rank that stopped alone
        would leave the others waiting for it forever (max_minutes reads each rank's clock, and
        a signal may reach one rank only). The same collective agrees on `clock_save_due`."""
        own = signal.Signals[self.stop.signal].value if self.stop.signal else 0
        b = self.budget
        spent, signum, clock = self.ddp.max(b.progress() >= 1.0, own, b.clock_says_save())
        self.clock_save_due = clock > 0
        if signum and self.stop.agreed is None:
            self.stop.agreed = signal.Signals(int(signum)).name
            if self.stop.signal is None:  # received by another rank
                tqdm.write(
                    f"stop: {self.stop.agreed} reached another rank; "
                    f"stopping at step {self.counters.step}"
                )
        return spent > 0 or self.stop.agreed is not None

    # ---- logging ------------------------------------------------------------------------------

    def read_tally(self) -> TallyReading:
        """The device's sums on the host; fails the run after too many non-finite steps."""
        return self.log.read()

    def log_window(self, lr: float, bar: tqdm) -> None:
        """Once per `trainer.log_every_steps`: the one place a step's numbers reach the host."""
        self.log.train_row(self.read_tally(), lr, bar)

    # ---- evaluation and checkpoints -----------------------------------------------------------

    def evaluate_dev(self) -> Transcripts | None:
        """Dev CER/WER, best.pt when it improved, and last.pt either way."""
        c, started = self.counters, time.perf_counter()
        c.last_eval_step = c.step
        if "dev" not in self.eval_loaders:
            self.save("last.pt")
            return None
        dev = self.transcribe("dev")
        improved = dev.cer < c.best_dev_cer
        c.evals_since_best = 0 if improved else c.evals_since_best + 1
        if improved:
            c.best_dev_cer, c.best_dev_wer = dev.cer, dev.wer
        self.log.dev_row(dev, improved=improved)
        self.tracker.update_summary(best_dev_cer=c.best_dev_cer, best_dev_wer=c.best_dev_wer)
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        self.log.pause(time.perf_counter() - started)  # evaluating is not training
        return dev

    def save(self, name: str) -> None:
        """A checkpoint that rebuilds the run on its own: weights, optimizer, counters, every
        rank's RNG, the resolved config, vocabulary, W&B id and provenance. Rank 0 writes it."""
        self.read_tally()  # the non-finite counters in the checkpoint are exact
        self.counters.elapsed_seconds = self.budget.elapsed()
        rng = checkpoint.rng_state()
        rng_ranks = self.ddp.all_gather(rng)  # every rank's, for an exact resume
        self.budget.saved()
        if not self.ddp.is_main:
            return
        state = checkpoint.training_state(
            model=self.model,
            optimizer=self.optimizer,
            counters=dataclasses.asdict(self.counters),
            rng_ranks=rng_ranks if self.ddp.enabled else [rng],
            wandb_run_id=self.tracker.run_id,
            n_params=self.n_params,
            meta=self.meta,
        )
        checkpoint.save_atomic(state, self.run_dir / name)

    # ---- the end ------------------------------------------------------------------------------

    def finish(self) -> None:
        """Dev once more if the last step was not evaluated, then best.pt on test."""
        c = self.counters
        if c.last_eval_step != c.step:
            self.evaluate_dev()  # also saves last.pt
        self.ddp.barrier()  # rank 0 has finished writing best.pt
        if (self.run_dir / "best.pt").is_file():
            best = checkpoint.load(self.run_dir / "best.pt", trust=self.cfg.trust_checkpoint)
            self.model.load_state_dict(best["model"])
        final = self.log.summary()
        if "test" in self.eval_loaders:
            final.update(self.log.test_row(self.transcribe("test", with_loss=False)))
        self.tracker.update_summary(**final)
        self.tracker.finish("ok")
        print(f"data: skipped {self.report.summary()}")
        print(
            f"done: best dev CER {c.best_dev_cer:.4f}; summary in {self.run_dir / 'summary.json'}"
        )

    def transcribe(self, split: str, *, with_loss: bool = True) -> Transcripts:
        """`split` decoded by this run's decoder, each rank a shard of the batches."""
        loader = self.eval_loaders[split]
        return transcribe_shards(
            self.model,
            loader,
            self.vocab,
            self.device,
            self.ddp,
            with_loss=with_loss,
            decoder=self.decoder,
        )

    def _stop_interrupted(self) -> None:
        """A signal stopped the run: save last.pt, record why, have the job requeued when the
        signal was the scheduler's warning (asr.cluster), and raise RunInterrupted."""
        self.save("last.pt")
        name, step = self.stop.agreed, self.counters.step
        self.tracker.update_summary(**self.log.summary(), signal=name)
        self.tracker.finish("interrupted", error=f"stopped by {name}; resume with the same run dir")
        saved = f"saved {self.run_dir / 'last.pt'} at step {step}"
        if self.stop.warned and self.ddp.is_main:
            print(f"stop: {name}, the scheduler's warning: {saved}; requeueing", flush=True)
            saved += f"; {self.stop.requeue()}"
        raise RunInterrupted(f"stopped by {name}: {saved}")
