"""The GPU benchmark's profiler traces of training steps: what each step syncs, copies and
launches (counted from a `torch.profiler` chrome trace), where in the project's code its syncs
are (`torch.cuda.set_sync_debug_mode`), and the traces kept for Perfetto (--traces)."""

from __future__ import annotations

import gzip
import json
import shutil
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from bench.measure import synchronize
from bench.sides import ROOT

STEP_MARK = "bench_step"  # the profiler range around each profiled step
SYNC_CALLS = {
    "stream": ("cudaStreamSynchronize", "cuStreamSynchronize"),
    "device": ("cudaDeviceSynchronize", "cuCtxSynchronize"),
    "event": ("cudaEventSynchronize", "cuEventSynchronize"),
}
PER_STEP = (  # the counts that count_trace reports per step
    "sync_stream",
    "sync_device",
    "sync_event",
    "memcpy_sync_calls",
    "dtoh",
    "htod_pageable",
    "htod_pinned",
    "launches",
)


def count_trace(trace: dict, steps: int) -> dict:
    """Per-step counts from a chrome trace of `steps` steps, each inside a STEP_MARK range:
    host sync calls and copies issued inside the steps (not the synchronize that closes the
    trace), by kind, and the GPU's kernel time."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    marks = sorted(
        (e["ts"], e["ts"] + e.get("dur", 0))
        for e in events
        if e.get("name") == STEP_MARK and e.get("cat") == "user_annotation"
    )
    runtime = [
        e
        for e in events
        if e.get("cat") in ("cuda_runtime", "cuda_driver")
        and any(start <= e["ts"] <= end for start, end in marks)
    ]
    # The device's work is tied to the host calls that issued it by their correlation ids.
    ids = {e.get("args", {}).get("correlation") for e in runtime}
    issued = [e for e in events if e.get("args", {}).get("correlation") in ids]
    counts = count_host_calls(runtime) + count_device_copies(issued)
    per_step = {k: counts[k] / steps for k in PER_STEP}
    # Host syncs: the synchronize calls, and copies by the blocking cudaMemcpy. A copy from
    # pageable host memory (htod_pageable) blocks the host while it is staged, but does not wait
    # for the device's queue: reported, not counted as a sync.
    per_step["syncs"] = (
        sum(per_step[f"sync_{k}"] for k in SYNC_CALLS) + per_step["memcpy_sync_calls"]
    )
    kernel_us = sum((e.get("dur", 0) for e in issued if e.get("cat") == "kernel"), 0.0)
    per_step["gpu_kernel_ms"] = kernel_us / 1000 / steps
    per_step["host_step_ms"] = sum(e - s for s, e in marks) / 1000 / max(len(marks), 1)
    per_step["traced_steps"] = len(marks)
    per_step["cuda_events_seen"] = any(e.get("cat") == "kernel" for e in events)
    return per_step


def count_host_calls(runtime: list[dict]) -> Counter[str]:
    """The CUDA runtime and driver calls that synchronize, launch kernels, or copy blocking."""
    counts: Counter[str] = Counter()
    for e in runtime:
        name = e.get("name", "")
        for kind, prefixes in SYNC_CALLS.items():
            if name.startswith(prefixes):
                counts[f"sync_{kind}"] += 1
        if name.startswith(("cudaLaunch", "cuLaunch")):
            counts["launches"] += 1
        if name.startswith("cudaMemcpy") and not name.startswith("cudaMemcpyAsync"):
            counts["memcpy_sync_calls"] += 1  # cudaMemcpy (not Async) blocks the host
    return counts


def count_device_copies(issued: list[dict]) -> Counter[str]:
    """The device's copies: to the host, and from pageable or pinned host memory."""
    counts: Counter[str] = Counter()
    for e in issued:
        name = e.get("name", "")
        if e.get("cat") != "gpu_memcpy":
            continue
        if "DtoH" in name:
            counts["dtoh"] += 1
        elif "HtoD" in name:
            counts["htod_pageable" if "Pageable" in name else "htod_pinned"] += 1
    return counts


def profile_steps(step, n: int, device: torch.device, trace_path: Path) -> dict:
    """`n` steps under the profiler, each in a STEP_MARK range; their trace, written to
    `trace_path`, counted."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(device)
    with profile(activities=activities) as prof:
        for i in range(n):
            with record_function(STEP_MARK):
                step(i)
        synchronize(device)  # inside the trace, outside the steps: their GPU work is all recorded
    prof.export_chrome_trace(str(trace_path))
    return count_trace(json.loads(trace_path.read_text()), n)


def sync_sites(step, n: int, device: torch.device) -> dict[str, int]:
    """Where the steps synchronize, by `torch.cuda.set_sync_debug_mode("warn")`: the innermost
    frame of the project's code under each synchronizing call, with its count over `n` steps."""
    if device.type != "cuda":
        return {}
    sites: Counter[str] = Counter()

    def show(message, category, filename, lineno, file=None, line=None):
        frames = [
            f
            for f in traceback.extract_stack()[:-1]
            if f.filename.startswith(str(ROOT))
            and "site-packages" not in f.filename
            and f.name != "show"
        ]
        where = frames[-1] if frames else None
        at = f"{Path(where.filename).relative_to(ROOT)}:{where.lineno}" if where else "?"
        sites[f"{at} {str(message).splitlines()[0][:80]}"] += 1

    synchronize(device)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(n):
                step(i)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    synchronize(device)
    return dict(sites)


def trace_file(folder: Path, side: str, batch: int, precision: str) -> Path:
    """Where a configuration's trace goes: keep_traces picks them by this name."""
    return folder / f"trace-{side}-{batch}-{precision}.json"


def keep_traces(dest: str | None, work: Path, batch: int) -> None:
    """With --traces DEST: each side's profiler trace at `batch`, gzipped, into DEST (open them
    in Perfetto or chrome://tracing)."""
    if not dest:
        return
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for trace in sorted(work.glob(f"trace-*-{batch}-*.json")):
        with open(trace, "rb") as src, gzip.open(folder / f"{trace.name}.gz", "wb") as out:
            shutil.copyfileobj(src, out)
