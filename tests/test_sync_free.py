"""A training step never waits for the host: no device value is read between two log steps.

On CUDA every host read of a device tensor (`.item()`, `float(t)`, `bool(t)`, a copy to the
CPU) stalls the host until the GPU's queue drains, so the next step cannot be queued while
this one runs. These tests run the CUDA code path (packed GRUs, fused AdamW skipping bad steps
on the device, lengths from the host) on the CPU, under a dispatch mode that sees every op the
step calls, and count the ops that read a tensor's value on the host or copy across devices.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import asr.loop
from asr.config import to_train_config
from asr.loop import Trainer
from tests.conftest import TINY_CORPUS, TINY_MODEL, compose_train

aten = torch.ops.aten
SCALAR_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default}
COPIES = {aten._to_copy.default, aten.copy_.default}


def tensors_in(values) -> list[torch.Tensor]:
    """The tensors among op arguments or results, one list level deep (what aten ops take)."""
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, tuple | list):
            out += [t for t in v if isinstance(t, torch.Tensor)]
    return out


class HostReads(TorchDispatchMode):
    """Counts host reads of device values: scalar reads (`.item()`, `float(t)`, `bool(t)` all
    end in `_local_scalar_dense`) and copies between devices.

    On the CPU every tensor is a host tensor, so the count must know which ones live on the
    host on CUDA too, by design: the batch's lengths (`mark_host`), what is computed from them
    alone, and a PackedSequence's batch sizes. Reading those costs nothing on CUDA. `paused()`
    stops counting, for the moments when the host is meant to read (a log step, a checkpoint,
    an evaluation) and for data loading (in worker processes on CUDA).
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self.counting = True
        self._host: dict[int, weakref.ref] = {}

    def mark_host(self, *tensors: torch.Tensor) -> None:
        for t in tensors:
            self._host[id(t)] = weakref.ref(t)

    def _on_host(self, t: torch.Tensor) -> bool:
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = tensors_in((*args, *kwargs.values()))
        from_host = bool(inputs) and all(self._on_host(t) for t in inputs)
        if self.counting and (
            (func in SCALAR_READS and not from_host) or self._crosses_devices(func, inputs, kwargs)
        ):
            self.reads.append(str(func))
        out = func(*args, **kwargs)
        if func is aten._pack_padded_sequence.default:
            self.mark_host(out[1])  # batch sizes: always a CPU tensor
        elif from_host:
            self.mark_host(*tensors_in(out if isinstance(out, tuple | list) else (out,)))
        return out

    @staticmethod
    def _crosses_devices(func, inputs, kwargs) -> bool:
        if func not in COPIES:
            return False
        devices = {t.device for t in inputs}
        if kwargs.get("device") is not None:
            devices.add(torch.device(kwargs["device"]))
        return len(devices) > 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.counting = False
        try:
            yield
        finally:
            self.counting = True


def tiny_trainer(corpus_cache, run_dir, *extra: str) -> Trainer:
    cfg = compose_train(
        [
            *TINY_CORPUS,
            *TINY_MODEL,
            f"data.cache_dir={corpus_cache}",
            "data.batch_size=4",
            "model.gru_impl=pack",  # what CUDA runs
            "trainer.device=cpu",
            "trainer.log_every_steps=2",
            "trainer.max_steps=5",  # two log windows (steps 2 and 4), then a stop
            "logger=none",
            *extra,
        ]
    )
    return Trainer(to_train_config(cfg), run_dir)


def count_host_reads_in_an_epoch(trainer: Trainer) -> tuple[HostReads, int]:
    """Run one epoch with the host's reading moments (log steps, checkpoints, evaluations,
    and data loading, which runs in worker processes on CUDA) left out of the count."""
    mode = HostReads()
    for name in ("log_window", "save", "evaluate_dev"):
        real = getattr(trainer, name)

        def paused(*args, _real=real, **kwargs):
            with mode.paused():
                return _real(*args, **kwargs)

        setattr(trainer, name, paused)
    loader = trainer.train_loader

    class LoadingPaused:
        dataset = loader.dataset

        def __iter__(self):
            with mode.paused():
                batches = iter(loader)
            while True:
                with mode.paused():
                    batch = next(batches, None)
                if batch is None:
                    return
                mode.mark_host(batch.feat_lens, batch.target_lens)  # made by the collate
                yield batch

    trainer.train_loader = LoadingPaused()
    logged = []
    real_log = trainer.log_window
    trainer.log_window = lambda *a, **k: (logged.append(trainer.counters.step), real_log(*a, **k))
    with mode:
        trainer.run_epoch()
    return mode, len(logged)


def test_the_steps_between_log_steps_read_nothing_on_the_host(corpus_cache, tmp_path):
    trainer = tiny_trainer(corpus_cache, tmp_path / "run")
    mode, logs = count_host_reads_in_an_epoch(trainer)
    assert trainer.counters.step == 5 and logs == 2  # several steps and log windows ran
    assert mode.reads == []
    assert math.isfinite(trainer.read_tally().loss_sum)  # the numbers reach the host at logs


def test_the_counter_catches_a_step_that_reads_its_loss(corpus_cache, tmp_path, monkeypatch):
    """The same epoch, with a `.item()` in the step (as `float(loss)` used to be): caught at
    every step, so the test above can fail."""
    real = asr.loop.ctc_loss

    def loss_read_on_the_host(*args, **kwargs):
        loss = real(*args, **kwargs)
        loss.item()
        return loss

    monkeypatch.setattr(asr.loop, "ctc_loss", loss_read_on_the_host)
    trainer = tiny_trainer(corpus_cache, tmp_path / "run", "trainer.max_steps=3")
    mode, _ = count_host_reads_in_an_epoch(trainer)
    assert trainer.counters.step == 3 and len(mode.reads) == 3
    assert set(mode.reads) == {"aten._local_scalar_dense.default"}


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_a_nonfinite_step_is_skipped_on_the_device_without_a_host_read(poison):
    """Fused AdamW's `found_inf` leaves weights and optimizer state untouched, bit for bit."""
    from asr.loop import train_step
    from asr.optim import build_optimizer
    from asr.schema import OptimConfig
    from asr.step import DeviceTally
    from tests.test_loop import make_model, snapshot, tiny_batch

    model, _ = make_model()
    model.gru_impl = "pack"
    opt = build_optimizer(model.parameters(), OptimConfig(lr=1e-2, fused=True))
    cpu = torch.device("cpu")
    train_step(model, opt, tiny_batch(), 28, 1.0, cpu)  # AdamW's state exists from here
    weights, state = snapshot(model, opt)
    bad = tiny_batch()
    if poison == "loss":
        bad.feats[0, 0, 0] = math.nan
    else:
        model.classifier[-1].weight.register_hook(lambda g: g * math.inf)
    tally, mode = DeviceTally(cpu), HostReads()
    mode.mark_host(bad.feat_lens, bad.target_lens)
    with mode:
        tally.add(train_step(model, opt, bad, 28, 1.0, cpu))
    assert mode.reads == []
    reading = tally.read()
    assert reading.nonfinite_steps == 1 and reading.streak == 1 and reading.finite_steps == 0
    after_w, after_s = snapshot(model, opt)
    assert all(torch.equal(weights[k], after_w[k]) for k in weights)
    for i in state:
        assert all(torch.equal(state[i][k], after_s[i][k]) for k in state[i])
