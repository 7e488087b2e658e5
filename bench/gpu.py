"""Benchmark the product against the seed's recipe (bench/seed_baseline.py) on one CUDA GPU.

python bench/gpu.py              # on one CUDA GPU, the corpus in .gpu/data/ (or --data DIR)
python bench/gpu.py --smoke      # CPU, tiny model and corpus: checks that every phase runs

Phases; every side runs in its own subprocesses (so its host memory, PSS, is its own), and
the two sides take turns where a measurement is repeated:
1. step: one training step alone (batches already on the device, no DataLoader) at the seed's
   model size and batch 10, 64 and 128: the product's `asr.loop.train_step` in its default
   precision at every batch size and in fp32, tf32 and bf16 at the largest, against the
   seed's step (forward, CTC, backward, AdamW, `loss.item()`). Audio seconds per second (the
   median of timed windows after a warm-up, `torch.cuda.synchronize()` around each window),
   the fraction of the matmul peak of its precision measured in the same run, the GPU memory
   of the configuration (`torch.cuda.max_memory_allocated`, reset per configuration), and,
   from a `torch.profiler` trace of a few steady-state steps, the host syncs, device-to-host
   copies and blocking host-to-device copies per step (and where in the code the syncs are,
   from `torch.cuda.set_sync_debug_mode`).
2. e2e: `train.py` against `bench/seed_baseline.py train` at the seed's size and batch 10, as a
   user runs them (data loading included): audio seconds per second and peak host PSS.
3. eval: the real-time factor of the product's evaluation (`asr.evaluation`, as evaluate.py)
   against the seed's decode loop on the test split, with the e2e phase's weights: a cold
   pass, then a warm one (the same process, everything loaded and warmed); and host PSS.
It prints a table with the ratios and targets, and writes --out (default
bench/results_gpu.json; with --smoke, bench/results_gpu_smoke.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import gzip
import json
import math
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench import sides  # noqa: E402
from bench.measure import (  # noqa: E402
    matmul_peak_flops,
    median,
    run_measured,
    train_flops_per_audio_second,
)
from bench.sides import (  # noqa: E402
    SEED_SIZE,
    Manifests,
    Size,
    ratio,
    train_baseline,
    train_product,
    write_tiny_manifest,
)

PRECISIONS = ("fp32", "tf32", "bf16")
BASELINE_PRECISION = "seed"  # fp32 with torch's default switches (cuDNN convolutions in TF32)
SIDES = ("baseline", "product")
STEP_MARK = "bench_step"  # the profiler range around each profiled step


@dataclasses.dataclass
class Plan:
    size: Size  # the model (and the e2e batch size)
    batches: tuple[int, ...]  # step phase: batch sizes; targets compare the last to the first
    step_rounds: int  # interleaved (baseline, product) rounds of step measurements
    warmup_steps: int  # per configuration and round, before the probe and the timed windows
    windows: int  # timed windows per configuration and round
    window_seconds: float  # a window's length: steps per window come from a probed step time
    profile_steps: int  # steady-state steps in each profiler trace (first round only)
    batches_per_size: int  # distinct batches per batch size, used in turn
    e2e_rounds: int
    e2e_log_every: int  # steps per e2e window
    e2e_windows: int  # timed e2e windows, after one warm-up window
    eval_batch: int
    eval_passes: int  # the first is cold; the target is held on the last
    matmul_n: int | None = None  # None: measure.py's defaults
    matmul_repeats: int | None = None


PLANS = {
    "gpu": Plan(SEED_SIZE, (10, 64, 128), 2, 3, 4, 0.3, 3, 2, 1, 10, 8, 16, 2),
    "smoke": Plan(Size(1, 1, 16, 4, 16), (2, 4, 8), 1, 1, 2, 0.0, 1, 1, 1, 2, 2, 4, 2, 512, 5),
}


# ------------------------------------------------------------------------------ small helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def default_precision() -> str:
    """The product's default `trainer.precision` (asr/schema.py)."""
    from asr.schema import TrainerConfig

    field = next(f for f in dataclasses.fields(TrainerConfig) if f.name == "precision")
    return field.default


def progress(message: str) -> None:
    print(f"[gpu-bench] {message}", flush=True)


