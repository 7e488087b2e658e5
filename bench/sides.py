"""The two sides of the benchmark as subprocess commands, and what each one's output says.

baseline: bench/seed_baseline.py (the seed's recipe); product: train.py and evaluate.py, run as a
user runs them. Both read the same manifests, with the same model size and batch size.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import Finished, run_measured

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Set by bench/run.py and bench/gpu.py: added to every side's environment, the same for both.
EXTRA_ENV: dict[str, str] = {}


def run_in_project(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Finished:
    """`cmd` measured (bench.measure.run_measured), from the repository root, with EXTRA_ENV
    and then `env` added to this process's environment."""
    return run_measured(cmd, log, env={**os.environ, **EXTRA_ENV, **(env or {})}, cwd=ROOT)


@dataclass
class Manifests:
    train: Path
    dev: Path
    test: Path | None
    dev_tiny: Path  # a few dev utterances: the product's end-of-run evaluation, kept cheap
    language: str = "es"


@dataclass(frozen=True)
class Size:
    n_cnn: int
    n_rnn: int
    rnn_dim: int
    batch_size: int
    n_mels: int = 128

    def baseline_args(self) -> list[str]:
        return [
            f"--n-cnn={self.n_cnn}",
            f"--n-rnn={self.n_rnn}",
            f"--rnn-dim={self.rnn_dim}",
            f"--batch-size={self.batch_size}",
            f"--n-mels={self.n_mels}",
        ]

    def product_overrides(self) -> list[str]:
        return [
            f"model.n_cnn={self.n_cnn}",
            f"model.n_rnn={self.n_rnn}",
            f"model.rnn_dim={self.rnn_dim}",
            f"data.batch_size={self.batch_size}",
            f"data.n_mels={self.n_mels}",
        ]


SEED_SIZE = Size(3, 5, 512, 10)  # the seed's defaults (23.7 M parameters), batch 10
SMALL_SIZE = Size(1, 2, 256, 16)  # model=ds2_small with data.batch_size 16 (the defaults)


@dataclass
class Run:
    """One side's run: what it measured, and its process's cost."""

    side: str
    finished: Finished
    windows: list[float] = field(default_factory=list)  # audio s/s per timed window
    dev_cer: float | None = None  # best dev CER
    final_dev_cer: float | None = None
    steps: int = 0
    rtf: float | None = None
    cer: float | None = None
    extra: dict = field(default_factory=dict)

    def check(self) -> Run:
        if self.finished.returncode != 0:
            tail = self.finished.log.read_text().splitlines()[-15:]
            raise RuntimeError(
                f"{self.side} failed (exit {self.finished.returncode}); log {self.finished.log}:\n"
                + "\n".join(tail)
            )
        return self


def _train_budget(steps: int | None, minutes: float | None) -> tuple[list[str], list[str]]:
    baseline, product = [], ["trainer.max_epochs=null"]
    if steps:
        baseline.append(f"--max-steps={steps}")
        product.append(f"trainer.max_steps={steps}")
    if minutes:
        baseline.append(f"--max-minutes={minutes}")
        product.append(f"trainer.max_minutes={minutes}")
    return baseline, product


def train_baseline(
    m: Manifests,
    size: Size,
    out_dir: Path,
    log_every: int,
    warmup_windows: int,
    steps: int | None = None,
    minutes: float | None = None,
    lr: float | None = None,
    dev: bool = False,
    save: bool = False,
) -> Run:
    out_dir.mkdir(parents=True, exist_ok=True)
    budget, _ = _train_budget(steps, minutes)
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "seed_baseline.py"),
        "train",
        f"--train-manifest={m.train}",
        f"--language={m.language}",
        f"--log-every={log_every}",
        f"--out={out_dir / 'result.json'}",
        *size.baseline_args(),
        *budget,
    ]
    if lr:
        cmd.append(f"--lr={lr}")
    if dev:
        cmd += [f"--dev-manifest={m.dev}", "--eval-every-epoch"]
    if save:
        cmd.append(f"--save={out_dir / 'model.pt'}")
    run = Run("baseline", run_in_project(cmd, out_dir / "log.txt")).check()
    result = json.loads((out_dir / "result.json").read_text())
    run.windows = [w["audio_seconds"] / w["seconds"] for w in result["windows"][warmup_windows:]]
    run.dev_cer, run.final_dev_cer = result["best_dev_cer"], result["final_dev_cer"]
    run.steps = result["steps"]
    return run


