"""A training run's numbers on their way out: from the device to the host, and from the host to
metrics.jsonl, W&B and the console.

`RunLog` keeps the steps' sums on the training device (`asr.step.DeviceTally`) and brings them
to the host only when it is asked to (`read`: once per log window, and before a checkpoint or
an evaluation), so that the steps in between never wait for the host. It writes the training
rows (`train_row`) and the dev rows with their sample transcripts (`dev_row`), each with the
axes a sweep report draws learning curves against (`clock`), and counts the data problems that
loading the batches found (`note_problems`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from asr.data.checks import ProblemReport
from asr.distributed import DDP
from asr.inference import Transcripts
from asr.resume import Counters
from asr.step import DeviceTally, LogWindow, StepResult, TallyReading
from asr.tracking import NullTracker, Tracker
from asr.tracking.record import announce, progress_summary
from asr.tracking.wandb_run import LoggerConfig

__all__ = ["NonFiniteError", "RunLog"]


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient."""


class RunLog:
    def __init__(
        self,
        *,
        device: torch.device,
        counters: Counters,
        report: ProblemReport,
        elapsed: Callable[[], float],
        n_samples: int,
        fail_after: int,
        ddp: DDP,
        wall_start: float,
    ) -> None:
        self.ddp, self.fail_after = ddp, fail_after  # trainer.max_nonfinite_steps
        self.device = device
        self.wall_start = wall_start  # time.time() when the run's process began setting up
        self.counters, self.report, self.elapsed, self.n_samples = (
            counters,
            report,
            elapsed,
            n_samples,
        )
        self.tally = DeviceTally(device, streak=counters.consecutive_nonfinite)
        self.window = LogWindow(start=time.perf_counter())
        self.tracker: Tracker | NullTracker = NullTracker()  # the trainer opens the real one
        self.found_on_load: list[tuple[str, str, str]] = []  # this rank's load-time problems

    def start(
        self,
        folder: Path,
        cfg: LoggerConfig,
        meta: dict[str, Any],
        run_id: str | None,
        n_params: int,
        train_utterances: int,
    ) -> Tracker | NullTracker:
        """Open the tracker of the run in `folder` (on rank 0 alone) and record in summary.json
        who runs it, where, and on what; then say so on the console."""
        config = {**meta["config"], "overrides": meta["overrides"]}
        if self.ddp.is_main:  # rank 0 alone: one summary.json, metrics.jsonl and W&B run per job
            self.tracker = Tracker(folder, cfg, config, run_id)
        announce(
            self.tracker,
            step=self.counters.step,
            n_params=n_params,
            report=self.report,
            overrides=meta["overrides"],
            run_dir=str(folder),
            device=str(self.device),
            torch_threads=torch.get_num_threads(),
            world_size=self.ddp.world_size,
            train_utterances=train_utterances,
        )
        print(f"model: {n_params:,} parameters on {self.device}; run dir {folder}")
        return self.tracker

    def add(self, result: StepResult) -> None:
        self.tally.add(result)

    def read(self) -> TallyReading:
        """Bring the device's sums to the host (a sync), into the counters and the window.
        `fail_after` non-finite steps in a row fail the run, its summary saved first; every
        rank reads at the same points, so every rank raises together."""
        c, reading = self.counters, self.tally.read()
        c.nonfinite_steps += reading.nonfinite_steps
        c.consecutive_nonfinite = reading.streak
        c.train_audio_seconds += reading.audio_seconds
        self.window.add(reading)
        if reading.worst_streak >= self.fail_after:
            self.tracker.update_summary(**self.summary())
            raise NonFiniteError(
                f"{reading.worst_streak} steps in a row (up to step {c.step}) had a non-finite "
                f"loss or gradient (last loss {reading.last_loss:.4g}, gradient norm "
                f"{reading.last_grad_norm:.4g}): lower optim.lr, check the data, or raise "
                "trainer.max_nonfinite_steps"
            )
        return reading

    def pause(self, seconds: float) -> None:
        """Leave `seconds` that were not training (an evaluation, a save) out of the speed."""
        self.window.pause(seconds)

    def clock(self, audio_seconds: float) -> dict[str, float]:
        """Where the run stands in audio and in time: the axes, besides steps, that sweep reports
        draw learning curves against (jobs with other batch sizes take other steps)."""
        return {"train/audio_hours": audio_seconds / 3600, "time/minutes": self.elapsed() / 60}

    def train_row(self, reading: TallyReading, lr: float, bar: tqdm) -> None:
        """The log window's row: mean loss, speed, learning rate; then a new window."""
        now, w, c = time.perf_counter(), self.window, self.counters
        if not w.finite_steps:
            return
        speed, loss = w.speed(now), w.mean_loss
        row = {
            "train/loss": loss,
            "train/lr": lr,
            "train/audio_seconds_per_second": speed,
            "train/grad_norm": reading.last_grad_norm,
            **self.clock(c.train_audio_seconds),
            "epoch": c.epoch,
        }
        self.tracker.log(row, step=c.step)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", audio_s_per_s=f"{speed:.1f}")
        self.window = LogWindow(start=now)

    def dev_row(self, dev: Transcripts, *, improved: bool) -> None:
        """A dev evaluation's row, its first transcripts as a W&B table, and a console line."""
        c = self.counters
        seen = c.train_audio_seconds + self.tally.unread_audio_seconds()
        row = {"dev/cer": dev.cer, "dev/wer": dev.wer, "dev/loss": dev.loss, **self.clock(seen)}
        self.tracker.log({**row, "epoch": c.epoch}, step=c.step)
        rows = [[u.utt_id, u.text, h] for u, h in zip(dev.utts, dev.hypotheses, strict=True)]
        columns = ["id", "reference", "hypothesis"]
        self.tracker.log_table("dev/samples", columns, rows[: self.n_samples], c.step)
        tqdm.write(
            f"step {c.step} epoch {c.epoch}: dev CER {dev.cer:.4f} WER {dev.wer:.4f} "
            f"loss {dev.loss:.3f}{' (best)' if improved else ''}"
            f" | ref: {rows[0][1]!r} hyp: {rows[0][2]!r}"
        )

    def test_row(self, test: Transcripts) -> dict[str, float]:
        """The test split's result (of best.pt): logged, printed, and returned for the summary."""
        self.tracker.log({"test/cer": test.cer, "test/wer": test.wer}, step=self.counters.step)
        print(
            f"test: CER {test.cer:.4f} WER {test.wer:.4f} on {len(test.utts)} utterances (best.pt)"
        )
        return {"test_cer": test.cer, "test_wer": test.wer, "test_rtf": test.rtf}

    def note_problems(self, problems: list[tuple[str, str, str]]) -> None:
        """Count what loading a batch found, printing the first few of each kind."""
        for utt_id, kind, detail in problems:
            if (kind, utt_id) not in self.report:
                self.found_on_load.append((utt_id, kind, detail))
                if self.report.counts[kind] < 5:
                    tqdm.write(f"data: {kind}: {utt_id} ({detail})")
            self.report.add(kind, utt_id, detail)

    def summary(self) -> dict[str, Any]:
        """The run's numbers for summary.json, with every rank's load-time problems: each rank
        loaded a shard of the audio. A collective: every rank calls it."""
        for rank, theirs in enumerate(self.ddp.all_gather(list(self.found_on_load))):
            if rank != self.ddp.rank:
                self.report.merge(theirs)
        return progress_summary(
            dataclasses.asdict(self.counters),
            skipped=self.report.skipped,
            repaired=self.report.repaired,
            wall_start=self.wall_start,
        )
