"""`train(cfg, run_dir) -> best dev CER`: the whole training run, top-down.

data (manifests -> utterances -> bucketed batches)  ->  model  ->  optimizer
[resume from last.pt | init_from weights]
loop: step (CTC, skip non-finite, clip, lr_at(progress)) -> log -> dev eval -> checkpoint
end: best.pt on test -> summary.json

Exact resume: a run killed at any moment (even SIGKILL) and restarted with the same command
continues from its last checkpoint and ends with the same weights, bit for bit, as a run that
never stopped (with step or epoch budgets; a max_minutes budget depends on the clock). That
holds because everything a step depends on is either in the checkpoint (weights, optimizer,
counters, torch's global RNG, which dropout draws from) or a pure function of (seed, epoch,
position): the batch order (BucketBatchSampler), SpecAugment's masks (SpeechDataset), and
nothing else draws from the global RNG (the DataLoaders have their own generators).

Under DDP (`torchrun --nproc_per_node=N train.py`, or Slurm tasks; see asr.distributed) each
rank trains on its own shard of the batches; every decision that ends or skips a step is taken
by all ranks together, and rank 0 alone writes the checkpoints, metrics, summary and W&B run.
Each rank's RNG state is saved, so a resume with the same number of ranks is exact too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from asr import checkpoint, distributed
from asr.data.checks import ProblemReport
from asr.data.dataset import Batch
from asr.data.loader import (
    ctc_frames_fn,
    default_num_workers,
    load_splits,
    make_augment,
    make_loader,
    make_logmel,
)
from asr.data.manifest import manifest_digest
from asr.inference import Transcripts, ctc_loss
from asr.model import DeepSpeech2, num_params
from asr.optim import build_optimizer, lr_at, progress, set_lr
from asr.schema import ConfigError, TrainConfig
from asr.text import make_vocabulary
from asr.tracking import NullTracker, Tracker, read_summary


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


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    finite: bool  # False: the step was skipped, weights and optimizer state untouched
    audio_seconds: float = 0.0  # trained on in this step (by all ranks, under DDP)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    blank: int,
    grad_clip: float,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    vote: Callable[[float, int, float], distributed.Vote] | None = None,
) -> StepResult:
    """One optimizer step on a batch; a non-finite loss or gradient skips it entirely.

    Under DDP, `vote` agrees on the step with the other ranks before the backward pass (see
    `DDP.vote`): the loss is then the global batch's, and one rank's non-finite loss skips
    the step on every rank.
    """
    model.train()
    # non_blocking: with pinned batches (CUDA) the copies overlap the work already queued.
    feats = batch.feats.to(device, non_blocking=True)  # (B, F, T)
    feat_lens = batch.feat_lens.to(device, non_blocking=True)  # (B,)
    with autocast or contextlib.nullcontext():
        log_probs, out_lens = model(feats, feat_lens)  # (B, T', C), (B,)
    targets = batch.targets.to(device, non_blocking=True)
    target_lens = batch.target_lens.to(device, non_blocking=True)
    loss = ctc_loss(log_probs, out_lens, targets, target_lens, blank)
    optimizer.zero_grad(set_to_none=True)
    loss_value = float(loss.detach())  # the one host sync of a step
    audio_seconds = batch.audio_seconds
    if vote is not None:
        agreed = vote(loss_value, len(batch), audio_seconds)
        loss_value, audio_seconds = agreed.loss, agreed.audio_seconds
        if agreed.scale != 1.0:  # unequal batch sizes across ranks
            loss = loss * agreed.scale
    if not math.isfinite(loss_value):
        return StepResult(loss_value, math.nan, False, audio_seconds)
    loss.backward()  # under DDP, also averages the gradients over the ranks
    # Averaged gradients are equal on every rank, so their norm and finiteness are too.
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss_value, float(grad_norm), False, audio_seconds)
    optimizer.step()
    return StepResult(loss_value, float(grad_norm), True, audio_seconds)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available")
    return torch.device(name)


class StopFlag:
    """SIGTERM (what schedulers send) or Ctrl-C ask the loop to save and stop cleanly.

    `signal` is what reached this process, whenever it did; `agreed` is what the loop acts on:
    set at an agreed point (`stopping` in `train`), where under DDP every rank learns of a signal
    that reached any of them. A rank that acted on its own flag could skip a collective the
    others enter (the epoch-end evaluation) and leave them waiting forever.
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
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    wall_start = time.time()
    ddp = distributed.setup()  # one process, or this rank of a DDP job (joined once per process)
    device = ddp.bind(pick_device(cfg.trainer.device))
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.seed)

    # ---- resume state: this run dir's last.pt wins, then trainer.resume ----
    if ddp.is_main:  # rank 0 writes the checkpoints, so only it may clean up after them
        checkpoint.remove_stale_temporaries(run_dir)  # left by a run killed while saving
    resume_from = run_dir / "last.pt" if (run_dir / "last.pt").is_file() else None
    if resume_from is None and cfg.trainer.resume:
        resume_from = checkpoint.resolve_checkpoint(cfg.trainer.resume, "last.pt")
    resume_from = ddp.broadcast(resume_from)  # every rank loads the checkpoint rank 0 chose
    state = checkpoint.load(resume_from) if resume_from else None

    # ---- data ----
    d = cfg.data
    vocab = make_vocabulary(d.alphabet)
    if cfg.model.n_class != vocab.n_class:  # asr.config checks it too; library callers may not
        raise ConfigError(f"model.n_class ({cfg.model.n_class}) must be {vocab.n_class}")
    model = DeepSpeech2(cfg.model)
    logmel = make_logmel(d)
    frames = ctc_frames_fn(logmel, model.output_lengths)
    data = load_splits(d, vocab, frames)
    report = data.report  # problems found reading the manifests; loading adds the audio ones
    print(f"data: {data.describe()}")
    for line in report.table():
        print(f"data: {line.strip()}")
    workers = ddp.num_workers(default_num_workers(d.num_workers, device))
    train_loader, train_sampler = make_loader(
        data.utts["train"],
        logmel,
        make_augment(cfg.augment),
        d.batch_size,
        d.num_buckets,
        cfg.seed,
        True,
        workers,
        frames,
        d.batch_seconds,
        ddp.rank,  # each rank its own shard of the batches, all with as many batches
        ddp.world_size,
        cache_mb=d.feature_cache_mb,
        pin_memory=device.type == "cuda",
    )
    eval_loaders = {
        split: make_loader(
            utts,
            logmel,
            None,
            d.batch_size,
            d.num_buckets,
            cfg.seed,
            False,
            workers,
            frames,
            cache_mb=d.feature_cache_mb,
            pin_memory=device.type == "cuda",
        )[0]
        for split, utts in data.utts.items()
        if split != "train" and utts
    }
    # Under DDP each rank evaluates a shard of the batches, and all get the whole result.
    eval_loaders = {split: ddp.shard(loader) for split, loader in eval_loaders.items()}

    # ---- model and optimizer (fresh, resumed, or initialised from another run) ----
    model.to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    counters = Counters()
    # A run killed before its first checkpoint still continues its W&B run: the Tracker wrote
    # the id to summary.json first thing. A checkpoint's id wins (it may come from elsewhere,
    # through trainer.resume).
    run_id = read_summary(run_dir).get("run_id")
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        counters = Counters(**state["counters"])
        ddp.restore_rng(state, cfg.seed, counters.step)  # each rank's own stream (dropout)
        counters.batch_in_epoch = ddp.resume_position(
            counters.batch_in_epoch, state.get("world_size", 1)
        )
        run_id = state.get("wandb_run_id")
        print(f"resumed from {resume_from} at step {counters.step}, epoch {counters.epoch}")
    elif cfg.trainer.init_from:
        init = checkpoint.load(checkpoint.resolve_checkpoint(cfg.trainer.init_from, "best.pt"))
        try:
            model.load_state_dict(init["model"])
        except RuntimeError as e:
            raise ConfigError(
                f"trainer.init_from: weights do not fit this model ({str(e).splitlines()[0]})"
            ) from None
        print(f"initialised weights from {cfg.trainer.init_from}")
    if state is None:
        ddp.seed(cfg.seed)  # dropout masks differ between ranks
    train_model = ddp.wrap(model)  # DDP for the training forward; `model` for the rest
    n_params = num_params(model)
    config_dict = dataclasses.asdict(cfg)
    meta = {
        "config": config_dict,
        "overrides": list(overrides or []),
        "vocab": vocab.to_dict(),
        "provenance": checkpoint.provenance(manifest_digest(list(data.manifests.values()))),
        "manifests": {k: str(v) for k, v in data.manifests.items()},
    }
    t = cfg.trainer
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if t.precision == "bf16" else None

    def save(name: str) -> None:
        counters.elapsed_seconds = elapsed()
        rng = checkpoint.rng_state()
        rng_ranks = ddp.all_gather(rng)  # every rank's, for an exact resume
        if not ddp.is_main:
            return
        state = {
            "format_version": checkpoint.FORMAT_VERSION,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"schedule": cfg.optim.schedule, "progress": run_progress()},
            "counters": dataclasses.asdict(counters),
            "rng": rng,
            "wandb_run_id": tracker.run_id,
            "n_params": n_params,
            **meta,
        }
        if ddp.enabled:
            state.update(world_size=ddp.world_size, rng_ranks=rng_ranks)
        checkpoint.save_atomic(state, run_dir / name)

    session_start, elapsed_before = time.perf_counter(), counters.elapsed_seconds
    batches_per_epoch = max(len(train_sampler.batches(0)), 1)  # the same every epoch
    train_dataset = train_loader.dataset

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - session_start

    def run_progress() -> float:
        epochs = counters.epoch + counters.batch_in_epoch / batches_per_epoch
        minutes = elapsed() / 60
        return progress(counters.step, epochs, minutes, t.max_steps, t.max_epochs, t.max_minutes)

    def checkpoint_due() -> bool:
        """last.pt every `trainer.checkpoint_every_steps` steps, unless an evaluation saved it
        at this step or the epoch's end (which evaluates and saves) comes right after it."""
        every = t.checkpoint_every_steps
        return (
            bool(every)
            and counters.step % every == 0
            and counters.last_eval_step != counters.step
            and counters.batch_in_epoch < batches_per_epoch
        )

    def stopping() -> bool:
        """A budget spent or a signal received, agreed by all ranks: a rank that stopped alone
        would leave the others waiting for it forever (max_minutes reads each rank's clock, and
        a signal may reach one rank only)."""
        own = signal.Signals[stop.signal].value if stop.signal else 0
        spent, signum = ddp.max(run_progress() >= 1.0, own)
        if signum and stop.agreed is None:
            stop.agreed = signal.Signals(int(signum)).name
            if stop.signal is None:  # received by another rank
                step = counters.step
                tqdm.write(f"stop: {stop.agreed} reached another rank; stopping at step {step}")
        return spent > 0 or stop.agreed is not None

    def summary() -> dict[str, Any]:
        ddp.merge_problems(report, found_on_load)  # each rank loaded a shard of the audio
        return _summary(counters, report, wall_start)

    def patience_out() -> bool:
        """Early stopping: `trainer.patience` dev evaluations in a row without a better CER."""
        return bool(t.patience) and counters.evals_since_best >= t.patience

    def evaluate_dev() -> Transcripts | None:
        """Dev CER/WER, best.pt when it improved, and last.pt either way."""
        counters.last_eval_step = counters.step
        if "dev" not in eval_loaders:
            save("last.pt")
            return None
        dev = ddp.transcribe(model, eval_loaders["dev"], vocab, device)
        metrics = {
            "dev/cer": dev.cer,
            "dev/wer": dev.wer,
            "dev/loss": dev.loss,
            "epoch": counters.epoch,
        }
        tracker.log(metrics, step=counters.step)
        rows = [[u.utt_id, u.text, h] for u, h in zip(dev.utts, dev.hypotheses, strict=True)]
        tracker.log_table(
            "dev/samples",
            ["id", "reference", "hypothesis"],
            rows[: t.n_samples_logged],
            counters.step,
        )
        improved = dev.cer < counters.best_dev_cer
        counters.evals_since_best = 0 if improved else counters.evals_since_best + 1
        if improved:
            counters.best_dev_cer, counters.best_dev_wer = dev.cer, dev.wer
        tqdm.write(
            f"step {counters.step} epoch {counters.epoch}: dev CER {dev.cer:.4f} WER {dev.wer:.4f} "
            f"loss {dev.loss:.3f}{' (best)' if improved else ''}"
            f" | ref: {rows[0][1]!r} hyp: {rows[0][2]!r}"
        )
        tracker.update_summary(
            best_dev_cer=counters.best_dev_cer, best_dev_wer=counters.best_dev_wer
        )
        if improved:
            save("best.pt")
        save("last.pt")
        return dev

    # Under DDP rank 0 alone tracks: one summary.json, one metrics.jsonl, one W&B run.
    with (
        Tracker(run_dir, cfg.logger, {**config_dict, "overrides": meta["overrides"]}, run_id)
        if ddp.is_main
        else NullTracker()
    ) as tracker:
        tracker.update_summary(
            status="running",
            n_params=n_params,
            overrides=meta["overrides"],
            run_dir=str(run_dir),
            device=str(device),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            torch_threads=torch.get_num_threads(),
            world_size=ddp.world_size,
            train_utterances=len(data.utts["train"]),
            skipped=report.skipped,
            repaired=report.repaired,
            chars_outside_alphabet=dict(report.dropped_chars),
        )
        tracker.log({"n_params": n_params}, step=counters.step)
        print(f"model: {n_params:,} parameters on {device}; run dir {run_dir}")

        # ---- the loop ----
        window_loss, window_n, window_audio, window_start = 0.0, 0, 0.0, time.perf_counter()
        found_on_load: list[tuple[str, str, str]] = []  # this rank's load-time problems
        with StopFlag() as stop:
            done = stopping()
            while not done:
                # Both are pure functions of (seed, epoch): resuming mid-epoch skips exactly the
                # batches already trained on, and the rest get the same SpecAugment masks.
                train_sampler.set_epoch(counters.epoch, counters.batch_in_epoch)
                train_dataset.set_epoch(counters.epoch)
                bar = tqdm(
                    train_loader,
                    desc=f"epoch {counters.epoch}",
                    leave=False,
                    dynamic_ncols=True,
                    disable=not ddp.is_main,
                )
                step_start = time.perf_counter()
                for batch in bar:
                    counters.batch_in_epoch += 1
                    for utt_id, kind, detail in batch.problems:
                        if (kind, utt_id) not in report:
                            found_on_load.append((utt_id, kind, detail))
                            if report.counts[kind] < 5:
                                tqdm.write(f"data: {kind}: {utt_id} ({detail})")  # the first few
                        report.add(kind, utt_id, detail)
                    # Every rank takes each step or none does (a batch whose utterances were all
                    # unusable on one rank skips it everywhere), at the same learning rate.
                    any_empty, step_progress = ddp.max(len(batch) == 0, run_progress())
                    if any_empty:
                        continue
                    lr = lr_at(step_progress, cfg.optim)
                    set_lr(optimizer, lr)
                    result = train_step(
                        train_model,
                        optimizer,
                        batch,
                        vocab.blank,
                        t.grad_clip,
                        device,
                        autocast,
                        ddp.vote if ddp.enabled else None,
                    )
                    if result.finite:
                        counters.consecutive_nonfinite = 0
                        window_loss += result.loss
                        window_n += 1
                    else:
                        counters.nonfinite_steps += 1
                        counters.consecutive_nonfinite += 1
                    counters.step += 1
                    if counters.consecutive_nonfinite >= t.max_nonfinite_steps:
                        tracker.update_summary(**summary())
                        raise NonFiniteError(
                            f"{counters.consecutive_nonfinite} steps in a row (up to step "
                            f"{counters.step}) had a non-finite loss or gradient (last loss "
                            f"{result.loss:.4g}, gradient norm {result.grad_norm:.4g}): lower "
                            "optim.lr, check the data, or raise trainer.max_nonfinite_steps"
                        )
                    now = time.perf_counter()
                    counters.train_seconds += now - step_start
                    counters.train_audio_seconds += result.audio_seconds
                    window_audio += result.audio_seconds
                    if counters.step % t.log_every_steps == 0 and window_n:
                        speed = window_audio / max(now - window_start, 1e-9)
                        avg = window_loss / window_n
                        tracker.log(
                            {
                                "train/loss": avg,
                                "train/lr": lr,
                                "train/audio_seconds_per_second": speed,
                                "train/grad_norm": result.grad_norm,
                                "epoch": counters.epoch,
                            },
                            step=counters.step,
                        )
                        bar.set_postfix(
                            loss=f"{avg:.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.1f}"
                        )
                        window_loss, window_n, window_audio, window_start = 0.0, 0, 0.0, now
                    done = stopping()
                    if not done and t.eval_every_steps and counters.step % t.eval_every_steps == 0:
                        evaluate_dev()
                        window_start = time.perf_counter()  # eval time is not training time
                        done = patience_out()
                    if not done and checkpoint_due():
                        save("last.pt")
                    if done:
                        break
                    step_start = time.perf_counter()
                else:  # the epoch ran to its end
                    # Stopped by a signal: leave the epoch-end work (the dev evaluation) to the
                    # resumed run, which finds this epoch with no batch left and does it first,
                    # as a run that never stopped would have. Agree first: a signal may have
                    # reached one rank since the last step's vote.
                    stopping()
                    if stop.agreed is None:
                        counters.epoch += 1
                        counters.batch_in_epoch = 0
                        if counters.last_eval_step != counters.step:
                            evaluate_dev()
                        window_start = time.perf_counter()
                    done = stopping() or patience_out()
                bar.close()
            stopping()  # the same, before choosing how the run ends
            if stop.agreed is not None:
                save("last.pt")
                tracker.update_summary(**summary(), signal=stop.agreed)
                tracker.finish(
                    "interrupted", error=f"stopped by {stop.agreed}; resume with the same run dir"
                )
                raise RunInterrupted(f"stopped by {stop.agreed}: saved {run_dir / 'last.pt'}")

        # ---- the end: dev once more if needed, then the best weights on test ----
        if counters.last_eval_step != counters.step:
            evaluate_dev()  # also saves last.pt
        ddp.barrier()  # rank 0 has finished writing best.pt
        if (run_dir / "best.pt").is_file():
            model.load_state_dict(checkpoint.load(run_dir / "best.pt")["model"])
        final = summary()
        if "test" in eval_loaders:
            test = ddp.transcribe(model, eval_loaders["test"], vocab, device)
            final.update(test_cer=test.cer, test_wer=test.wer, test_rtf=test.rtf)
            tracker.log({"test/cer": test.cer, "test/wer": test.wer}, step=counters.step)
            print(
                f"test: CER {test.cer:.4f} WER {test.wer:.4f} "
                f"on {len(test.utts)} utterances (best.pt)"
            )
        tracker.update_summary(**final)
        tracker.finish("ok")
        print(f"data: skipped {report.summary()}")
        print(
            f"done: best dev CER {counters.best_dev_cer:.4f}; summary in {run_dir / 'summary.json'}"
        )
    return counters.best_dev_cer


def _summary(c: Counters, report: ProblemReport, wall_start: float) -> dict[str, Any]:
    return {
        "best_dev_cer": c.best_dev_cer if math.isfinite(c.best_dev_cer) else None,
        "best_dev_wer": c.best_dev_wer if math.isfinite(c.best_dev_wer) else None,
        "step": c.step,
        "epoch": c.epoch,
        "train_audio_seconds": c.train_audio_seconds,
        "train_seconds": c.train_seconds,
        "train_audio_seconds_per_second": c.train_audio_seconds / max(c.train_seconds, 1e-9),
        "wall_seconds": time.time() - wall_start,
        "skipped": report.skipped,
        "repaired": report.repaired,
        "nonfinite_steps": c.nonfinite_steps,
    }
