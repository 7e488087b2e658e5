"""The trainer: `Trainer(cfg, run_dir).run() -> best dev CER`.

    Trainer.__init__      set-up: ranks, device, data, model, optimizer, resume state
    Trainer.run           epochs until a budget, a signal or patience stops them; then `finish`
    Trainer.run_epoch     for each batch: `train_step`, then log / evaluate / save when due
    train_step            (asr.step) CTC -> backward -> clip -> optimizer step, skipped on the
                          device if anything is non-finite: no host read on CUDA
    Trainer.log_window    once per trainer.log_every_steps: the step's numbers reach the host
    Trainer.evaluate_dev  dev WER/CER -> best.pt, last.pt
    Trainer.save          a self-describing checkpoint, written atomically
    Trainer.finish        best.pt on test -> summary.json, W&B

Exact resume: a run killed at any moment (even SIGKILL) and restarted with the same command
continues from its last checkpoint and ends with the same weights, bit for bit, as a run that
never stopped (with step or epoch budgets; a max_minutes budget depends on the clock). That
holds because everything a step depends on is either in the checkpoint (weights, optimizer,
counters, torch's global RNG, which dropout draws from) or a pure function of (seed, epoch,
position): the batch order (BucketBatchSampler), SpecAugment's masks (SpeechDataset), and
nothing else draws from the global RNG (the DataLoaders have their own generators).

Under DDP (`torchrun --nproc_per_node=N train.py`, or Slurm tasks; see asr.distributed) each
rank trains on its own shard of the batches; every decision that ends, skips or saves a step
is taken by all ranks together (the methods named `ranks_...`), and rank 0 alone writes the
checkpoints, metrics, summary and W&B run. Each rank's RNG state is saved, so a resume with
the same number of ranks is exact too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from asr import checkpoint, distributed
from asr.data.dataset import Batch
from asr.data.loader import default_num_workers, make_training_data
from asr.data.manifest import manifest_digest
from asr.decoding import make_run_decoder
from asr.inference import Transcripts, ctc_loss, transcribe_shards
from asr.model import DeepSpeech2, num_params
from asr.optim import build_optimizer, lr_at, progress, set_lr
from asr.precision import configure_precision
from asr.schema import ConfigError, TrainConfig
from asr.step import DeviceTally, LogWindow, StepResult, TallyReading, train_step
from asr.text import make_vocabulary
from asr.tracking import NullTracker, Tracker, read_summary

__all__ = [
    "Counters",
    "NonFiniteError",
    "RunInterrupted",
    "StepResult",
    "Trainer",
    "train",
    "train_step",
]


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT stopped the run after it saved last.pt. A KeyboardInterrupt, so that it
    also stops a Hydra sweep (which records ordinary exceptions and moves on)."""


@dataclass
class Counters:
    """Where training stands; saved in every checkpoint, so a resume continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    train_seconds: float = 0.0  # time spent in training steps, data loading included
    elapsed_seconds: float = 0.0  # wall time of the loop, evaluations included (max_minutes)
    train_audio_seconds: float = 0.0
    best_dev_cer: float = math.inf
    best_dev_wer: float = math.inf
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0  # skipped steps in a row; trainer.max_nonfinite_steps fails
    last_eval_step: int = -1
    evals_since_best: int = 0  # for early stopping (trainer.patience)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available")
    return torch.device(name)


class StopFlag:
    """SIGTERM (what schedulers send) or Ctrl-C ask the loop to save and stop cleanly.

    `signal` is what reached this process, whenever it did; `agreed` is what the loop acts on:
    set at an agreed point (`Trainer.ranks_agree_to_stop`), where under DDP every rank learns
    of a signal that reached any of them. A rank that acted on its own flag could skip a
    collective the others enter (the epoch-end evaluation) and leave them waiting forever.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self.agreed: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))  # a second one is final

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: TrainConfig, run_dir: str | Path, overrides: list[str] | None = None) -> float:
    """Train (or resume) the run in `run_dir`; return its best dev CER."""
    return Trainer(cfg, run_dir, overrides=overrides).run()