def machine(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=torch.cuda.get_device_name(device),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


# ----------------------------------------------------------------- step phase: the batches


def build_step_batches(m: Manifests, plan: Plan, path: Path, seed: int = 0) -> dict:
    """`plan.batches_per_size` batches of each size, drawn from the training utterances and
    sorted longest first, as features (float16, the product's log-mel) in `path`: every step
    worker, of either side, loads the same batches."""
    from asr.data.checks import ProblemReport
    from asr.data.dataset import SpeechDataset, prepare_utterances
    from asr.data.loader import ctc_frames_fn, make_logmel
    from asr.data.manifest import read_manifest
    from asr.model import conv_output_lengths
    from asr.schema import DataConfig
    from asr.text import make_vocabulary

    data = DataConfig(n_mels=plan.size.n_mels, language=m.language)
    vocab = make_vocabulary(data.alphabet)
    logmel = make_logmel(data)
    frames = ctc_frames_fn(logmel, conv_output_lengths)
    report = ProblemReport()
    utts = prepare_utterances(
        read_manifest(m.train, report), vocab, m.language, data.max_duration, frames, report
    )
    if not utts:
        raise SystemExit(f"error: no usable training utterances in {m.train}")
    dataset = SpeechDataset(utts, logmel, None)
    feats_of: dict[int, torch.Tensor] = {}
    out: dict[int, list[dict]] = {}
    for b in plan.batches:
        out[b] = []
        for j in range(plan.batches_per_size):
            rng = random.Random(f"{seed}-{b}-{j}")
            idx = (
                rng.sample(range(len(utts)), b)
                if b <= len(utts)
                else rng.choices(range(len(utts)), k=b)
            )
            for i in idx:
                if i not in feats_of:
                    item = dataset[i]
                    if item.feats is None:
                        raise SystemExit(f"error: {utts[i].audio_path}: {item.problems}")
                    feats_of[i] = item.feats
            idx.sort(key=lambda i: -feats_of[i].shape[1])  # longest first, as the collate does
            lens = [feats_of[i].shape[1] for i in idx]
            feats = torch.zeros(b, plan.size.n_mels, max(lens), dtype=torch.float16)
            targets = torch.zeros(b, max(len(utts[i].labels) for i in idx), dtype=torch.long)
            for k, i in enumerate(idx):
                feats[k, :, : lens[k]] = feats_of[i]
                targets[k, : len(utts[i].labels)] = torch.tensor(utts[i].labels)
            out[b].append(
                {
                    "feats": feats,
                    "feat_lens": torch.tensor(lens, dtype=torch.long),
                    "targets": targets,
                    "target_lens": torch.tensor([len(utts[i].labels) for i in idx]),
                    "utts": [
                        [
                            utts[i].utt_id,
                            str(utts[i].audio_path),
                            utts[i].text,
                            list(utts[i].labels),
                            utts[i].duration,
                        ]
                        for i in idx
                    ],
                }
            )
    torch.save(out, path)
    return {
        str(b): [
            {"audio_seconds": sum(u[4] for u in x["utts"]), "frames": int(x["feats"].shape[2])}
            for x in xs
        ]
        for b, xs in out.items()
    }


# --------------------------------------------------------------- step phase: the two steps


class ProductStep:
    """`asr.loop.train_step` on the product's model and fused AdamW, in `precision`."""

    def __init__(self, size: Size, precision: str, device: torch.device, raw: list[dict]):
        from asr.data.dataset import Batch, Utterance
        from asr.loop import train_step
        from asr.model import DeepSpeech2, ModelConfig
        from asr.optim import build_optimizer, lr_at, set_lr
        from asr.precision import configure_precision
        from asr.schema import OptimConfig, TrainerConfig
        from asr.text import Vocabulary

        self.autocast = configure_precision(precision, device)
        cfg = ModelConfig(size.n_cnn, size.n_rnn, size.rnn_dim, size.n_mels)
        self.model = DeepSpeech2(cfg).to(device)
        self.optim_cfg = OptimConfig(fused=True)
        self.optimizer = build_optimizer(self.model.parameters(), self.optim_cfg)
        self.blank = Vocabulary().blank
        self.grad_clip = TrainerConfig().grad_clip
        self.device = device
        self._train_step, self._lr_at, self._set_lr = train_step, lr_at, set_lr
        self.batches = []
        for x in raw:  # feats and targets on the device already; lengths stay on the host
            utts = [Utterance(u[0], Path(u[1]), u[2], tuple(u[3]), u[4]) for u in x["utts"]]
            self.batches.append(
                Batch(
                    x["feats"].to(device, torch.float32),
                    x["feat_lens"],
                    x["targets"].to(device),
                    x["target_lens"],
                    utts,
                    [],
                )
            )
        self.audio = [b.audio_seconds for b in self.batches]
        self.last = None

    def __call__(self, i: int) -> None:
        self._set_lr(self.optimizer, self._lr_at(0.3, self.optim_cfg))  # as the loop, per step
        self.last = self._train_step(
            self.model,
            self.optimizer,
            self.batches[i % len(self.batches)],
            self.blank,
            self.grad_clip,
            self.device,
            autocast=self.autocast,
        )

    def check(self) -> dict:
        """The last step's loss and finiteness (a host sync: outside the timed windows)."""
        r = self.last
        return {"loss": float(r.loss), "finite": bool(r.finite)}


class BaselineStep:
    """The seed's step, as the loop body of bench/seed_baseline.py's `train` (its lr schedule,
    zero_grad, forward, CTC with host lengths, backward, AdamW, `loss.item()`), on batches
    already on the device: the same utterances as the product's, with the product's log-mel."""

    def __init__(self, size: Size, device: torch.device, raw: list[dict]):
        from torch import nn

        from asr.text import Vocabulary
        from bench.seed_baseline import SpeechRecognitionModel, onecycle_lr

        vocab = Vocabulary()
        self.model = SpeechRecognitionModel(
            size.n_cnn, size.n_rnn, size.rnn_dim, vocab.n_class, size.n_mels, 2, 0.1
        ).to(device)
        self.model.train()
        self.lr = onecycle_lr(0.3, 5e-4)  # the seed's default peak learning rate
        self.optimizer = torch.optim.AdamW(self.model.parameters(), 5e-4)
        self.criterion = nn.CTCLoss(blank=vocab.blank, zero_infinity=True).to(device)
        self.batches = [
            (
                x["feats"].to(device, torch.float32).unsqueeze(1),  # (B, 1, F, T)
                x["targets"].to(device),
                [int(n) // 2 for n in x["feat_lens"]],  # the seed's CTC input lengths
                [int(n) for n in x["target_lens"]],
            )
            for x in raw
        ]
        self.audio = [sum(u[4] for u in x["utts"]) for x in raw]
        self.last = math.nan

    def __call__(self, i: int) -> None:
        spectrograms, labels, input_lengths, label_lengths = self.batches[i % len(self.batches)]
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad()
        output = F.log_softmax(self.model(spectrograms), dim=2)  # (B, T, C)
        loss = self.criterion(output.transpose(0, 1), labels, input_lengths, label_lengths)
        loss.backward()
        self.optimizer.step()
        self.last = loss.item()  # the seed read the loss at every step

    def check(self) -> dict:
        return {"loss": self.last, "finite": math.isfinite(self.last)}


# --------------------------------------------------------- step phase: counting the syncs

SYNC_CALLS = {
    "stream": ("cudaStreamSynchronize", "cuStreamSynchronize"),
    "device": ("cudaDeviceSynchronize", "cuCtxSynchronize"),
    "event": ("cudaEventSynchronize", "cuEventSynchronize"),
}


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

    def in_step(ts: float) -> bool:
        return any(start <= ts <= end for start, end in marks)

    runtime = [
        e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver") and in_step(e["ts"])
    ]
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
    ids = {e.get("args", {}).get("correlation") for e in runtime}
    kernel_us = 0.0
    for e in events:
        cat, name = e.get("cat"), e.get("name", "")
        if cat == "kernel" and e.get("args", {}).get("correlation") in ids:
            kernel_us += e.get("dur", 0)
        if cat != "gpu_memcpy" or e.get("args", {}).get("correlation") not in ids:
            continue
        if "DtoH" in name:
            counts["dtoh"] += 1
        elif "HtoD" in name:
            counts["htod_pageable" if "Pageable" in name else "htod_pinned"] += 1
    per_step = {
        k: counts[k] / steps
        for k in (
            "sync_stream",
            "sync_device",
            "sync_event",
            "memcpy_sync_calls",
            "dtoh",
            "htod_pageable",
            "htod_pinned",
            "launches",
        )
    }
    # Host syncs: the synchronize calls, and copies by the blocking cudaMemcpy. A copy from
    # pageable host memory (htod_pageable) blocks the host while it is staged, but does not wait
    # for the device's queue: reported, not counted as a sync.
    per_step["syncs"] = (
        sum(per_step[f"sync_{k}"] for k in SYNC_CALLS) + per_step["memcpy_sync_calls"]
    )
    per_step["gpu_kernel_ms"] = kernel_us / 1000 / steps
    per_step["host_step_ms"] = sum(e - s for s, e in marks) / 1000 / max(len(marks), 1)
    per_step["traced_steps"] = len(marks)
    per_step["cuda_events_seen"] = any(e.get("cat") == "kernel" for e in events)
    return per_step


def profile_steps(step, n: int, device: torch.device, trace_path: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sync(device)
    with profile(activities=activities) as prof:
        for i in range(n):
            with record_function(STEP_MARK):
                step(i)
        sync(device)  # inside the trace, outside the steps: their GPU work is all recorded
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

    sync(device)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(n):
                step(i)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    sync(device)
    return dict(sites)


# ------------------------------------------------------------- step phase: one configuration


def measure_config(side: str, batch: int, precision: str, spec: dict, raw: list[dict]) -> dict:
    """One configuration: warm-up, a probe step to size the windows, the timed windows, its GPU
    memory, and (when asked) its profile. A failure is recorded in the row, not raised: the
    other configurations still run."""
    device = torch.device(spec["device"])
    row: dict = {"side": side, "batch": batch, "precision": precision}
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    try:
        size = Size(**spec["size"])
        step = ProductStep(size, precision, device, raw) if side == "product" else None
        step = step or BaselineStep(size, device, raw)
    except Exception as e:  # e.g. tf32 or bf16 on the CPU: recorded, not fatal
        row["skipped"] = f"{type(e).__name__}: {e}"
        return row
    try:
        time_windows(step, spec, device, row)
        if device.type == "cuda":
            row["gpu_peak_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            row["gpu_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    except Exception as e:  # e.g. out of memory
        row["error"] = f"{type(e).__name__}: {str(e)[:500]}"
    if "error" not in row and [side, batch, precision] in spec["profile"]:
        trace = Path(spec["trace_dir"]) / f"trace-{side}-{batch}-{precision}.json"
        try:
            row["profile"] = profile_steps(step, spec["profile_steps"], device, trace)
            row["sync_sites"] = sync_sites(step, spec["profile_steps"], device)
        except Exception as e:
            row["profile_error"] = f"{type(e).__name__}: {str(e)[:500]}"
    del step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def time_windows(step, spec: dict, device: torch.device, row: dict) -> None:
    n = len(step.batches)
    t0 = time.perf_counter()
    for i in range(spec["warmup_steps"]):
        step(i)
    sync(device)
    row["warmup_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):  # the probe: one pass over the batches, to size the windows
        step(i)
    sync(device)
    per_step = (time.perf_counter() - t0) / n
    k = n * max(1, min(500, math.ceil(spec["window_seconds"] / max(per_step * n, 1e-9))))
    windows, step_ms = [], []
    for _ in range(spec["windows"]):
        audio = sum(step.audio[i % n] for i in range(k))
        sync(device)
        t0 = time.perf_counter()
        for i in range(k):
            step(i)
        sync(device)
        dt = time.perf_counter() - t0
        windows.append(audio / dt)
        step_ms.append(dt / k * 1000)
    row.update(windows=windows, steps_per_window=k, step_ms=step_ms, **step.check())


def step_worker(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    data = torch.load(spec["batches"])
    rows = []
    for side, batch, precision in spec["configs"]:
        row = measure_config(side, batch, precision, spec, data[batch])
        rows.append(row)
        rate = median(row.get("windows", []))
        mem = row.get("gpu_peak_mib")
        print(
            f"{side} batch {batch} {precision}: "
            + (row.get("skipped") or row.get("error") or f"{rate or math.nan:.1f} audio s/s")
            + (f", GPU {mem:.0f} MiB" if mem is not None else ""),
            flush=True,
        )
        Path(out_path).write_text(json.dumps(rows, indent=1) + "\n")  # partial results survive


# ----------------------------------------------------------------- eval phase: warm passes


def eval_worker(side: str, ckpt: str, manifest: str, batch: int, passes: int, out: str) -> None:
    """Decode `manifest` `passes` times in this process: the first pass is cold, the next ones
    find the model loaded and every kernel warmed. Each pass as the side's own tool does it."""
    results = []
    work = Path(out).parent
    for p in range(passes):
        if side == "product":
            from asr.evaluation import evaluate_checkpoint
            from asr.schema import EvaluateConfig, LoggerConfig

            cfg = EvaluateConfig(
                ckpt=ckpt, manifest=manifest, batch_size=batch, logger=LoggerConfig(kind="none")
            )
            r = evaluate_checkpoint(cfg, work / f"eval-product-pass{p}")
        else:
            from bench import seed_baseline

            a = seed_baseline.parse_args(
                ["decode", f"--ckpt={ckpt}", f"--manifest={manifest}", f"--batch-size={batch}"]
            )
            r = seed_baseline.decode(a)
        results.append({"rtf": r["rtf"], "cer": r["cer"], "audio_seconds": r["audio_seconds"]})
    Path(out).write_text(json.dumps(results, indent=1) + "\n")


# ------------------------------------------------------------------------- the orchestrator


def worker_env() -> dict[str, str]:
    return {**os.environ, **sides.EXTRA_ENV, "PYTHONUNBUFFERED": "1"}


def run_worker(args: list[str], log: Path, what: str):
    finished = run_measured(
        [sys.executable, str(Path(__file__).resolve()), *args], log, env=worker_env(), cwd=ROOT
    )
    if finished.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {finished.returncode}); log {log}:\n{tail}")
    progress(f"{what}: {finished.seconds:.0f} s, host peak {finished.peak_pss_mib:.0f} MiB PSS")
    return finished


def step_phase(a, plan: Plan, work: Path, device: torch.device, precision: str) -> dict:
    batches_file = work / "step_batches.pt"
    batch_info = build_step_batches(a.manifests, plan, batches_file)
    small, largest = min(plan.batches), max(plan.batches)
    configs = {
        "baseline": [["baseline", b, BASELINE_PRECISION] for b in plan.batches],
        "product": [["product", b, precision] for b in plan.batches]
        + [["product", largest, p] for p in PRECISIONS if p != precision],
    }
    # Profiled in the first round: the smallest and the largest batch in the default precision.
    profiled = {
        side: [
            c
            for c in configs[side]
            if c[1] in (small, largest) and c[2] in (precision, BASELINE_PRECISION)
        ]
        for side in SIDES
    }
    rows: list[dict] = []
    failed: list[str] = []
    pss: dict[str, list[float]] = {"baseline": [], "product": []}
    for r in range(plan.step_rounds):
        order = ["baseline", "product"] if r % 2 == 0 else ["product", "baseline"]
        for side in order:
            spec = {
                "device": str(device),
                "size": dataclasses.asdict(plan.size),
                "configs": configs[side] if r % 2 == 0 else configs[side][::-1],
                "batches": str(batches_file),
                "warmup_steps": plan.warmup_steps,
                "windows": plan.windows,
                "window_seconds": plan.window_seconds,
                "profile": [] if r or a.no_profile else profiled[side],
                "profile_steps": plan.profile_steps,
                "trace_dir": str(work),
                "threads": a.threads,
            }
            spec_path = work / f"step-{r}-{side}.spec.json"
            out = work / f"step-{r}-{side}.json"
            spec_path.write_text(json.dumps(spec))
            what = f"step round {r + 1}/{plan.step_rounds} {side}"
            try:
                f = run_worker(["_step", str(spec_path), str(out)], work / f"{out.stem}.log", what)
                pss[side].append(f.peak_pss_mib)
            except RuntimeError as e:  # a crashed worker: keep the configurations it finished
                failed.append(str(e)[-3000:])
                progress(str(e)[-1500:])
            if out.is_file():
                rows += [{**row, "round": r} for row in json.loads(out.read_text())]
    keep_traces(a, work, min(plan.batches))
    result = {"configs": merge_step_rows(rows), "batches": batch_info, "peak_pss_mib": pss}
    if failed:
        result["failed_workers"] = failed
    return result


def keep_traces(a, work: Path, batch: int) -> None:
    """With --traces DIR: each side's profiler trace at the smallest batch, gzipped, into DIR
    (open them in Perfetto or chrome://tracing)."""
    if not a.traces:
        return
    dest = Path(a.traces)
    dest.mkdir(parents=True, exist_ok=True)
    for trace in sorted(work.glob(f"trace-*-{batch}-*.json")):
        with open(trace, "rb") as src, gzip.open(dest / f"{trace.name}.gz", "wb") as out:
            shutil.copyfileobj(src, out)


def merge_step_rows(rows: list[dict]) -> list[dict]:
    """One entry per (side, batch, precision): windows of all rounds, their median, the
    largest GPU memory, the first round's profile."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        key = (row["side"], row["batch"], row["precision"])
        m = merged.setdefault(
            key,
            {
                "side": key[0],
                "batch": key[1],
                "precision": key[2],
                "windows": [],
                "round_medians": [],
                "steps_per_window": [],
                "losses": [],
                "finite": True,
            },
        )
        if "skipped" in row or "error" in row:  # not run (tf32 on a CPU), or failed (OOM)
            if "skipped" in row:
                m["skipped"] = row["skipped"]
            else:
                m.setdefault("errors", []).append(row["error"])
            continue
        m["windows"] += row["windows"]
        m["round_medians"].append(median(row["windows"]))
        m["steps_per_window"].append(row["steps_per_window"])
        m.setdefault("step_ms_all", []).extend(row["step_ms"])
        m["losses"].append(row["loss"])
        m["finite"] = m["finite"] and row["finite"]
        if "gpu_peak_mib" in row:
            m["gpu_peak_mib"] = max(m.get("gpu_peak_mib", 0.0), row["gpu_peak_mib"])
        for k in ("profile", "sync_sites", "profile_error"):
            if k in row:
                m[k] = row[k]
    for m in merged.values():
        m["median"] = median(m["windows"])
        m["step_ms"] = median(m.pop("step_ms_all", []))
    return list(merged.values())


def e2e_phase(a, plan: Plan, work: Path, precision: str) -> tuple[dict, dict[str, Path]]:
    m, size, k = a.manifests, plan.size, plan.e2e_log_every
    steps = k * (1 + plan.e2e_windows)
    out: dict = {side: {"windows": [], "peak_pss_mib": [], "seconds": []} for side in SIDES}
    ckpts: dict[str, Path] = {}
    for r in range(plan.e2e_rounds):
        order = ["baseline", "product"] if r % 2 == 0 else ["product", "baseline"]
        for side in order:
            d = work / f"e2e-{r}-{side}"
            if side == "baseline":
                run = train_baseline(m, size, d, k, 1, steps=steps, save=r == 0)
                windows = run.windows
                if r == 0:
                    ckpts["baseline"] = d / "model.pt"
            else:
                run = train_product(m, size, d, k, 1, steps=steps, precision=precision)
                windows = run.windows
                best = d / "best.pt"
                if r == 0:
                    ckpts["product"] = best if best.is_file() else d / "last.pt"
                else:
                    for ckpt in d.glob("*.pt"):
                        ckpt.unlink()
            out[side]["windows"] += windows
            out[side]["peak_pss_mib"].append(run.finished.peak_pss_mib)
            out[side]["seconds"].append(run.finished.seconds)
            progress(
                f"e2e round {r + 1}/{plan.e2e_rounds} {side}: {run.finished.seconds:.0f} s, "
                f"median {median(windows) or math.nan:.1f} audio s/s, "
                f"host peak {run.finished.peak_pss_mib:.0f} MiB PSS"
            )
    for side in out:
        out[side]["median"] = median(out[side]["windows"])
        out[side]["peak_pss_mib_max"] = max(out[side]["peak_pss_mib"])
    out["batch_size"] = size.batch_size
    out["steps"] = steps
    return out, ckpts


def eval_phase(a, plan: Plan, work: Path, ckpts: dict[str, Path]) -> dict:
    manifest = a.manifests.test or a.manifests.dev
    out: dict = {"manifest": str(manifest), "batch_size": plan.eval_batch}
    for side in ("baseline", "product"):
        res = work / f"eval-{side}.json"
        f = run_worker(
            [
                "_eval",
                side,
                str(ckpts[side]),
                str(manifest),
                str(plan.eval_batch),
                str(plan.eval_passes),
                str(res),
            ],
            work / f"eval-{side}.log",
            f"eval {side}",
        )
        passes = json.loads(res.read_text())
        out[side] = {
            "rtf_cold": passes[0]["rtf"],
            "rtf_warm": passes[-1]["rtf"],
            "rtfs": [p["rtf"] for p in passes],
            "cer": passes[-1]["cer"],
            "audio_seconds": passes[-1]["audio_seconds"],
            "peak_pss_mib": f.peak_pss_mib,
        }
    return out


# ---------------------------------------------------------------------- targets and report


def find_step(results: dict, side: str, batch: int, precision: str) -> dict | None:
    for row in results.get("step", {}).get("configs", []):
        if (row["side"], row["batch"], row["precision"]) == (side, batch, precision):
            return row if row["windows"] else None
    return None


def peak_fraction(results: dict, row: dict | None, precision: str) -> float | None:
    if row is None or row.get("median") is None:
        return None
    key = "fp32" if precision == BASELINE_PRECISION else precision
    peak = results["matmul_peak_gflops"].get(key)
    if not peak:
        return None
    return row["median"] * results["train_gflop_per_audio_second"] / peak


def sync_count(row: dict | None) -> float | None:
    """Host syncs plus device-to-host copies per profiled step (None: no CUDA trace)."""
    prof = (row or {}).get("profile")
    if not prof or not prof.get("cuda_events_seen"):
        return None
    return prof["syncs"] + prof["dtoh"]


def targets(results: dict) -> list[dict]:
    rows = []

    def add(name, base, prod, value, direction, target):
        met = None
        if value is not None:
            met = (
                value >= target
                if direction == ">="
                else (value <= target if direction == "<=" else value == target)
            )
        rows.append(
            {
                "name": name,
                "baseline": base,
                "product": prod,
                "value": value,
                "target": f"{direction} {target}",
                "met": met,
            }
        )

    prec = results["precision_default"]
    small, large = min(results["plan"]["batches"]), max(results["plan"]["batches"])
    e = results.get("e2e")
    if e:
        b, p = e["baseline"]["median"], e["product"]["median"]
        add(
            f"end to end audio s/s at batch {e['batch_size']}, product / baseline",
            b,
            p,
            ratio(p, b),
            ">=",
            2.0,
        )
    if "step" in results:
        lo, hi = (
            find_step(results, "product", small, prec),
            find_step(results, "product", large, prec),
        )
        r = ratio(hi and hi["median"], lo and lo["median"])
        add(
            f"product step ({prec}): batch {large} / batch {small} audio s/s",
            lo and lo["median"],
            hi and hi["median"],
            r,
            ">=",
            8.0,
        )
        for p in PRECISIONS:
            row = find_step(results, "product", large, p)
            add(
                f"product step at batch {large}, {p}: fraction of the {p} matmul peak",
                None,
                row and row["median"],
                peak_fraction(results, row, p),
                ">=",
                0.05,
            )
        for batch in (small, large):
            prod = sync_count(find_step(results, "product", batch, prec))
            base = sync_count(find_step(results, "baseline", batch, BASELINE_PRECISION))
            add(
                f"product host syncs + device-to-host copies per step, batch {batch}",
                base,
                prod,
                prod,
                "==",
                0,
            )
    ev = results.get("eval")
    if ev:
        b, p = ev["baseline"]["rtf_warm"], ev["product"]["rtf_warm"]
        add("warm evaluation RTF, product / baseline", b, p, ratio(p, b), "<=", 0.5)
    if e:
        b, p = e["baseline"]["peak_pss_mib_max"], e["product"]["peak_pss_mib_max"]
        add("host memory (PSS) training, product / baseline", b, p, ratio(p, b), "<=", 1.0)
    if ev:
        b, p = ev["baseline"]["peak_pss_mib"], ev["product"]["peak_pss_mib"]
        add("host memory (PSS) evaluation, product / baseline", b, p, ratio(p, b), "<=", 1.0)
    return rows


def _f(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _table(rows: list[tuple]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def print_report(results: dict) -> None:
    mach = results["machine"]
    peaks = results["matmul_peak_gflops"]
    print(
        f"\nmachine: {mach.get('gpu', mach['device'])}, torch {mach['torch']}, "
        f"CUDA {mach.get('cuda', '-')}, cuDNN {mach.get('cudnn', '-')}, {mach['date']}"
    )
    print(
        "matmul peaks measured here (TFLOP/s): "
        + ", ".join(f"{k} {v / 1000:.2f}" for k, v in peaks.items())
        + f"; a training step: {results['train_gflop_per_audio_second']:.2f} GFLOP per audio "
        f"second; product precision: {results['precision_default']}"
    )
    s = results.get("step")
    if s:
        small = min(results["plan"]["batches"])
        z = results["plan"]["size"]
        print(
            f"\nstep alone (batches on the device; {z['n_cnn']} CNN blocks, {z['n_rnn']} GRUs "
            f"of {z['rnn_dim']}, {z['n_mels']} mels):"
        )
        rows = [
            (
                "side",
                "precision",
                "batch",
                "audio s/s",
                "x small",
                "of peak",
                "ms/step",
                "GPU MiB",
                "syncs",
                "DtoH",
                "HtoD pg",
                "launches",
                "GPU busy",
                "loss",
            )
        ]
        for row in s["configs"]:
            if not row["windows"]:
                what = "skipped" if "skipped" in row else "error"
                rows.append((row["side"], row["precision"], str(row["batch"]), what, *[""] * 10))
                continue
            ref = find_step(
                results,
                row["side"],
                small,
                results["precision_default"] if row["side"] == "product" else BASELINE_PRECISION,
            )
            prof = row.get("profile") or {}
            seen = prof.get("cuda_events_seen")
            rows.append(
                (
                    row["side"],
                    row["precision"],
                    str(row["batch"]),
                    _f(row["median"], 1),
                    _f(ratio(row["median"], ref and ref["median"])),
                    _f(peak_fraction(results, row, row["precision"]), 3),
                    _f(row.get("step_ms"), 1),
                    _f(row.get("gpu_peak_mib"), 0),
                    *[
                        _f(prof.get(k), 1) if seen else "n/a"
                        for k in ("syncs", "dtoh", "htod_pageable", "launches")
                    ],
                    _f(ratio(prof.get("gpu_kernel_ms"), row.get("step_ms"))) if seen else "n/a",
                    _f(median(row["losses"]), 2),
                )
            )
        _table(rows)
        sites = {(r["side"], r["batch"]): r.get("sync_sites") for r in s["configs"]}
        for (side, batch), where in sites.items():
            if where:
                print(f"  sync sites, {side} batch {batch} (over the profiled steps): {where}")
    e, ev = results.get("e2e"), results.get("eval")
    rows = [("", "baseline", "product", "product/baseline")]
    if e:
        b, p = e["baseline"], e["product"]
        rows.append(
            (
                f"end to end audio s/s, batch {e['batch_size']} (median)",
                _f(b["median"], 1),
                _f(p["median"], 1),
                _f(ratio(p["median"], b["median"])),
            )
        )
        rows.append(
            (
                "  host peak PSS MiB (training)",
                _f(b["peak_pss_mib_max"], 0),
                _f(p["peak_pss_mib_max"], 0),
                _f(ratio(p["peak_pss_mib_max"], b["peak_pss_mib_max"])),
            )
        )
    if ev:
        b, p = ev["baseline"], ev["product"]
        for key, label, d in (
            ("rtf_cold", "eval RTF, cold pass", 4),
            ("rtf_warm", "eval RTF, warm pass", 4),
            ("cer", "  test CER", 3),
            ("peak_pss_mib", "  host peak PSS MiB (evaluation)", 0),
        ):
            rows.append((label, _f(b[key], d), _f(p[key], d), _f(ratio(p[key], b[key]))))
    if len(rows) > 1:
        print()
        _table(rows)
    print("\ntargets:")
    for t in results["targets"]:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        print(f"  {t['name']}: {_f(t['value'], 3)} (target {t['target']}): {verdict}")


# ------------------------------------------------------------------------------------- main


CARRIED_DATA = ROOT / ".gpu" / "data"  # where docs/gpu-benchmark.md puts the carried corpus


def find_manifests(a, work: Path) -> Manifests:
    """--data; else (smoke) a tiny synth_es corpus built in the work folder; else the corpus
    carried in .gpu/data/."""
    carried = sorted(CARRIED_DATA.glob("*/train.jsonl"))
    if a.data:
        d = Path(a.data).expanduser().resolve()
    elif a.smoke:
        from asr.data.synth import SynthSpec, build_synth_corpus

        spec = SynthSpec(train_hours=0.01, dev_utterances=6, test_utterances=6)
        d = build_synth_corpus(work / "corpus", spec)["train"].parent
    elif carried:
        d = carried[0].parent
    else:
        raise SystemExit(
            f"error: --data DIR (a folder with train/dev/test.jsonl), or a corpus in {CARRIED_DATA}"
        )
    paths = {s: d / f"{s}.jsonl" for s in ("train", "dev", "test")}
    for split in ("train", "dev"):
        if not paths[split].is_file():
            raise SystemExit(f"error: no {split} manifest ({paths[split]})")
    test = paths["test"] if paths["test"].is_file() else None
    tiny = write_tiny_manifest(paths["dev"], work / "dev_tiny.jsonl", 4)
    return Manifests(paths["train"], paths["dev"], test, tiny, a.language)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: plumbing only")
    p.add_argument("--data", help="a folder with train/dev/test.jsonl (--smoke: built if absent)")
    p.add_argument("--language", default="es")
    p.add_argument(
        "--phases", default="step,e2e,eval", help="any of step,e2e,eval (eval needs e2e)"
    )
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--precision", help="the product's precision (default: trainer.precision's)")
    p.add_argument("--step-rounds", type=int, help="override the plan's interleaved step rounds")
    p.add_argument("--e2e-rounds", type=int, help="override the plan's e2e rounds")
    p.add_argument("--no-profile", action="store_true", help="skip the profiler traces")
    p.add_argument("--threads", type=int, help="torch threads in the step workers")
    p.add_argument("--traces", help="copy the profiler traces (chrome JSON) into this folder")
    p.add_argument("--work-dir", help="run folders (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--gomp-spincount", default="1000", help="as bench/run.py; or 'inherit'")
    p.add_argument("--out", help="default bench/results_gpu.json (smoke: results_gpu_smoke.json)")
    a = p.parse_args(argv)
    if a.device == "auto":
        a.device = "cpu" if a.smoke or not torch.cuda.is_available() else "cuda"
    a.out = a.out or str(ROOT / "bench" / f"results_gpu{'_smoke' if a.smoke else ''}.json")
    a.phases = [x.strip() for x in a.phases.split(",") if x.strip()]
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    started = time.time()
    device = torch.device(a.device)
    if device.type != "cuda" and not a.smoke:
        progress("no CUDA device: the figures below are the CPU's (use --smoke to check plumbing)")
    plan = dataclasses.replace(
        PLANS["smoke" if a.smoke else "gpu"],
        **{k: v for k, v in (("step_rounds", a.step_rounds), ("e2e_rounds", a.e2e_rounds)) if v},
    )
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="asr-gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.gomp_spincount != "inherit":
        sides.EXTRA_ENV["GOMP_SPINCOUNT"] = a.gomp_spincount
    if device.type == "cpu":  # train.py, evaluate.py and the seed pick CUDA when they see it
        sides.EXTRA_ENV["CUDA_VISIBLE_DEVICES"] = ""
    a.manifests = find_manifests(a, work)
    precision = a.precision or default_precision()
    if device.type != "cuda" and precision != "fp32":
        precision = "fp32"  # the CPU has fp32 only (asr/precision.py)
    progress(
        f"{'smoke' if a.smoke else 'gpu'} run on {device}; product precision {precision}; "
        f"work folder {work}"
    )

    from asr.model import DeepSpeech2, ModelConfig

    size = plan.size
    model = DeepSpeech2(ModelConfig(size.n_cnn, size.n_rnn, size.rnn_dim, size.n_mels))
    flops = train_flops_per_audio_second(model, size.n_mels, 100)
    del model
    peaks = {}
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, None),
    ):
        peaks[name] = (
            matmul_peak_flops(
                device, dtype, tf32=tf32, n=plan.matmul_n, repeats=plan.matmul_repeats
            )
            / 1e9
        )
    results: dict = {
        "mode": "smoke" if a.smoke else "gpu",
        "machine": machine(device),
        "plan": dataclasses.asdict(plan),
        "precision_default": precision,
        "manifests": {k: str(v) for k, v in dataclasses.asdict(a.manifests).items()},
        "matmul_peak_gflops": peaks,
        "train_gflop_per_audio_second": flops / 1e9,
        "env": dict(sides.EXTRA_ENV),
        "phase_seconds": {},
    }
    progress("matmul peaks (GFLOP/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items()))
    errors: dict[str, str] = {}

    def phase(name: str, fn):
        """Run one phase; a failure is recorded and the other phases still run."""
        t = time.time()
        try:
            return fn()
        except Exception as e:
            errors[name] = "".join(traceback.format_exception(e))[-3000:]
            progress(f"{name} phase FAILED: {type(e).__name__}: {str(e)[-1500:]}")
            return None
        finally:
            results["phase_seconds"][name] = time.time() - t

    if "step" in a.phases:
        results["step"] = phase("step", lambda: step_phase(a, plan, work, device, precision))
        if results["step"] and results["step"].get("failed_workers"):
            errors["step"] = "\n".join(results["step"]["failed_workers"])
    if "e2e" in a.phases:
        e2e = phase("e2e", lambda: e2e_phase(a, plan, work, precision))
        if e2e:
            results["e2e"], ckpts = e2e
            if "eval" in a.phases:
                results["eval"] = phase("eval", lambda: eval_phase(a, plan, work, ckpts))
    results = {k: v for k, v in results.items() if v is not None}
    if errors:
        results["errors"] = errors
    results["wall_minutes"] = (time.time() - started) / 60
    results["targets"] = targets(results)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"wrote {out} ({results['wall_minutes']:.1f} min)")
    if not (a.keep or a.work_dir):
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        raise SystemExit(f"error: phases failed: {', '.join(errors)} (see {out})")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        step_worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_eval":
        side, ckpt, manifest, batch, passes, out = sys.argv[2:8]
        eval_worker(side, ckpt, manifest, int(batch), int(passes), out)
    else:
        main()
