"""Where this process stands among the processes of one training job: rank and world size.

Who starts the processes decides how a rank learns its place; `detect` reads, in order:
- torchrun (`torchrun --nproc_per_node=N train.py ...`): RANK, WORLD_SIZE, LOCAL_RANK and
  MASTER_ADDR/PORT, which torchrun sets for every worker;
- Slurm's srun (what the submitit launcher runs, one task per GPU): SLURM_PROCID,
  SLURM_STEP_NUM_TASKS, SLURM_LOCALID; the first node of the step is the master, and the port
  is derived from the job id (as submitit does), unless MASTER_ADDR/PORT are set;
- submitit's local executor (`hydra/launcher=submitit_local` with tasks_per_node > 1): the same
  on one machine, which lets the Slurm code path be tried without Slurm.
Anything else is one process. Environment only, no torch: Hydra's resolvers and callbacks use
it before any process group exists (`asr.distributed` joins one).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Launch", "detect", "first_host", "is_main_rank", "rank_suffix"]


@dataclass(frozen=True)
class Launch:
    """Where this process stands among the processes of one training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on this node: which GPU to use
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"  # single | torchrun | slurm | submitit_local


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: `gpu[07-09,12],cpu1` -> `gpu07`."""
    head = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?", nodelist.strip())
    if head is None or not head.group(0):
        raise ValueError(f"cannot read the Slurm node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def _port_for(job_id: str) -> int:
    # submitit's choice (TorchDistributedEnvironment): the same port on every task of a job,
    # different ones for the jobs of an array that may share a node.
    return random.Random(job_id).randint(20000, 60000)


def detect(env: Mapping[str, str] = os.environ) -> Launch:
    """This process's rank and world from its launcher's environment (see the module doc)."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return Launch(
            int(env["RANK"]),
            int(env["WORLD_SIZE"]),
            int(env.get("LOCAL_RANK", 0)),
            env.get("MASTER_ADDR", "127.0.0.1"),
            int(env.get("MASTER_PORT", 29500)),
            "torchrun",
        )
    # Only srun sets SLURM_STEP_NUM_TASKS. A batch script also sees SLURM_NTASKS and
    # SLURM_PROCID=0, but a plain `python train.py` there is one process, not rank 0 of many.
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        job_id = env.get("SLURM_JOB_ID", "0")
        if env.get("SLURM_ARRAY_JOB_ID"):
            job_id = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "127.0.0.1"
        return Launch(
            int(env["SLURM_PROCID"]),
            int(env["SLURM_STEP_NUM_TASKS"]),
            int(env.get("SLURM_LOCALID", 0)),
            env.get("MASTER_ADDR") or first_host(nodes),
            int(env.get("MASTER_PORT") or _port_for(job_id)),
            "slurm",
        )
    if "SUBMITIT_LOCAL_NTASKS" in env and "SUBMITIT_LOCAL_GLOBALID" in env:
        return Launch(
            int(env["SUBMITIT_LOCAL_GLOBALID"]),
            int(env["SUBMITIT_LOCAL_NTASKS"]),
            int(env.get("SUBMITIT_LOCAL_LOCALID", 0)),
            env.get("MASTER_ADDR", "127.0.0.1"),
            int(env.get("MASTER_PORT") or _port_for(env.get("SUBMITIT_LOCAL_JOB_ID", "0"))),
            "submitit_local",
        )
    return Launch()


def is_main_rank(env: Mapping[str, str] = os.environ) -> bool:
    """Rank 0, or a single process: known from the environment, before any process group."""
    return detect(env).rank == 0


def rank_suffix(env: Mapping[str, str] = os.environ) -> str:
    """`.rank<N>` for ranks other than 0, so their log files do not clobber rank 0's."""
    rank = detect(env).rank
    return f".rank{rank}" if rank else ""
