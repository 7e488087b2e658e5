"""Micro-benchmarks behind lever decisions too small or too slow for bench/run.py's windows:

python bench/micro.py            # all four, about 3 minutes on 2 cores
python bench/micro.py dropout    # or: adamw, channels_last, compile

- dropout: the product's CPU dropout (mask from torch.rand) against torch's (bernoulli_), the
  forward and backward of one front-end activation at seed size;
- adamw: one AdamW step over the seed-size model's 23.7 M parameters, torch's fused CPU kernel
  (optim.fused=true) against its default implementation;
- channels_last: the ds2_small conv front-end's inference forward in channels_last memory
  format against the default (contiguous) one;
- compile: a seed-size training step (forward and backward) with the residual conv blocks under
  torch.compile(dynamic=True) against eager, over six utterance lengths.

Each prints the median time of each side, interleaved, and the ratio (product choice first).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.model import (
    DeepSpeech2,
    Dropout,
    ModelConfig,
    conv_time_major,
    frames_kept,
)


def interleaved(sides: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds per call of each side, the sides called in turn after one warm-up each."""
    for fn in sides.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(reps):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(what: str, medians: dict[str, float]) -> None:
    (a, ta), (b, tb) = medians.items()
    print(f"{what}: {a} {ta * 1e3:.1f} ms, {b} {tb * 1e3:.1f} ms; {a}/{b} time {ta / tb:.3f}x")


def dropout() -> None:
    x = torch.randn(10, 32, 140, 64, requires_grad=True)  # a front-end map, seed size
    grad = torch.randn_like(x)
    ours = Dropout(0.1)

    def run(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        return lambda: fn(x).backward(grad)

    sides = {"torch.rand mask": run(ours), "F.dropout": run(lambda t: F.dropout(t, 0.1, True))}
    report("dropout, forward + backward", interleaved(sides, 20))


def adamw() -> None:
    model = DeepSpeech2(ModelConfig(3, 5, 512, 128))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    fused = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    default = torch.optim.AdamW(model.parameters(), lr=1e-6)
    report("AdamW step, seed size", interleaved({"fused": fused.step, "default": default.step}, 10))


def channels_last() -> None:
    torch.manual_seed(0)
    model = DeepSpeech2(ModelConfig(1, 2, 256, 128)).eval()
    feats, lens = torch.randn(16, 128, 700), torch.full((16,), 700)

    def front(layout: torch.memory_format) -> Callable[[], None]:
        @torch.inference_mode()
        def run() -> None:
            out_lens = model.output_lengths(lens)
            x = feats * frames_kept(lens, feats.shape[2]).float()[:, None, :]
            x = x.transpose(1, 2).unsqueeze(1).contiguous(memory_format=layout)  # (B, 1, T, F)
            x = conv_time_major(model.cnn, x)  # (B, 32, T', F/2)
            keep = frames_kept(out_lens, x.shape[2]).float()[:, None, :, None]  # (B, 1, T', 1)
            x = x * keep
            for layer in model.rescnn_layers:
                x = layer(x, keep)

        return run

    sides = {"contiguous": front(torch.contiguous_format)}
    sides["channels_last"] = front(torch.channels_last)
    report("conv front-end inference, ds2_small", interleaved(sides, 8))


def compile_convs() -> None:
    torch.manual_seed(0)
    eager = DeepSpeech2(ModelConfig(3, 5, 512, 128)).train()
    compiled = DeepSpeech2(ModelConfig(3, 5, 512, 128)).train()
    compiled.load_state_dict(eager.state_dict())
    for i, layer in enumerate(compiled.rescnn_layers):
        compiled.rescnn_layers[i] = torch.compile(layer, dynamic=True)
    lengths = [300, 450, 600, 800, 350, 700]

    def steps(model: DeepSpeech2) -> Callable[[], None]:
        def run() -> None:
            for frames in lengths:
                feats, lens = torch.randn(10, 128, frames), torch.full((10,), frames)
                model(feats, lens)[0].sum().backward()
                model.zero_grad(set_to_none=True)

        return run

    start = time.perf_counter()
    steps(compiled)()  # compiles (the dynamic-shape graph after the first two lengths)
    print(f"compile: first pass over the six lengths {time.perf_counter() - start:.0f} s")
    report("seed-size training steps, six lengths", interleaved(
        {"eager": steps(eager), "torch.compile convs": steps(compiled)}, 3))  # fmt: skip


BENCHES = {
    "dropout": dropout,
    "adamw": adamw,
    "channels_last": channels_last,
    "compile": compile_convs,
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(BENCHES):
        BENCHES[name]()
