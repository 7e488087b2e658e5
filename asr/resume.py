"""Where a training run starts: fresh, resumed from a checkpoint, or from another run's weights.

- `Counters`: where training stands, the state a resume continues from (with the weights,
  the optimizer and every rank's RNG).
- `resume_state`: this run directory's last.pt wins, then `trainer.resume`; under DDP every
  rank loads the checkpoint rank 0 chose.
- `changed_settings`: a run resumes only with the settings that decide what it is trained on
  (features, text, model) as its checkpoint has them. Changed, they would switch the features
  (or the labels, or the network) in the middle of a run without a word; the trainer refuses
  them in one line unless `trainer.accept_changed_settings=true`.
- `restore`: the model, optimizer, counters and RNG streams from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr import checkpoint
from asr.distributed import DDP
from asr.features import FEATURE_KEYS
from asr.schema import ConfigError, TrainConfig, TrainerConfig

__all__ = [
    "Counters",
    "changed_settings",
    "check_resumable",
    "init_weights",
    "restore",
    "resume_state",
]

TEXT_KEYS = ("language", "alphabet")  # the labels: normalisation and the output symbols


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


def resume_state(
    run_dir: Path, trainer: TrainerConfig, ddp: DDP, *, trust: bool = False
) -> tuple[Path | None, dict[str, Any] | None]:
    """(the checkpoint to resume from, its state), or (None, None) for a fresh run."""
    if ddp.is_main:  # rank 0 writes the checkpoints, so only it may clean up after them
        checkpoint.remove_stale_temporaries(run_dir)  # left by a run killed mid-save
    last = run_dir / "last.pt"
    path = last if last.is_file() else None
    if path is None and trainer.resume:
        path = checkpoint.resolve_checkpoint(trainer.resume, "last.pt")
    path = ddp.broadcast(path)  # a shared disk may lag
    return path, (checkpoint.load(path, trust=trust) if path else None)


def changed_settings(state: dict[str, Any], cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """(key, the checkpoint's value, this run's value) for each setting that decides what is
    trained on and differs. A checkpoint from before a setting existed has its old meaning
    (`checkpoint.checkpoint_data`); model settings it does not record are not compared."""
    saved_data = dataclasses.asdict(checkpoint.checkpoint_data(state))
    saved_model = state["config"].get("model", {})
    now_data, now_model = dataclasses.asdict(cfg.data), dataclasses.asdict(cfg.model)
    keys = (*FEATURE_KEYS, *TEXT_KEYS)
    if cfg.data.corpus == "shards":  # the workers are the streams the shards are dealt to
        keys += ("num_workers", "shuffle_buffer")
    pairs = [(f"data.{k}", saved_data.get(k), now_data[k]) for k in keys]
    pairs += [(f"model.{k}", saved_model[k], v) for k, v in now_model.items() if k in saved_model]
    return [(key, old, new) for key, old, new in pairs if old != new]


def check_resumable(state: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    """Refuse, in one line, a resume whose settings differ from its checkpoint's (see the
    module docstring), unless the user accepted it."""
    changed = changed_settings(state, cfg)
    if not changed:
        return
    key, old, new = changed[0]
    others = f" (and {', '.join(k for k, _, _ in changed[1:])})" if changed[1:] else ""
    message = (
        f"resuming {path}: {key} is {old!r} there and {new!r} now{others}, which changes what "
        "is trained on"
    )
    if not cfg.trainer.accept_changed_settings:
        raise ConfigError(f"{message}; trainer.accept_changed_settings=true resumes anyway")
    print(f"warning: {message}; resuming anyway (trainer.accept_changed_settings=true)")


def restore(
    state: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    ddp: DDP,
    seed: int,
) -> Counters:
    """Load the checkpoint's weights, optimizer and RNG streams; return its counters, with the
    epoch's position re-sharded if the number of ranks changed."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    counters = Counters(**state["counters"])
    ddp.restore_rng(state, seed, counters.step)  # dropout streams
    counters.batch_in_epoch = ddp.resume_position(
        counters.batch_in_epoch, state.get("world_size", 1)
    )
    return counters


def init_weights(model: torch.nn.Module, source: str, *, trust: bool = False) -> None:
    """`trainer.init_from`: a new run starting from another run's best weights."""
    init = checkpoint.load(checkpoint.resolve_checkpoint(source, "best.pt"), trust=trust)
    try:
        model.load_state_dict(init["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"trainer.init_from: weights do not fit this model ({first})") from None
