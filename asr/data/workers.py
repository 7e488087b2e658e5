"""DataLoader worker processes: how they start, what they ignore, how they stop.

Every loader of a run (`asr.data.loader` for tables, `asr.data.shards` for shards) starts its
workers with `worker_options`: forked on Linux, persistent, at a lower priority with one
thread, ignoring the scheduler's stop signals, and with their own seed generator.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import sys

import torch
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from asr.cluster import ignore_stop_signals


def init_worker(_: int) -> None:
    # What the worker inherited from the main process stays out of its garbage collector: a
    # collection writes to every object it visits, which would copy each page of the parent's
    # heap into the worker (what `gc.freeze` is for; moving the generations is O(1)).
    gc.freeze()
    # Feature extraction is light; one thread per worker keeps the cores for the model, and a
    # lower priority lets it use the time the model's threads leave idle (between the GRU's
    # small steps) without preempting them: each preemption stalls the model's other thread.
    torch.set_num_threads(1)
    os.nice(10)
    # Schedulers (Slurm's scancel, preemption, its warning) and Ctrl-C signal every process of
    # the job. The main process saves and stops on them, and needs its workers until then: a
    # worker killed by the signal would fail the run instead. Workers still stop when the main
    # process does (DataLoader shuts them down, or they notice it is gone).
    ignore_stop_signals()


@atexit.register
def _stop_persistent_workers() -> None:
    """Stop live DataLoader workers the DataLoader's way when the process exits.

    Persistent workers are still alive at exit whenever a loader is (a module-level one, or one
    held by a traceback). multiprocessing's own exit handler stops daemonic children with
    SIGTERM, which these workers ignore (`_worker_init`), and would then wait for them forever.
    Handlers run last-registered-first, so this one runs before multiprocessing's.
    """
    for obj in gc.get_objects():
        if type(obj) is _MultiProcessingDataLoaderIter:
            obj._shutdown_workers()


def worker_context() -> multiprocessing.context.BaseContext | None:
    # Inside a joblib (loky) sweep worker the default context is loky's own, which cannot start
    # DataLoader workers; ask for Linux's usual fork explicitly.
    return multiprocessing.get_context("fork") if sys.platform == "linux" else None


def worker_options(num_workers: int, *, pin_memory: bool, seed: int) -> dict:
    """DataLoader arguments for `num_workers` workers started as every loader of a run starts
    them. The loader has its own `generator`: without one, every `iter(loader)` draws its worker
    seed from torch's global RNG, which a resumed run (one more iterator) would shift."""
    return dict(
        num_workers=num_workers,
        worker_init_fn=init_worker if num_workers > 0 else None,
        multiprocessing_context=worker_context() if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
