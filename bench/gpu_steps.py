"""The GPU benchmark's step phase, inside its workers: one training step of each side on
batches already on the device, timed in windows, its GPU memory, and its profile.

The batches are drawn once (build_step_batches, in the parent) and loaded by every worker, of
either side; a worker (`python bench/gpu.py _step SPEC OUT`, step_worker) measures the
configurations its spec lists, one after another, and writes one row for each.
"""

from __future__ import annotations

import gc
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.gpu_trace import profile_steps, sync_sites, trace_file
from bench.measure import median, synchronize
from bench.sides import Manifests, Size

if TYPE_CHECKING:
    from asr.data.dataset import SpeechDataset, Utterance

PRECISIONS = ("fp32", "tf32", "bf16")
BASELINE_PRECISION = "seed"  # fp32 with torch's default switches (cuDNN convolutions in TF32)


# ------------------------------------------------------------------------------ the batches


def build_step_batches(
    m: Manifests, size: Size, batch_sizes: tuple[int, ...], per_size: int, path: Path, seed=0
) -> dict:
    """`per_size` batches of each size, drawn from the training utterances and sorted longest
    first, as features (float16, the product's log-mel) in `path`: every step worker, of
    either side, loads the same batches. Returns each batch's audio seconds and frames."""
    utts, dataset = training_utterances(m, size.n_mels)
    feats_of: dict[int, torch.Tensor] = {}  # by utterance: each one's features computed once
    out: dict[int, list[dict]] = {}
    for b in batch_sizes:
        out[b] = [
            draw_batch(utts, dataset, feats_of, b, size.n_mels, random.Random(f"{seed}-{b}-{j}"))
            for j in range(per_size)
        ]
    torch.save(out, path)
    return {
        str(b): [
            {"audio_seconds": sum(u[4] for u in x["utts"]), "frames": int(x["feats"].shape[2])}
            for x in xs
        ]
        for b, xs in out.items()
    }


def training_utterances(m: Manifests, n_mels: int) -> tuple[list[Utterance], SpeechDataset]:
    """The usable training utterances, prepared as the product's loader prepares them, and the
    dataset that computes their log-mel features."""
    from asr.data.checks import ProblemReport
    from asr.data.dataset import SpeechDataset
    from asr.data.loader import ctc_frames_fn, make_logmel
    from asr.data.table import TextRules, open_table
    from asr.model import conv_output_lengths
    from asr.schema import DataConfig
    from asr.text import make_vocabulary

    data = DataConfig(n_mels=n_mels, language=m.language)
    vocab = make_vocabulary(data.alphabet)
    logmel = make_logmel(data)
    frames = ctc_frames_fn(logmel, conv_output_lengths)
    report = ProblemReport()
    utts = open_table(
        m.train,
        TextRules(vocab, m.language, data.max_duration),
        output_frames=frames,
        cache_dir=Path(data.cache_dir).expanduser(),
        report=report,
    )
    if not utts:
        raise SystemExit(f"error: no usable training utterances in {m.train}")
    return utts, SpeechDataset(utts, logmel, None)


def draw_batch(
    utts: list[Utterance],
    dataset: SpeechDataset,
    feats_of: dict[int, torch.Tensor],
    b: int,
    n_mels: int,
    rng: random.Random,
) -> dict:
    """`b` utterances drawn by `rng` (with replacement only when there are fewer), padded into
    one batch, longest first, as the collate orders them."""
    n = len(utts)
    idx = rng.sample(range(n), b) if b <= n else rng.choices(range(n), k=b)
    for i in idx:
        if i not in feats_of:
            item = dataset[i]
            if item.feats is None:
                raise SystemExit(f"error: {utts[i].audio_path}: {item.problems}")
            feats_of[i] = item.feats
    idx.sort(key=lambda i: -feats_of[i].shape[1])
    lens = [feats_of[i].shape[1] for i in idx]
    feats = torch.zeros(b, n_mels, max(lens), dtype=torch.float16)
    targets = torch.zeros(b, max(len(utts[i].labels) for i in idx), dtype=torch.long)
    for k, i in enumerate(idx):
        feats[k, :, : lens[k]] = feats_of[i]
        targets[k, : len(utts[i].labels)] = torch.tensor(utts[i].labels)
    return {
        "feats": feats,
        "feat_lens": torch.tensor(lens, dtype=torch.long),
        "targets": targets,
        "target_lens": torch.tensor([len(utts[i].labels) for i in idx]),
        "utts": [
            [u.utt_id, str(u.audio_path), u.text, list(u.labels), u.duration]
            for u in (utts[i] for i in idx)
        ],
    }


# ---------------------------------------------------------------------------- the two steps


class ProductStep:
    """`asr.loop.train_step` on the product's model and fused AdamW, in `precision`."""

    def __init__(self, size: Size, precision: str, device: torch.device, raw: list[dict]):
        from asr.data.dataset import Batch, Utterance
        from asr.model import DeepSpeech2, ModelConfig
        from asr.optim import build_optimizer, lr_at, set_lr
        from asr.precision import configure_precision
        from asr.schema import OptimConfig, TrainerConfig
        from asr.step import train_step
        from asr.text import Vocabulary

        precision, _, gru_impl = precision.partition("/")  # "bf16/reverse": padded GRUs
        self.autocast = configure_precision(precision, device)
        cfg = ModelConfig(size.n_cnn, size.n_rnn, size.rnn_dim, size.n_mels)
        cfg.gru_impl = gru_impl or cfg.gru_impl
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
    """The seed's step, bench/seed_baseline.py's `seed_step` (its lr schedule, zero_grad,
    forward, CTC with host lengths, backward, AdamW, `loss.item()`), on batches already on the
    device: the same utterances as the product's, with the product's log-mel."""

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
        from bench.seed_baseline import seed_step

        batch = self.batches[i % len(self.batches)]
        self.last = seed_step(self.model, self.optimizer, self.criterion, batch, self.lr)

    def check(self) -> dict:
        return {"loss": self.last, "finite": math.isfinite(self.last)}


# ------------------------------------------------------------------ measuring configurations


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
        if side == "product":
            step = ProductStep(size, precision, device, raw)
        else:
            step = BaselineStep(size, device, raw)
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
        trace = trace_file(Path(spec["trace_dir"]), side, batch, precision)
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
    """Warm-up steps, one untimed pass over the batches to size the windows (as many steps as
    fill spec["window_seconds"]), then the timed windows: audio seconds per second of each."""
    n = len(step.batches)
    t0 = time.perf_counter()
    for i in range(spec["warmup_steps"]):
        step(i)
    synchronize(device)
    row["warmup_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):  # the probe: one pass over the batches, to size the windows
        step(i)
    synchronize(device)
    per_step = (time.perf_counter() - t0) / n
    k = n * max(1, min(500, math.ceil(spec["window_seconds"] / max(per_step * n, 1e-9))))
    windows, step_ms = [], []
    for _ in range(spec["windows"]):
        audio = sum(step.audio[i % n] for i in range(k))
        synchronize(device)
        t0 = time.perf_counter()
        for i in range(k):
            step(i)
        synchronize(device)
        dt = time.perf_counter() - t0
        windows.append(audio / dt)
        step_ms.append(dt / k * 1000)
    row.update(windows=windows, steps_per_window=k, step_ms=step_ms, **step.check())


def step_worker(spec_path: str, out_path: str) -> None:
    """The `_step` worker: each configuration of the spec in turn, its rows written to
    `out_path` after each one (a crash keeps the rows of those it finished)."""
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