def train_product(
    m: Manifests,
    size: Size,
    out_dir: Path,
    log_every: int,
    warmup_windows: int,
    steps: int | None = None,
    minutes: float | None = None,
    lr: float | None = None,
    dev: bool = False,
    precision: str = "fp32",
    overrides: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    _, budget = _train_budget(steps, minutes)
    cmd = [
        PYTHON,
        str(ROOT / "train.py"),
        "data=manifest",
        f"data.language={m.language}",
        f"data.train_manifest={m.train}",
        f"data.dev_manifest={m.dev if dev else m.dev_tiny}",
        "data.test_manifest=null",  # evaluate.py scores the test split in the RTF phase
        *size.product_overrides(),
        *budget,
        f"trainer.log_every_steps={log_every}",
        "trainer.checkpoint_every_steps=null",
        f"trainer.precision={precision}",
        "logger=none",
        f"hydra.run.dir={out_dir}",
        *(overrides or []),
    ]
    if lr:
        cmd.append(f"optim.lr={lr}")
    run = Run("product", run_in_project(cmd, out_dir.with_suffix(".log"), env)).check()
    metrics = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["train/audio_seconds_per_second"] for r in metrics if "train/loss" in r]
    run.windows = rates[warmup_windows:]
    devs = [r["dev/cer"] for r in metrics if "dev/cer" in r]
    summary = json.loads((out_dir / "summary.json").read_text())
    run.dev_cer, run.final_dev_cer = summary.get("best_dev_cer"), devs[-1] if devs else None
    run.steps = summary.get("step", 0)
    return run


def decode_baseline(ckpt: Path, manifest: Path, out_dir: Path, batch_size: int) -> Run:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        PYTHON,
        str(ROOT / "bench" / "seed_baseline.py"),
        "decode",
        f"--ckpt={ckpt}",
        f"--manifest={manifest}",
        f"--batch-size={batch_size}",
        f"--out={out_dir / 'result.json'}",
    ]
    run = Run("baseline", run_in_project(cmd, out_dir / "log.txt")).check()
    result = json.loads((out_dir / "result.json").read_text())
    run.rtf, run.cer = result["rtf"], result["cer"]
    return run


def evaluate_product(
    ckpt: Path, manifest: Path, out_dir: Path, batch_size: int, quantize: bool = False
) -> Run:
    cmd = [
        PYTHON,
        str(ROOT / "evaluate.py"),
        f"ckpt={ckpt}",
        f"manifest={manifest}",
        f"batch_size={batch_size}",
        f"quantize={str(quantize).lower()}",
        "logger=none",
        f"hydra.run.dir={out_dir}",
    ]
    side = "product int8" if quantize else "product"
    run = Run(side, run_in_project(cmd, out_dir.with_suffix(".log"))).check()
    result = json.loads((out_dir / "eval.json").read_text())
    run.rtf, run.cer = result["rtf"], result["cer"]
    return run


def mean_duration(manifest: Path) -> float:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return sum(r["duration"] for r in rows) / max(len(rows), 1)


def write_tiny_manifest(source: Path, dest: Path, n: int) -> Path:
    """The first `n` lines of a manifest, with absolute audio paths (relative ones resolve
    against the manifest's own folder, which `dest` is not)."""
    lines = []
    for line in source.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        path = Path(row["audio_filepath"])
        row["audio_filepath"] = str(path if path.is_absolute() else source.parent / path)
        lines.append(json.dumps(row, ensure_ascii=False))
        if len(lines) == n:
            break
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    return dest


def manifests_from(paths: dict, work: Path, language: str) -> Manifests:
    """The manifests at `paths` (split -> path): train and dev must exist, test may not; the
    product's tiny dev manifest is written into `work`."""
    for split in ("train", "dev"):
        if not paths.get(split) or not Path(paths[split]).is_file():
            raise SystemExit(f"error: no {split} manifest ({paths.get(split)})")
    test = paths.get("test")
    test = Path(test) if test and Path(test).is_file() else None
    tiny = write_tiny_manifest(Path(paths["dev"]), work / "dev_tiny.jsonl", 4)
    return Manifests(Path(paths["train"]), Path(paths["dev"]), test, tiny, language)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b
