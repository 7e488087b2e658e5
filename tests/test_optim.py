import math

import pytest
import torch

from asr.optim import build_optimizer, lr_at, progress
from asr.schema import OptimConfig


def test_onecycle_matches_torch_onecycle_linear():
    cfg = OptimConfig(lr=5e-4, schedule="onecycle")
    total = 200
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr,
        total_steps=total + 1,
        anneal_strategy="linear",
        pct_start=cfg.pct_start,
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor,
        cycle_momentum=False,
        three_phase=False,
    )
    for step in range(total):
        ours = lr_at(step / total, cfg)
        assert ours == pytest.approx(opt.param_groups[0]["lr"], rel=0.02, abs=1e-7)
        opt.step()
        sched.step()


def test_onecycle_shape():
    cfg = OptimConfig(
        lr=1.0, schedule="onecycle", pct_start=0.25, div_factor=10, final_div_factor=100
    )
    assert lr_at(0.0, cfg) == pytest.approx(0.1)
    assert lr_at(0.25, cfg) == pytest.approx(1.0)
    assert lr_at(1.0, cfg) == pytest.approx(0.001)
    assert lr_at(2.0, cfg) == lr_at(1.0, cfg)  # clamped


def test_cosine_and_constant():
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="cosine", warmup=0.1, min_lr_ratio=0.0)
    assert lr_at(0.05, cfg) == pytest.approx(0.5)
    assert lr_at(0.1, cfg) == pytest.approx(1.0)
    assert lr_at(0.55, cfg) == pytest.approx(0.5)
    assert lr_at(1.0, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(0.7, OptimConfig(schedule="constant", lr=3e-4)) == 3e-4


def test_progress_is_the_largest_budget_fraction():
    assert progress(50, 0.1, 1.0, 100, 10, None) == 0.5
    assert progress(50, 9.0, 1.0, 100, 10, None) == 0.9
    assert progress(1, 0.0, 9.0, None, None, 10.0) == 0.9
    assert progress(0, 0.0, 0.0, None, None, None) == 0.0


def test_optimizer_group_really_switches():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer(params, OptimConfig()), torch.optim.AdamW)
    sgd = build_optimizer(params, OptimConfig(name="sgd", lr=0.1, schedule="cosine"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["fused"]  # skips non-finite steps on the device (asr.step)
    assert math.isclose(sgd.defaults["lr"], 0.1)
