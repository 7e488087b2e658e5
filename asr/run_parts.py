"""A training run's parts, assembled from its config: the vocabulary, the data, the model, the
dev/test decoder, the optimizer, and where training stands (fresh, resumed from a checkpoint,
or started from another run's weights). The trainer (`asr.loop`) trains what this builds.

The order is part of exact resume: the global RNG is seeded before the model is built (its
initial weights), and a fresh run's ranks get their own dropout streams only after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr import resume
from asr.data.loader import TrainingData, default_num_workers, make_training_data
from asr.decoding import make_run_decoder
from asr.distributed import DDP
from asr.model import DeepSpeech2, num_params
from asr.optim import build_optimizer
from asr.resume import Counters
from asr.schema import ConfigError, TrainConfig
from asr.text import Vocabulary, make_vocabulary
from asr.tracking import read_summary

__all__ = ["RunParts", "build_run_parts"]


@dataclass
class RunParts:
    vocab: Vocabulary
    model: DeepSpeech2  # checkpoints, evaluation and the optimizer use this one
    train_model: torch.nn.Module  # the training forward: DDP around `model` under DDP
    optimizer: torch.optim.Optimizer
    data: TrainingData
    decoder: Any  # asr.decoding's greedy or beam decoder, for dev and test
    counters: Counters
    run_id: str | None  # the W&B run to continue, if any
    resume_from: Path | None
    n_params: int


def build_run_parts(cfg: TrainConfig, run_dir: Path, *, ddp: DDP, device: torch.device) -> RunParts:
    torch.manual_seed(cfg.seed)
    resume_from, state = resume.resume_state(run_dir, cfg.trainer, ddp, trust=cfg.trust_checkpoint)
    if state is not None:
        resume.check_resumable(state, cfg, resume_from)
    d = cfg.data
    vocab = make_vocabulary(d.alphabet)
    if cfg.model.n_class != vocab.n_class:  # asr.config checks it too
        raise ConfigError(f"model.n_class ({cfg.model.n_class}) must be {vocab.n_class}")
    model = DeepSpeech2(cfg.model)
    data = make_training_data(
        d,
        cfg.augment,
        vocab,
        model.output_lengths,
        seed=cfg.seed,
        device=device,
        rank=ddp.rank,
        world_size=ddp.world_size,
        num_workers=ddp.num_workers(default_num_workers(d.num_workers, device)),
    )
    print(f"data: {data.describe()}")
    for line in data.report.table():
        print(f"data: {line.strip()}")
    decoder = make_run_decoder(
        cfg.decode,
        vocab,
        language=d.language,
        train_manifest=lambda: data.manifests["train"],
        cache_dir=Path(d.cache_dir).expanduser(),
    )
    model.to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    counters = Counters()
    # A run killed before its first checkpoint still continues its W&B run: the Tracker wrote
    # the id to summary.json first thing. A checkpoint's id wins (it may come from elsewhere,
    # through trainer.resume).
    run_id = read_summary(run_dir).get("run_id")
    if state is not None:
        counters = resume.restore(state, model=model, optimizer=optimizer, ddp=ddp, seed=cfg.seed)
        run_id = state.get("wandb_run_id")
        print(f"resumed from {resume_from} at step {counters.step}, epoch {counters.epoch}")
    elif cfg.trainer.init_from:
        resume.init_weights(model, cfg.trainer.init_from, trust=cfg.trust_checkpoint)
        print(f"initialised weights from {cfg.trainer.init_from}")
    if state is None:
        ddp.seed(cfg.seed)  # dropout masks differ between ranks
    return RunParts(
        vocab=vocab,
        model=model,
        train_model=ddp.wrap(model),
        optimizer=optimizer,
        data=data,
        decoder=decoder,
        counters=counters,
        run_id=run_id,
        resume_from=resume_from,
        n_params=num_params(model),
    )
