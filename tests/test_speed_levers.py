"""The speed levers change the speed, never the result: cached features, persistent workers,
the GRU scan's hand-written backward, fused AdamW."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from asr.data.dataset import FeatureCache, SpeechDataset
from asr.data.loader import default_num_workers, make_loader
from asr.features import LogMel, SpecAugment
from asr.gru import _TwoDirectionScan
from asr.model import Dropout
from asr.optim import build_optimizer
from asr.schema import OptimConfig
from tests.conftest import ROOT
from tests.test_faults import tone_utterances


@pytest.mark.parametrize("num_workers", [0, 1])
def test_cached_features_and_persistent_workers_give_each_epochs_own_masks(tmp_path, num_workers):
    """Persistent workers keep their cache across epochs and still see each new epoch (its
    masks); what they return equals a fresh in-process dataset's features, cached or not."""
    utts = tone_utterances(tmp_path, 5)
    logmel, aug = LogMel(16000, 32), SpecAugment(2, 8, 2, 20, 0.3)
    loader, sampler = make_loader(
        utts,
        logmel,
        batch_size=2,
        augment=aug,
        num_buckets=2,
        shuffle=True,
        num_workers=num_workers,
        cache=FeatureCache(8 * 2**20),
    )
    seen: dict[int, dict[str, torch.Tensor]] = {}
    for epoch in range(3):
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        seen[epoch] = {
            u.utt_id: f[:, :n]
            for b in loader
            for u, f, n in zip(b.utts, b.feats, b.feat_lens, strict=True)
        }
    for epoch, feats in seen.items():
        fresh = SpeechDataset(utts, logmel, aug, seed=0, cache=FeatureCache(2**20))
        fresh.set_epoch(epoch)
        for i, u in enumerate(utts):
            assert torch.equal(feats[u.utt_id], fresh[i].feats), (epoch, u.utt_id)
            assert torch.equal(fresh[i].feats, fresh[i].feats)  # second read: from the cache
    assert not torch.equal(seen[1]["u0"], seen[2]["u0"])  # the workers saw the new epoch


def test_a_full_cache_keeps_serving_what_it_holds_and_computes_the_rest(tmp_path):
    utts = tone_utterances(tmp_path, 4)
    ds = SpeechDataset(utts, LogMel(16000, 32), None, cache=FeatureCache(1))  # room for nothing
    assert torch.equal(ds[0].feats, ds[0].feats) and not ds.cache.used_bytes
    uncached = SpeechDataset(utts, LogMel(16000, 32), None)
    assert torch.allclose(ds[3].feats, uncached[3].feats, atol=1e-2)  # float16 rounding only


def test_the_scans_backward_is_the_gradient_of_its_forward():
    torch.manual_seed(0)
    steps, batch, hidden = 5, 3, 4
    gi = torch.randn(steps, 2, batch, 3 * hidden, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(2, 3 * hidden, hidden, dtype=torch.float64, requires_grad=True)
    b_hh = torch.randn(2, 3 * hidden, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_TwoDirectionScan.apply, (gi, w_hh, b_hh))


def test_fused_adamw_takes_the_same_steps_as_the_default_one():
    torch.manual_seed(0)
    params = {k: [torch.nn.Parameter(torch.randn(7, 5))] for k in (True, False)}
    params[False][0].data.copy_(params[True][0].data)
    opts = {k: build_optimizer(p, OptimConfig(lr=1e-2, fused=k)) for k, p in params.items()}
    for _ in range(5):
        grad = torch.randn(7, 5)
        for k, opt in opts.items():
            params[k][0].grad = grad.clone()
            opt.step()
    assert torch.allclose(params[True][0], params[False][0], atol=1e-6)


EXIT_WITH_A_LIVE_LOADER = """
import sys
from pathlib import Path
from asr.data.loader import default_num_workers, make_loader
from asr.features import LogMel
from tests.conftest import ROOT
from tests.test_faults import tone_utterances
LOADER, _ = make_loader(tone_utterances(Path(sys.argv[1]), 4), LogMel(16000, 32), batch_size=2,
                        num_buckets=2, num_workers=1)
print(sum(len(b) for b in LOADER))
"""


def test_a_process_exits_while_its_persistent_workers_are_alive(tmp_path):
    """Persistent workers ignore SIGTERM, which multiprocessing's exit handler relies on: without
    asr.data.loader's own exit handler this process waits for its worker forever."""
    script = tmp_path / "live_loader.py"
    script.write_text(EXIT_WITH_A_LIVE_LOADER)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "4", result.stderr[-2000:]


def test_worker_count_defaults_to_none_on_cpu_and_one_on_cuda():
    assert default_num_workers(None, torch.device("cpu")) == 0
    assert default_num_workers(None, torch.device("cuda")) == 1
    assert default_num_workers(3, torch.device("cpu")) == 3  # an explicit count is kept
    assert default_num_workers(0, torch.device("cuda")) == 0


def test_the_cpu_dropout_keeps_torchs_distribution():
    """asr.model.Dropout draws its mask with torch.rand: each element is kept with probability
    1 - p and scaled by 1 / (1 - p), as nn.Dropout does; evaluation passes the input through."""
    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1e6 draws: std 3e-4
    assert torch.allclose(y[kept], torch.tensor(1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * scale) / dx = scale
    drop.eval()
    assert drop(x) is x


def test_one_feature_cache_budget_serves_every_split_of_a_process(tmp_path):
    """`data.feature_cache_mb` is one process's budget: datasets sharing a cache share it, and
    each keeps its own entries (the same index in two splits is two utterances)."""
    utts = tone_utterances(tmp_path, 4)
    logmel = LogMel(16000, 32)
    uncached = SpeechDataset(utts, logmel, None)
    sizes = [uncached[i].feats.half().nbytes for i in range(4)]
    cache = FeatureCache(budget_bytes=sum(sizes[:3]))
    train, dev = (SpeechDataset(part, logmel, None, cache=cache) for part in (utts[:2], utts[2:]))
    for ds in (train, dev):
        ds[0], ds[1]
    assert cache.used_bytes == sum(sizes[:3])
    assert torch.equal(dev[0].feats, dev[0].feats) and not torch.equal(train[0].feats, dev[0].feats)
