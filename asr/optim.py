"""Optimizers and the learning-rate schedule as a pure function of training progress.

Progress p in [0, 1] is the largest fraction of any budget used (steps, epochs, minutes), so a
OneCycle schedule spans the real run whichever budget ends it, and survives a resume: it is
recomputed from the saved counters, not from a scheduler object's hidden step count.
"""

from __future__ import annotations

import math

import torch

from asr.schema import OptimConfig


def lr_at(p: float, cfg: OptimConfig) -> float:
    """Learning rate at progress p (clamped to [0, 1])."""
    p = min(max(p, 0.0), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "onecycle":  # torch's OneCycleLR with anneal_strategy="linear", as the seed
        start = cfg.lr / cfg.div_factor
        end = start / cfg.final_div_factor
        if p < cfg.pct_start:
            return start + (cfg.lr - start) * p / cfg.pct_start
        return cfg.lr + (end - cfg.lr) * (p - cfg.pct_start) / (1 - cfg.pct_start)
    if cfg.schedule == "cosine":
        if p < cfg.warmup:
            return cfg.lr * p / cfg.warmup
        q = (p - cfg.warmup) / (1 - cfg.warmup)
        low = cfg.lr * cfg.min_lr_ratio
        return low + (cfg.lr - low) * 0.5 * (1 + math.cos(math.pi * q))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def progress(
    step: int,
    epochs: float,
    minutes: float,
    max_steps: int | None,
    max_epochs: int | None,
    max_minutes: float | None,
) -> float:
    """The largest fraction of any budget used; 1.0 means training is over."""
    fractions = [0.0]
    if max_steps:
        fractions.append(step / max_steps)
    if max_epochs:
        fractions.append(epochs / max_epochs)
    if max_minutes:
        fractions.append(minutes / max_minutes)
    return max(fractions)


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adamw":
        # fused=None (not False) leaves torch to pick its default (foreach on CUDA).
        return torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.fused or None
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=True,
            fused=cfg.fused or None,  # fused: a non-finite step is skipped on the device
        )
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
