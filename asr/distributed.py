"""Data-parallel training over several processes (PyTorch DDP), one per device.

`setup` joins the process group of this process's rank (see `asr.ranks` for where the rank
comes from), once per process, and never tears it down between jobs: inside a `--multirun` a
second `init_process_group` after `destroy_process_group` hangs. It is destroyed when the
process exits. In a single process everything here is a no-op without collectives.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from asr import checkpoint
from asr.ranks import Launch, detect

__all__ = ["DDP", "Vote", "setup", "start_time"]


@dataclass
class Vote:
    """All ranks' verdict on a step, taken before its backward pass. Floats when the vote was
    given floats; 0-d tensors on the loss's device when it was given a tensor (no host read)."""

    loss: float | torch.Tensor  # the global batch's loss (all ranks' utterances); NaN: skip
    scale: float | torch.Tensor  # multiplies this rank's loss: DDP's gradient average is global
    audio_seconds: float | torch.Tensor  # of all ranks' batches


class DDP:
    """The collectives the training loop needs, as no-ops in a single process.

    Each rank holds the same counters and takes the same decisions: every call here is made by
    all ranks at the same point of the loop, or the ones that make it wait forever. Decisions
    the host takes (stop, skip) reduce CPU tensors (gloo), which never wait for the GPU; the
    step's vote reduces tensors on the training device (NCCL on CUDA), which never wait for
    the host.
    """

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self.rank, self.world_size = launch.rank, launch.world_size
        self.enabled = launch.world_size > 1
        self.is_main = launch.rank == 0
        self._warned_workers = False

    def bind(self, device: torch.device) -> torch.device:
        """The training device of this rank: its own GPU on a multi-GPU node."""
        if self.enabled and device.type == "cuda":
            device = torch.device("cuda", self.launch.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        return device

    def num_workers(self, wanted: int) -> int:
        """DataLoader worker processes for this rank: none under DDP before Python 3.12.

        A worker is forked from a process whose process-group threads call into Python now and
        then; CPython before 3.12 (gh-112275, fixed later in some 3.10/3.11 patch releases)
        can deadlock such a child on an interpreter lock inherited held. Seen here: gloo,
        CPython 3.11.7, one DDP run in seven stuck at a worker's start. Data then loads in each
        rank's own process instead.
        """
        if self.enabled and wanted and sys.version_info < (3, 12):
            if self.is_main and not self._warned_workers:
                print(f"ddp: data.num_workers={wanted} ignored: loading in-process (Python < 3.12)")
            self._warned_workers = True
            return 0
        return wanted

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `model` (the same module in a single process).

        Checkpoints, evaluation and the optimizer keep using the inner module; only the training
        forward goes through the wrapper, whose backward averages the gradients over ranks.
        """
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # -- collectives ---------------------------------------------------------------------------

    def max(self, *values: float) -> list[float]:
        """Each value's maximum over ranks, in one all_reduce."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)  # CPU: gloo
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank: one decision, even when the ranks' views differ (a file
        that rank 0 found may not have reached another node's view of a shared disk yet)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def vote(self, loss: float | torch.Tensor, n_utts: int, audio_seconds: float) -> Vote:
        """Agree on a step before its backward: either every rank steps or none does.

        One non-finite loss skips the step on all ranks (DDP's backward is a collective that
        all must join, and replicas that step apart diverge). Each rank's loss is the mean over
        its own utterances; scaled by n_rank * world / n_total, DDP's average of the gradients
        is the gradient of the mean over all utterances, whatever each rank's batch size.
        A tensor `loss` is reduced where it lives, with no host read.
        """
        if not self.enabled:
            return Vote(loss, 1.0, audio_seconds)
        as_tensor = isinstance(loss, torch.Tensor)
        own = torch.as_tensor(loss, dtype=torch.float64).detach()
        finite = torch.isfinite(own)
        t = torch.stack(
            [
                torch.where(finite, own * n_utts, 0.0),
                torch.full_like(own, n_utts),
                (~finite).to(own.dtype),
                torch.full_like(own, audio_seconds),
            ]
        )
        dist.all_reduce(t)
        loss_sum, n_total, n_bad, audio = t.unbind()
        skip = (n_bad > 0) | (n_total == 0)
        global_loss = torch.where(skip, torch.nan, loss_sum / n_total.clamp_min(1))
        scale = torch.where(skip, 0.0, n_utts * self.world_size / n_total.clamp_min(1))
        if as_tensor:
            return Vote(global_loss.to(loss.dtype), scale.to(loss.dtype), audio)
        return Vote(float(global_loss), float(scale), float(audio))

    # -- per-rank RNG (dropout) ------------------------------------------------------------------

    def seed(self, seed: int, *extra: int) -> None:
        """Give ranks other than 0 their own dropout stream; rank 0 keeps the one it has, so a
        single process is left exactly as it was."""
        if self.rank:
            entropy = np.random.SeedSequence([seed, self.rank, *extra]).generate_state(1)[0]
            torch.manual_seed(int(entropy))

    def restore_rng(self, state: dict[str, Any], seed: int, step: int) -> None:
        """Each rank continues its own RNG stream from a checkpoint. A checkpoint written by
        another number of ranks has none for this rank: rank 0 takes the saved one, the others
        a stream derived from (seed, rank, step)."""
        per_rank = state.get("rng_ranks") or [state["rng"]]
        checkpoint.set_rng_state(per_rank[self.rank] if self.rank < len(per_rank) else state["rng"])
        if self.rank >= len(per_rank):
            self.seed(seed, step)

    def resume_position(self, batch_in_epoch: int, saved_world_size: int) -> int:
        """The batch to resume the epoch at, in this world's shards. With another number of
        ranks than the checkpoint's, a few batches of that epoch (fewer than the world size)
        are trained on twice; with the same number, the epoch continues exactly."""
        return batch_in_epoch * saved_world_size // self.world_size


_DDP: DDP | None = None
_START: datetime | None = None


def setup() -> DDP:
    """Join this process's process group, once per process; later calls return the same one."""
    global _DDP
    if _DDP is not None:
        return _DDP
    launch = detect()
    if launch.world_size > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
        # torchrun exports these; under Slurm they come from `detect`. env:// reads them.
        os.environ.setdefault("MASTER_ADDR", launch.master_addr)
        os.environ.setdefault("MASTER_PORT", str(launch.master_port))
        os.environ.setdefault("RANK", str(launch.rank))
        os.environ.setdefault("WORLD_SIZE", str(launch.world_size))
        os.environ.setdefault("LOCAL_RANK", str(launch.local_rank))
        # gloo for CPU tensors, nccl for GPU ones: the training device is not known yet
        # (train.py joins before Hydra composes the config).
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
        dist.init_process_group(backend, init_method="env://")
        atexit.register(_teardown)
        print(
            f"ddp: rank {launch.rank} of {launch.world_size} ({launch.launcher}, {backend})",
            flush=True,
        )
    _DDP = DDP(launch)
    return _DDP


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def start_time() -> datetime:
    """When this job started: rank 0's clock on every rank, so that all ranks of a torchrun
    job name the same timestamped run directory (each computing its own can differ by a
    second). Fixed at the first call in a process."""
    global _START
    if _START is not None:
        return _START
    now = datetime.now()
    if dist.is_initialized():
        box = [now]
        dist.broadcast_object_list(box, src=0)
        now = box[0]
    elif detect().world_size > 1:
        return now  # a rank asked before joining its group: not yet the job's time
    _START = now
    return now