class Trainer:
    """One training run; see the module docstring for its parts."""

    # ---- set-up -------------------------------------------------------------------------------

    def __init__(
        self, cfg: TrainConfig, run_dir: str | Path, *, overrides: list[str] | None = None
    ) -> None:
        self.cfg, self.t = cfg, cfg.trainer
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.wall_start = time.time()
        self.ddp = distributed.setup()  # one process, or this rank of a DDP job
        self.device = self.ddp.bind(pick_device(self.t.device))
        self.autocast = configure_precision(self.t.precision, self.device)
        if self.t.num_threads:
            torch.set_num_threads(self.t.num_threads)
        torch.manual_seed(cfg.seed)
        state = self._load_resume_state()
        self._build_data()
        self._build_model(state)
        manifests = self.data.manifests
        self.meta = {
            "config": dataclasses.asdict(cfg),
            "overrides": list(overrides or []),
            "vocab": self.vocab.to_dict(),
            "provenance": checkpoint.provenance(manifest_digest(list(manifests.values()))),
            "manifests": {k: str(v) for k, v in manifests.items()},
        }
        self.tally = DeviceTally(self.device, streak=self.counters.consecutive_nonfinite)
        self.session_start = time.perf_counter()
        self.elapsed_before = self.counters.elapsed_seconds
        self.last_saved = time.perf_counter()  # for trainer.checkpoint_every_minutes
        self.found_on_load: list[tuple[str, str, str]] = []  # this rank's load-time problems
        self.tracker: Tracker | NullTracker = NullTracker()
        self.stop = StopFlag()
        self.clock_save_due = False
        self.window = LogWindow(start=time.perf_counter())
        self.batches_this_epoch = self._batches_in(self.counters.epoch)

    def _batches_in(self, epoch: int) -> int:
        """This rank's batches in `epoch`: with data.batch_seconds it can change per epoch."""
        return max(len(self.train_sampler.batches(epoch)), 1)

    def _load_resume_state(self) -> dict[str, Any] | None:
        """This run dir's last.pt wins, then trainer.resume; every rank loads rank 0's choice."""
        if self.ddp.is_main:  # rank 0 writes the checkpoints, so only it may clean up after them
            checkpoint.remove_stale_temporaries(self.run_dir)  # left by a run killed mid-save
        last = self.run_dir / "last.pt"
        self.resume_from = last if last.is_file() else None
        if self.resume_from is None and self.t.resume:
            self.resume_from = checkpoint.resolve_checkpoint(self.t.resume, "last.pt")
        self.resume_from = self.ddp.broadcast(self.resume_from)  # a shared disk may lag
        return checkpoint.load(self.resume_from) if self.resume_from else None

    def _build_data(self) -> None:
        d, cfg = self.cfg.data, self.cfg
        self.vocab = make_vocabulary(d.alphabet)
        if cfg.model.n_class != self.vocab.n_class:  # asr.config checks it too
            raise ConfigError(f"model.n_class ({cfg.model.n_class}) must be {self.vocab.n_class}")
        self.model = DeepSpeech2(cfg.model)
        self.data = make_training_data(
            d,
            cfg.augment,
            self.vocab,
            self.model.output_lengths,
            seed=cfg.seed,
            device=self.device,
            rank=self.ddp.rank,
            world_size=self.ddp.world_size,
            num_workers=self.ddp.num_workers(default_num_workers(d.num_workers, self.device)),
        )
        self.report = self.data.report  # loading the audio adds to it
        print(f"data: {self.data.describe()}")
        for line in self.report.table():
            print(f"data: {line.strip()}")
        self.train_loader, self.train_sampler = self.data.train_loader, self.data.train_sampler
        self.eval_loaders = self.data.eval_loaders
        self.decoder = make_run_decoder(
            cfg.decode,
            self.vocab,
            language=d.language,
            train_manifest=lambda: self.data.manifests["train"],
            cache_dir=Path(d.cache_dir).expanduser(),
        )

    def _build_model(self, state: dict[str, Any] | None) -> None:
        """Fresh, resumed from `state`, or initialised from trainer.init_from."""
        model, t = self.model, self.t
        model.to(self.device)
        self.optimizer = build_optimizer(model.parameters(), self.cfg.optim)
        self.counters = Counters()
        # A run killed before its first checkpoint still continues its W&B run: the Tracker
        # wrote the id to summary.json first thing. A checkpoint's id wins (it may come from
        # elsewhere, through trainer.resume).
        self.run_id = read_summary(self.run_dir).get("run_id")
        if state is not None:
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.counters = Counters(**state["counters"])
            self.ddp.restore_rng(state, self.cfg.seed, self.counters.step)  # dropout streams
            self.counters.batch_in_epoch = self.ddp.resume_position(
                self.counters.batch_in_epoch, state.get("world_size", 1)
            )
            self.run_id = state.get("wandb_run_id")
            print(
                f"resumed from {self.resume_from} at step {self.counters.step}, "
                f"epoch {self.counters.epoch}"
            )
        elif t.init_from:
            init = checkpoint.load(checkpoint.resolve_checkpoint(t.init_from, "best.pt"))
            try:
                model.load_state_dict(init["model"])
            except RuntimeError as e:
                first = str(e).splitlines()[0]
                raise ConfigError(
                    f"trainer.init_from: weights do not fit this model ({first})"
                ) from None
            print(f"initialised weights from {t.init_from}")
        if state is None:
            self.ddp.seed(self.cfg.seed)  # dropout masks differ between ranks
        self.train_model = self.ddp.wrap(model)  # DDP for the training forward only
        self.n_params = num_params(model)

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> float:
        """Train until a budget, a signal or patience says stop; then test best.pt."""
        with self._open_tracker() as self.tracker:
            self._announce()
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
        self.batches_this_epoch = self._batches_in(c.epoch)
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
            self._note_problems(batch)
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
            self.tally.add(result)
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
            stop = self.patience_out()
        elif not stop and self.save_is_due():
            paused = time.perf_counter()
            self.save("last.pt")
            self.window.pause(time.perf_counter() - paused)
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
        return self.ranks_agree_to_stop() or self.patience_out()

    # ---- decisions ----------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def progress(self) -> float:
        """The largest fraction of any budget used (1.0: over); the learning rate follows it."""
        c, t = self.counters, self.t
        epochs = c.epoch + c.batch_in_epoch / self.batches_this_epoch
        minutes = self.elapsed() / 60
        return progress(c.step, epochs, minutes, t.max_steps, t.max_epochs, t.max_minutes)

    def ranks_agree_to_skip(self, batch: Batch) -> tuple[bool, float]:
        """Every rank takes each step or none does (a batch whose utterances were all unusable
        on one rank skips it everywhere), at the same progress, hence learning rate."""
        empty, step_progress = self.ddp.max(len(batch) == 0, self.progress())
        return empty > 0, step_progress

    def ranks_agree_to_stop(self) -> bool:
        """A budget spent or a signal received, agreed by all ranks: a rank that stopped alone
        would leave the others waiting for it forever (max_minutes reads each rank's clock, and
        a signal may reach one rank only). The same collective agrees on `clock_save_due`."""
        own = signal.Signals[self.stop.signal].value if self.stop.signal else 0
        minutes = (time.perf_counter() - self.last_saved) / 60
        every = self.t.checkpoint_every_minutes
        spent, signum, clock = self.ddp.max(
            self.progress() >= 1.0, own, bool(every) and minutes >= every
        )
        self.clock_save_due = clock > 0
        if signum and self.stop.agreed is None:
            self.stop.agreed = signal.Signals(int(signum)).name
            if self.stop.signal is None:  # received by another rank
                tqdm.write(
                    f"stop: {self.stop.agreed} reached another rank; "
                    f"stopping at step {self.counters.step}"
                )
        return spent > 0 or self.stop.agreed is not None

    def save_is_due(self) -> bool:
        """last.pt between evaluations: every `trainer.checkpoint_every_steps` steps, or once
        `trainer.checkpoint_every_minutes` have passed since the last save (as agreed by
        `ranks_agree_to_stop`: saving gathers every rank's RNG). Not when the epoch's end,
        which evaluates and saves, comes right after."""
        c, every = self.counters, self.t.checkpoint_every_steps
        by_steps = bool(every) and c.step % every == 0
        return (
            (by_steps or self.clock_save_due)
            and c.last_eval_step != c.step
            and c.batch_in_epoch < self.batches_this_epoch
        )

    def patience_out(self) -> bool:
        """Early stopping: `trainer.patience` dev evaluations in a row without a better CER."""
        return bool(self.t.patience) and self.counters.evals_since_best >= self.t.patience

    # ---- logging ------------------------------------------------------------------------------

    def read_tally(self) -> TallyReading:
        """Bring the device's sums to the host (a sync): counters, the log window, and the
        verdict on non-finite steps, which fails the run after too many in a row."""
        c, reading = self.counters, self.tally.read()
        c.nonfinite_steps += reading.nonfinite_steps
        c.consecutive_nonfinite = reading.streak
        c.train_audio_seconds += reading.audio_seconds
        self.window.add(reading)
        if reading.worst_streak >= self.t.max_nonfinite_steps:
            self.tracker.update_summary(**self.summary())
            raise NonFiniteError(
                f"{reading.worst_streak} steps in a row (up to step {c.step}) had a non-finite "
                f"loss or gradient (last loss {reading.last_loss:.4g}, gradient norm "
                f"{reading.last_grad_norm:.4g}): lower optim.lr, check the data, or raise "
                "trainer.max_nonfinite_steps"
            )
        return reading

    def log_window(self, lr: float, bar: tqdm) -> None:
        """Once per `trainer.log_every_steps`: the one place a step's numbers reach the host."""
        reading = self.read_tally()
        now, w = time.perf_counter(), self.window
        if w.finite_steps:
            speed, loss = w.speed(now), w.mean_loss
            self.tracker.log(
                {
                    "train/loss": loss,
                    "train/lr": lr,
                    "train/audio_seconds_per_second": speed,
                    "train/grad_norm": reading.last_grad_norm,
                    **self.clock(self.counters.train_audio_seconds),
                    "epoch": self.counters.epoch,
                },
                step=self.counters.step,
            )
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.1f}")
            self.window = LogWindow(start=now)

    def clock(self, audio_seconds: float) -> dict[str, float]:
        """Where the run stands in audio and in time: the axes, besides steps, that sweep reports
        draw learning curves against (jobs with other batch sizes take other steps)."""
        return {"train/audio_hours": audio_seconds / 3600, "time/minutes": self.elapsed() / 60}

    def _note_problems(self, batch: Batch) -> None:
        """Count what loading this batch found, printing the first few of each kind."""
        for utt_id, kind, detail in batch.problems:
            if (kind, utt_id) not in self.report:
                self.found_on_load.append((utt_id, kind, detail))
                if self.report.counts[kind] < 5:
                    tqdm.write(f"data: {kind}: {utt_id} ({detail})")
            self.report.add(kind, utt_id, detail)

    # ---- evaluation and checkpoints -----------------------------------------------------------

    def evaluate_dev(self) -> Transcripts | None:
        """Dev CER/WER, best.pt when it improved, and last.pt either way."""
        c, started = self.counters, time.perf_counter()
        c.last_eval_step = c.step
        if "dev" not in self.eval_loaders:
            self.save("last.pt")
            return None
        dev = transcribe_shards(
            self.model,
            self.eval_loaders["dev"],
            self.vocab,
            self.device,
            self.ddp,
            decoder=self.decoder,
        )
        seen = c.train_audio_seconds + self.tally.unread_audio_seconds()
        self.tracker.log(
            {
                "dev/cer": dev.cer,
                "dev/wer": dev.wer,
                "dev/loss": dev.loss,
                **self.clock(seen),
                "epoch": c.epoch,
            },
            step=c.step,
        )
        rows = [[u.utt_id, u.text, h] for u, h in zip(dev.utts, dev.hypotheses, strict=True)]
        columns = ["id", "reference", "hypothesis"]
        self.tracker.log_table("dev/samples", columns, rows[: self.t.n_samples_logged], c.step)
        improved = dev.cer < c.best_dev_cer
        c.evals_since_best = 0 if improved else c.evals_since_best + 1
        if improved:
            c.best_dev_cer, c.best_dev_wer = dev.cer, dev.wer
        tqdm.write(
            f"step {c.step} epoch {c.epoch}: dev CER {dev.cer:.4f} WER {dev.wer:.4f} "
            f"loss {dev.loss:.3f}{' (best)' if improved else ''}"
            f" | ref: {rows[0][1]!r} hyp: {rows[0][2]!r}"
        )
        self.tracker.update_summary(best_dev_cer=c.best_dev_cer, best_dev_wer=c.best_dev_wer)
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        self.window.pause(time.perf_counter() - started)  # evaluating is not training
        return dev

    def save(self, name: str) -> None:
        """A checkpoint that rebuilds the run on its own: weights, optimizer, counters, every
        rank's RNG, the resolved config, vocabulary, W&B id and provenance. Rank 0 writes it."""
        self.read_tally()  # the non-finite counters in the checkpoint are exact
        self.counters.elapsed_seconds = self.elapsed()
        rng = checkpoint.rng_state()
        rng_ranks = self.ddp.all_gather(rng)  # every rank's, for an exact resume
        self.last_saved = time.perf_counter()
        if not self.ddp.is_main:
            return
        state = {
            "format_version": checkpoint.FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": dataclasses.asdict(self.counters),
            "rng": rng,
            "wandb_run_id": self.tracker.run_id,
            "n_params": self.n_params,
            **self.meta,
        }
        if self.ddp.enabled:
            state.update(world_size=self.ddp.world_size, rng_ranks=rng_ranks)
        checkpoint.save_atomic(state, self.run_dir / name)

    # ---- the end ------------------------------------------------------------------------------

    def finish(self) -> None:
        """Dev once more if the last step was not evaluated, then best.pt on test."""
        c = self.counters
        if c.last_eval_step != c.step:
            self.evaluate_dev()  # also saves last.pt
        self.ddp.barrier()  # rank 0 has finished writing best.pt
        if (self.run_dir / "best.pt").is_file():
            self.model.load_state_dict(checkpoint.load(self.run_dir / "best.pt")["model"])
        final = self.summary()
        if "test" in self.eval_loaders:
            test = transcribe_shards(
                self.model,
                self.eval_loaders["test"],
                self.vocab,
                self.device,
                self.ddp,
                with_loss=False,
                decoder=self.decoder,
            )
            final.update(test_cer=test.cer, test_wer=test.wer, test_rtf=test.rtf)
            self.tracker.log({"test/cer": test.cer, "test/wer": test.wer}, step=c.step)
            print(
                f"test: CER {test.cer:.4f} WER {test.wer:.4f} "
                f"on {len(test.utts)} utterances (best.pt)"
            )
        self.tracker.update_summary(**final)
        self.tracker.finish("ok")
        print(f"data: skipped {self.report.summary()}")
        summary_path = self.run_dir / "summary.json"
        print(f"done: best dev CER {c.best_dev_cer:.4f}; summary in {summary_path}")

    def _stop_interrupted(self) -> None:
        """A signal stopped the run: save last.pt, record why, and raise RunInterrupted."""
        self.save("last.pt")
        self.tracker.update_summary(**self.summary(), signal=self.stop.agreed)
        self.tracker.finish(
            "interrupted", error=f"stopped by {self.stop.agreed}; resume with the same run dir"
        )
        raise RunInterrupted(f"stopped by {self.stop.agreed}: saved {self.run_dir / 'last.pt'}")

    def summary(self) -> dict[str, Any]:
        """The run's numbers for summary.json, with every rank's load-time problems."""
        for rank, theirs in enumerate(self.ddp.all_gather(list(self.found_on_load))):
            if rank != self.ddp.rank:  # each rank loaded a shard of the audio
                self.report.merge(theirs)
        c, report = self.counters, self.report
        return {
            "best_dev_cer": c.best_dev_cer if math.isfinite(c.best_dev_cer) else None,
            "best_dev_wer": c.best_dev_wer if math.isfinite(c.best_dev_wer) else None,
            "step": c.step,
            "epoch": c.epoch,
            "train_audio_seconds": c.train_audio_seconds,
            "train_seconds": c.train_seconds,
            "train_audio_seconds_per_second": c.train_audio_seconds / max(c.train_seconds, 1e-9),
            "wall_seconds": time.time() - self.wall_start,
            "skipped": report.skipped,
            "repaired": report.repaired,
            "nonfinite_steps": c.nonfinite_steps,
        }

    def _open_tracker(self) -> Tracker | NullTracker:
        """Rank 0 alone tracks: one summary.json, one metrics.jsonl, one W&B run."""
        if not self.ddp.is_main:
            return NullTracker()
        config = {**self.meta["config"], "overrides": self.meta["overrides"]}
        return Tracker(self.run_dir, self.cfg.logger, config, self.run_id)

    def _announce(self) -> None:
        report = self.report
        self.tracker.update_summary(
            status="running",
            n_params=self.n_params,
            overrides=self.meta["overrides"],
            run_dir=str(self.run_dir),
            device=str(self.device),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            torch_threads=torch.get_num_threads(),
            world_size=self.ddp.world_size,
            train_utterances=len(self.data.utts["train"]),
            skipped=report.skipped,
            repaired=report.repaired,
            chars_outside_alphabet=dict(report.dropped_chars),
        )
        self.tracker.log({"n_params": self.n_params}, step=self.counters.step)
        print(f"model: {self.n_params:,} parameters on {self.device}; run dir {self.run_dir}")
