"""What the benchmark measures with: a subprocess's peak memory, window statistics, this
machine's matmul peak, and a model's training FLOPs per second of audio."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Finished:
    returncode: int
    seconds: float  # wall time of the whole subprocess, start-up included
    peak_pss_mib: float  # the process tree's proportional set size, sampled
    peak_rss_mib: float  # the main process's own peak (its VmHWM; see run_measured)
    log: Path


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree_pss_kib(pid: int) -> int:
    """PSS of `pid` and all its descendants: shared pages (forked DataLoader workers share most
    of the parent's) are split between the processes that share them, never counted twice."""
    children, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue  # gone already, or not ours to read
    return total


def _hwm_kib(pid: int) -> int:
    """The process's resident high-water mark (VmHWM), in KiB; 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def run_measured(cmd: list[str], log: Path, env: dict | None = None, cwd=None) -> Finished:
    """Run `cmd` to its end, output to `log`, sampling its tree's PSS every 0.25 s.

    The main process's peak RSS is its VmHWM, sampled every 0.05 s: a high-water mark, so each
    sample holds every earlier peak (only growth in the last 0.05 s could be missed). Not
    wait4's ru_maxrss: that counts the pages a forked child shared with this process before
    its exec, so a benchmark process holding 1.2 GB reported 1.2 GB for every child."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak, hwm = [0], [0]
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        done = threading.Event()

        def sample() -> None:
            tick = 0
            while not done.wait(0.05):  # the high-water mark often; all of /proc less
                hwm[0] = max(hwm[0], _hwm_kib(proc.pid))
                if tick % 5 == 0:
                    peak[0] = max(peak[0], tree_pss_kib(proc.pid))
                tick += 1

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    rss_kib = hwm[0] or usage.ru_maxrss  # a run too short to sample: the kernel's figure
    return Finished(
        proc.returncode, time.perf_counter() - start, peak[0] / 1024, rss_kib / 1024, log
    )


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (timings and traces must hold all of it); on
    the CPU, whose ops finish when they return, nothing."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_flops(
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    tf32: bool | None = None,
    n: int | None = None,
    repeats: int | None = None,
) -> float:
    """The best FLOP/s of a large square matmul here: the practical peak of this machine.

    `tf32` (CUDA): let fp32 matmuls use TF32 tensor cores (True) or not (False) while measuring;
    None leaves torch's switch as it is. The switch is restored afterwards."""
    n = n or (2048 if device.type == "cpu" else 8192)
    repeats = repeats or (12 if device.type == "cpu" else 30)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    if tf32 is not None and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    best = 0.0
    try:
        for _ in range(repeats):
            synchronize(device)
            t = time.perf_counter()
            a @ b
            synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    return best


def train_flops_per_audio_second(model: torch.nn.Module, n_feats: int, frames_per_second: float):
    """Matmul and conv FLOPs of one training step (forward and backward) per second of audio,
    counted by torch's FlopCounterMode on a padding-free batch (elementwise ops not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    seconds = 4.0
    frames = round(seconds * frames_per_second)
    feats, lens = torch.randn(2, n_feats, frames), torch.full((2,), frames)
    model.train()
    with FlopCounterMode(display=False) as counter:
        log_probs, _ = model(feats, lens)
        log_probs.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / (2 * seconds)
