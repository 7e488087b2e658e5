"""The GPU benchmark's three phases, each run in subprocesses of its own per side (so that each
one's host memory, PSS, is its own), the two sides taking turns wherever a measurement is
repeated: step (workers of bench/gpu_steps.py), e2e (train.py against the seed's train), eval
(warm passes of each side's evaluation, eval_worker)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from bench.gpu_steps import BASELINE_PRECISION, PRECISIONS, build_step_batches
from bench.gpu_trace import keep_traces
from bench.measure import Finished, median
from bench.sides import PYTHON, Size, run_in_project, train_baseline, train_product

SIDES = ("baseline", "product")
# Workers run as `python bench/gpu.py _step|_eval ...`: its __main__ dispatches them.
GPU_SCRIPT = Path(__file__).resolve().with_name("gpu.py")


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


def progress(message: str) -> None:
    print(f"[gpu-bench] {message}", flush=True)


def run_worker(args: list[str], log: Path, what: str) -> Finished:
    """bench/gpu.py's worker `args[0]`, measured; a failed worker raises, with its log's end."""
    finished = run_in_project([PYTHON, str(GPU_SCRIPT), *args], log, {"PYTHONUNBUFFERED": "1"})
    if finished.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {finished.returncode}); log {log}:\n{tail}")
    progress(f"{what}: {finished.seconds:.0f} s, host peak {finished.peak_pss_mib:.0f} MiB PSS")
    return finished


# ------------------------------------------------------------------------------------- step


def step_configs(plan: Plan, precision: str) -> tuple[dict, dict]:
    """Each side's configurations, [side, batch, precision]: both sides at every batch size,
    the product in `precision` and, at the largest batch, in each other precision too, and
    with its GRUs on padded tensors ("<precision>/reverse") instead of packed once (CUDA's
    default), to keep the faster; and those profiled (in the first round): the smallest and
    the largest batch, `precision`."""
    small, largest = min(plan.batches), max(plan.batches)
    configs = {
        "baseline": [["baseline", b, BASELINE_PRECISION] for b in plan.batches],
        "product": [["product", b, precision] for b in plan.batches]
        + [["product", largest, p] for p in PRECISIONS if p != precision]
        + [["product", largest, f"{precision}/reverse"]],
    }
    profiled = {
        side: [
            c
            for c in configs[side]
            if c[1] in (small, largest) and c[2] in (precision, BASELINE_PRECISION)
        ]
        for side in SIDES
    }
    return configs, profiled


def step_phase(a, plan: Plan, work: Path, device: torch.device, precision: str) -> dict:
    batches_file = work / "step_batches.pt"
    batch_info = build_step_batches(
        a.manifests, plan.size, plan.batches, plan.batches_per_size, batches_file
    )
    configs, profiled = step_configs(plan, precision)
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
    keep_traces(a.traces, work, min(plan.batches))
    result = {"configs": merge_step_rows(rows), "batches": batch_info, "peak_pss_mib": pss}
    if failed:
        result["failed_workers"] = failed
    return result


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


# -------------------------------------------------------------------------------------- e2e


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
                if r == 0:
                    ckpts["baseline"] = d / "model.pt"
            else:
                run = train_product(m, size, d, k, 1, steps=steps, precision=precision)
                best = d / "best.pt"
                if r == 0:
                    ckpts["product"] = best if best.is_file() else d / "last.pt"
                else:
                    for ckpt in d.glob("*.pt"):
                        ckpt.unlink()
            out[side]["windows"] += run.windows
            out[side]["peak_pss_mib"].append(run.finished.peak_pss_mib)
            out[side]["seconds"].append(run.finished.seconds)
            progress(
                f"e2e round {r + 1}/{plan.e2e_rounds} {side}: {run.finished.seconds:.0f} s, "
                f"median {median(run.windows) or math.nan:.1f} audio s/s, "
                f"host peak {run.finished.peak_pss_mib:.0f} MiB PSS"
            )
    for side in out:
        out[side]["median"] = median(out[side]["windows"])
        out[side]["peak_pss_mib_max"] = max(out[side]["peak_pss_mib"])
    out["batch_size"] = size.batch_size
    out["steps"] = steps
    return out, ckpts


# ------------------------------------------------------------------------------------- eval


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


def eval_worker(side: str, ckpt: str, manifest: str, batch: int, passes: int, out: str) -> None:
    """The `_eval` worker: decode `manifest` `passes` times in this process: the first pass is
    cold, the next ones find the model loaded and every kernel warmed. Each pass as the side's
    own tool does it."""
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
