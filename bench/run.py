"""Benchmark the product against the seed's recipe (bench/seed_baseline.py), side by side.

python bench/run.py --quick     # a few minutes: every measurement, shorter
python bench/run.py             # full: adds the 10-minute dev-CER race per side (~30 min)
python bench/run.py --smoke     # seconds per phase, tiny model: checks the plumbing only
python bench/run.py --quick --phases levers   # each speed lever switched off in turn

Every side runs in its own subprocess (so its peak memory is its own), the two interleaved:
1. throughput at the seed's size (3 CNN, 5 GRU of 512, batch 10): audio seconds per wall
   second, the median of timed windows of training steps after a warm-up window (evaluation
   excluded); the fraction of this machine's measured fp32 matmul peak that it reaches;
2. race: the small model (model=ds2_small, batch 16) trains for the same wall-clock budget on
   each side; the best dev CER each reached;
3. rtf: evaluate.py (fp32, and int8 with quantize=true) against the baseline's decode loop on the
   test split, with the race's weights: real-time factor and CER;
4. levers (on request): the product with one speed lever switched off at a time, at seed size;
5. scale (on request): the loader at 10k to 1M rows, its workers' memory, and each audio format's
   decode speed (bench/scale.py).
It prints a table and the ratios, and writes --out (default bench/results.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import report, sides  # noqa: E402
from bench.measure import matmul_peak_flops, train_flops_per_audio_second  # noqa: E402
from bench.sides import (  # noqa: E402
    SEED_SIZE,
    SMALL_SIZE,
    Manifests,
    Run,
    Size,
    decode_baseline,
    evaluate_product,
    manifests_from,
    mean_duration,
    train_baseline,
    train_product,
    write_tiny_manifest,
)


@dataclasses.dataclass
class Plan:
    rounds: int  # interleaved (baseline, product) rounds of throughput runs
    window_steps: int  # training steps per timed window
    windows: int  # timed windows per run, after one warm-up window
    race_minutes: float
    rtf_rounds: int
    throughput_size: Size = SEED_SIZE
    race_size: Size = SMALL_SIZE


PLANS = {
    "smoke": Plan(1, 1, 2, 0.05, 1, Size(1, 1, 32, 4, 32), Size(1, 1, 32, 4, 32)),
    "quick": Plan(2, 2, 2, 0.75, 1),
    "full": Plan(3, 4, 4, 10.0, 3),
}
RACE_LR = 1.5e-3  # the quick start's peak learning rate (README), the same on both sides
# Each lever switched off on its own (a worker and batches by seconds: switched on, being off by
# default on the CPU). "GOMP_SPINCOUNT=..."
# entries set the environment instead of the config.
LEVERS = {
    "no duration buckets": ["data.num_buckets=1"],
    "packed GRUs (torch's, on CPU)": ["model.gru_impl=pack"],
    "GRUs reversed, torch's backward (no scan)": ["model.gru_impl=reverse"],
    "no feature cache": ["data.feature_cache_mb=0"],
    "one DataLoader worker": ["data.num_workers=1"],
    "AdamW per-tensor loop (not fused)": ["optim.fused=false"],
    "batches by seconds (same mean audio)": ["data.batch_seconds={batch_seconds}"],
    "libgomp's default spin (300000)": ["GOMP_SPINCOUNT=300000"],
}


AUGMENT_WINDOW_STEPS = 12  # a timed window; the subset holds this many batches' utterances
# The augment group's presets at the quick start's size, and robust's augmentation moved into a
# DataLoader worker (on the CPU none by default: a worker competes with the model for the cores).
AUGMENT_VARIANTS = {
    "specaugment (the default)": ["augment=specaugment"],
    "none": ["augment=none"],
    "speed": ["augment=speed"],
    "robust": ["augment=robust"],
    "robust, one DataLoader worker": ["augment=robust", "data.num_workers=1"],
}


def find_manifests(a: argparse.Namespace, work: Path) -> Manifests:
    if a.manifests_dir:
        d = Path(a.manifests_dir).expanduser().resolve()
        paths = {s: d / f"{s}.jsonl" for s in ("train", "dev", "test")}
    else:
        from asr.data.corpus import resolve_manifests
        from asr.schema import DataConfig

        data = DataConfig()  # cache_dir: $ASR_CACHE_DIR, else ~/.cache/asr-sweep, as train.py
        if a.cache_dir:
            data.cache_dir = a.cache_dir
        paths = resolve_manifests(data)
    return manifests_from(paths, work, a.language)


def throughput(a, plan: Plan, m: Manifests, work: Path, precision: str, scale: int) -> dict:
    """Interleaved rounds at seed size; medians of the timed windows; peak memory per side."""
    k = plan.window_steps * scale
    steps = k * (1 + plan.windows)
    runs: dict[str, list[Run]] = {"baseline": [], "product": []}
    for r in range(plan.rounds):
        order = ["baseline", "product"] if r % 2 == 0 else ["product", "baseline"]
        for side in order:
            out = work / f"throughput-{r}-{side}"
            if side == "baseline":
                run = train_baseline(m, plan.throughput_size, out, k, 1, steps=steps)
            else:
                run = train_product(
                    m, plan.throughput_size, out, k, 1, steps=steps, precision=precision
                )
                for ckpt in out.glob("*.pt"):
                    ckpt.unlink()  # 24 M parameters and AdamW state: 0.3 GB each
            runs[side].append(run)
            report.progress(f"throughput round {r + 1}/{plan.rounds} {side}", run)
    return {side: report.run_stats(rs) for side, rs in runs.items()}


def levers(a, plan: Plan, m: Manifests, work: Path, precision: str, scale: int) -> dict:
    """The product with each lever switched off in turn, interleaved with the default."""
    k = plan.window_steps * scale
    steps = k * (1 + plan.windows)
    batch_seconds = round(mean_duration(m.train) * plan.throughput_size.batch_size, 1)
    variants = {"product (all levers)": [], **LEVERS}
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for r in range(plan.rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for i, name in enumerate(names):
            overrides = [o.format(batch_seconds=batch_seconds) for o in variants[name]]
            env = dict(o.split("=", 1) for o in overrides if o.startswith("GOMP_"))
            overrides = [o for o in overrides if not o.startswith("GOMP_")]
            out = work / f"lever-{r}-{i}"
            run = train_product(
                m,
                plan.throughput_size,
                out,
                k,
                1,
                steps=steps,
                precision=precision,
                overrides=overrides,
                env=env,
            )
            for ckpt in out.glob("*.pt"):
                ckpt.unlink()
            runs[name].append(run)
            report.progress(f"levers round {r + 1}/{plan.rounds} {name}", run)
    return {name: {**report.run_stats(r), "overrides": variants[name]} for name, r in runs.items()}


def augment(a, plan: Plan, m: Manifests, work: Path, precision: str, scale: int) -> dict:
    """Training throughput of each augment preset at the quick start's size, interleaved.

    On a subset of the training set whose first epoch (duration buckets as in any run, so at
    most 2 windows) fills the feature cache for every preset: the two warm-up windows cover it,
    and the timed windows see what later epochs cost: cached features for the utterances an
    epoch leaves unaugmented, the audio read, augmented and transformed again for the others."""
    size, k = plan.race_size, AUGMENT_WINDOW_STEPS * scale
    subset = write_tiny_manifest(m.train, work / "augment-train.jsonl", k * size.batch_size)
    small = dataclasses.replace(m, train=subset)
    warmup = 2
    runs: dict[str, list[Run]] = {name: [] for name in AUGMENT_VARIANTS}
    for r in range(plan.rounds):
        names = list(AUGMENT_VARIANTS) if r % 2 == 0 else list(reversed(AUGMENT_VARIANTS))
        for i, name in enumerate(names):
            out = work / f"augment-{r}-{i}"
            run = train_product(small, size, out, k, warmup, steps=k * (warmup + plan.windows),
                                precision=precision, overrides=AUGMENT_VARIANTS[name])  # fmt: skip
            for ckpt in out.glob("*.pt"):
                ckpt.unlink()
            runs[name].append(run)
            report.progress(f"augment round {r + 1}/{plan.rounds} {name}", run)
    return {
        name: {**report.run_stats(r), "overrides": AUGMENT_VARIANTS[name]}
        for name, r in runs.items()
    }


def race(a, plan: Plan, m: Manifests, work: Path, precision: str) -> tuple[dict, dict[str, Path]]:
    """The same wall-clock budget per side with the small model; the best dev CER reached."""
    minutes = a.race_minutes or plan.race_minutes
    size = plan.race_size
    k = 20
    base = train_baseline(
        m, size, work / "race-baseline", k, 1, minutes=minutes, lr=RACE_LR, dev=True, save=True
    )
    report.progress("race baseline", base)
    prod = train_product(
        m, size, work / "race-product", k, 1, minutes=minutes, lr=RACE_LR, dev=True,
        precision=precision,
    )  # fmt: skip
    report.progress("race product", prod)
    ckpts = {"baseline": work / "race-baseline" / "model.pt"}
    best = work / "race-product" / "best.pt"
    ckpts["product"] = best if best.is_file() else work / "race-product" / "last.pt"
    stats = {"minutes": minutes, "size": dataclasses.asdict(size), "lr": RACE_LR}
    for run in (base, prod):
        stats[run.side] = report.run_stats([run])
    return stats, ckpts


def rtf(a, plan: Plan, m: Manifests, work: Path, ckpts: dict[str, Path], batch: int) -> dict:
    manifest = m.test or m.dev
    runs: dict[str, list[Run]] = {"baseline": [], "product": [], "product int8": []}
    for r in range(plan.rtf_rounds):
        runs["baseline"].append(
            decode_baseline(ckpts["baseline"], manifest, work / f"rtf-{r}-baseline", batch)
        )
        runs["product"].append(
            evaluate_product(ckpts["product"], manifest, work / f"rtf-{r}-product", batch)
        )
        if torch.device(a.device).type == "cpu":  # dynamic int8 is CPU-only
            runs["product int8"].append(
                evaluate_product(
                    ckpts["product"], manifest, work / f"rtf-{r}-int8", batch, quantize=True
                )
            )
        for side, rs in runs.items():
            if rs:
                report.progress(f"rtf round {r + 1}/{plan.rtf_rounds} {side}", rs[-1])
    return {
        "manifest": str(manifest),
        "batch_size": batch,
        **{side: report.run_stats(rs) for side, rs in runs.items() if rs},
    }


def machine(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few minutes in all")
    mode.add_argument("--smoke", action="store_true", help="plumbing only (tiny model)")
    p.add_argument("--phases", default="throughput,race,rtf", help="any of: " + ",".join(
        ("throughput", "race", "rtf", "levers", "augment", "scale")))  # fmt: skip
    p.add_argument("--manifests-dir", help="a folder with train/dev/test.jsonl (else synth_es)")
    p.add_argument("--cache-dir", help="where synth_es is cached (default: as train.py)")
    p.add_argument("--language", default="es")
    p.add_argument("--race-minutes", type=float, help="override the plan's race budget")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--work-dir", help="run folders (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument(
        "--gomp-spincount",
        default="1000",
        help="GOMP_SPINCOUNT for both sides (default: the product's own setting, so the seed "
        "runs in the same thread environment), or 'inherit'. The seed's default (300000 spins) "
        "ran up to 10x slower here whenever another process took a core",
    )
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    a = p.parse_args(argv)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    a.mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    a.phases = [x.strip() for x in a.phases.split(",") if x.strip()]
    return a


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    plan = PLANS[a.mode]
    device = torch.device(a.device)
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="asr-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    m = find_manifests(a, work)
    if a.gomp_spincount != "inherit":
        sides.EXTRA_ENV["GOMP_SPINCOUNT"] = a.gomp_spincount
    # On CUDA a step takes milliseconds: longer windows; bf16 autocast there only.
    scale, precision = (10, "bf16") if device.type == "cuda" else (1, "fp32")
    started = time.time()
    print(f"bench ({a.mode}) on {device}; work folder {work}", flush=True)

    from asr.model import DeepSpeech2, ModelConfig

    size = plan.throughput_size
    model = DeepSpeech2(ModelConfig(size.n_cnn, size.n_rnn, size.rnn_dim, size.n_mels))
    results: dict = {
        "mode": a.mode,
        "plan": dataclasses.asdict(plan),
        "machine": machine(device),
        "manifests": {k: str(v) for k, v in dataclasses.asdict(m).items()},
        "matmul_peak_gflops": matmul_peak_flops(device) / 1e9,
        "train_gflop_per_audio_second": train_flops_per_audio_second(model, size.n_mels, 100) / 1e9,
        "load_average_start": os.getloadavg(),
        "env": dict(sides.EXTRA_ENV),
    }
    del model
    if "throughput" in a.phases:
        results["throughput"] = throughput(a, plan, m, work, precision, scale)
    if "levers" in a.phases:
        results["levers"] = levers(a, plan, m, work, precision, scale)
    if "augment" in a.phases:
        results["augment"] = augment(a, plan, m, work, precision, scale)
    if "scale" in a.phases:
        from bench.scale import scale

        results["scale"] = scale(a.mode, m, work)
    if "race" in a.phases:
        results["race"], ckpts = race(a, plan, m, work, precision)
        if "rtf" in a.phases:
            results["rtf"] = rtf(a, plan, m, work, ckpts, plan.race_size.batch_size)
    results["load_average_end"] = os.getloadavg()
    results["wall_minutes"] = (time.time() - started) / 60
    results["targets"] = report.targets(results)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    report.print_table(results)
    print(f"wrote {out} ({results['wall_minutes']:.1f} min)")
    if not (a.keep or a.work_dir):
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
