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

The modules: bench/gpu_phases.py (the phases, in subprocesses), bench/gpu_steps.py (the step
workers: the batches, each side's step, timed windows), bench/gpu_trace.py (profiler traces:
syncs and copies per step), bench/gpu_report.py (the targets and the printed report).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import sides  # noqa: E402
from bench.gpu_phases import (  # noqa: E402
    Plan,
    e2e_phase,
    eval_phase,
    eval_worker,
    progress,
    step_phase,
)
from bench.gpu_report import print_report, targets  # noqa: E402
from bench.gpu_steps import step_worker  # noqa: E402
from bench.measure import matmul_peak_flops, train_flops_per_audio_second  # noqa: E402
from bench.sides import SEED_SIZE, Manifests, Size, manifests_from  # noqa: E402

PLANS = {
    "gpu": Plan(SEED_SIZE, (10, 64, 128), 2, 3, 4, 0.3, 3, 2, 1, 10, 8, 16, 2),
    "smoke": Plan(Size(1, 1, 16, 4, 16), (2, 4, 8), 1, 1, 2, 0.0, 1, 1, 1, 2, 2, 4, 2, 512, 5),
}


def default_precision(device: torch.device) -> str:
    """The precision the product trains in on this device: the GPU preset's
    (conf/preset/gpu.yaml) on CUDA, the schema's default elsewhere."""
    from omegaconf import OmegaConf

    from asr.schema import TrainerConfig

    if device.type == "cuda":
        return OmegaConf.load(ROOT / "conf" / "preset" / "gpu.yaml").trainer.precision
    return TrainerConfig().precision


def machine(device: torch.device) -> dict:
    """What the results were measured on: recorded in the JSON, its GPU named in the report."""
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
    return manifests_from(paths, work, a.language)


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
    precision = a.precision or default_precision(device)
    if device.type != "cuda" and precision != "fp32":
        precision = "fp32"  # the CPU has fp32 only (asr/precision.py)
    progress(
        f"{'smoke' if a.smoke else 'gpu'} run on {device}; product precision {precision}; "
        f"work folder {work}"
    )

    flops, peaks = step_flops(plan.size), matmul_peaks(device, plan)
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
    errors = run_phases(a, plan, work, device, precision, results)
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


def step_flops(size: Size) -> float:
    """A training step's matmul and conv FLOPs per audio second, at the plan's model size."""
    from asr.model import DeepSpeech2, ModelConfig

    model = DeepSpeech2(ModelConfig(size.n_cnn, size.n_rnn, size.rnn_dim, size.n_mels))
    return train_flops_per_audio_second(model, size.n_mels, 100)


def matmul_peaks(device: torch.device, plan: Plan) -> dict[str, float]:
    """This machine's matmul peak in GFLOP/s in each precision: fp32 with TF32 off, fp32 with
    TF32 on, and bf16."""
    peaks = {}
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, None),
    ):
        flops = matmul_peak_flops(
            device, dtype, tf32=tf32, n=plan.matmul_n, repeats=plan.matmul_repeats
        )
        peaks[name] = flops / 1e9
    return peaks


def run_phases(
    a, plan: Plan, work: Path, device: torch.device, precision: str, results: dict
) -> dict:
    """The phases asked for, their results and seconds into `results`; returns the errors of
    those that failed (a failed phase does not stop the others; eval needs e2e's weights)."""
    errors: dict[str, str] = {}

    def phase(name: str, fn):
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
    return errors


if __name__ == "__main__":
    # The phases' workers run this file too: `_step SPEC OUT` and `_eval SIDE CKPT ...`.
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        step_worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "_eval":
        side, ckpt, manifest, batch, passes, out = sys.argv[2:8]
        eval_worker(side, ckpt, manifest, int(batch), int(passes), out)
    else:
        main()
