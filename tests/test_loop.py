import dataclasses
import math

import pytest
import torch

from asr.data.dataset import Batch, Utterance
from asr.loop import Counters, train_step
from asr.model import DeepSpeech2, ModelConfig


def tiny_batch() -> Batch:
    torch.manual_seed(0)
    utts = [Utterance(f"u{i}", None, "ab", (2, 3), 0.5) for i in range(2)]  # type: ignore[arg-type]
    return Batch(
        feats=torch.randn(2, 16, 40),
        feat_lens=torch.tensor([40, 31]),
        targets=torch.tensor([[2, 3, 4], [5, 6, 0]]),
        target_lens=torch.tensor([3, 2]),
        utts=utts,
        problems=[],
    )


def make_model():
    torch.manual_seed(0)
    model = DeepSpeech2(ModelConfig(n_cnn=1, n_rnn=1, rnn_dim=16, n_feats=16))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def snapshot(model, optimizer):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    opt = {
        i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.state_dict()["state"].items()
    }
    return weights, opt


def test_a_finite_step_updates_the_weights():
    model, opt = make_model()
    before, _ = snapshot(model, opt)
    result = train_step(
        model, opt, tiny_batch(), blank=28, grad_clip=1.0, device=torch.device("cpu")
    )
    assert result.finite and math.isfinite(result.loss) and result.grad_norm > 0
    after, _ = snapshot(model, opt)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_nonfinite_loss_is_skipped_leaving_weights_and_optimizer_untouched():
    model, opt = make_model()
    device = torch.device("cpu")
    train_step(model, opt, tiny_batch(), 28, 1.0, device)  # give AdamW some state
    weights, opt_state = snapshot(model, opt)
    bad = tiny_batch()
    bad.feats[0, 0, 0] = float("nan")  # poisons the loss
    result = train_step(model, opt, bad, 28, 1.0, device)
    assert not result.finite
    after_w, after_o = snapshot(model, opt)
    assert all(torch.equal(weights[k], after_w[k]) for k in weights)
    for i in opt_state:
        assert all(torch.equal(opt_state[i][k], after_o[i][k]) for k in opt_state[i])
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_nonfinite_gradient_with_a_finite_loss_is_skipped_too(bad):
    model, opt = make_model()
    device = torch.device("cpu")
    train_step(model, opt, tiny_batch(), 28, 1.0, device)  # give AdamW some state
    weights, opt_state = snapshot(model, opt)
    handle = model.classifier[-1].weight.register_hook(lambda g: g * bad)
    result = train_step(model, opt, tiny_batch(), 28, 1.0, device)
    handle.remove()
    assert not result.finite and math.isfinite(result.loss) and not math.isfinite(result.grad_norm)
    after_w, after_o = snapshot(model, opt)
    assert all(torch.equal(weights[k], after_w[k]) for k in weights)
    for i in opt_state:
        assert all(torch.equal(opt_state[i][k], after_o[i][k]) for k in opt_state[i])
    assert all(p.grad is None for p in model.parameters())


def test_counters_from_an_older_checkpoint_still_load():
    """Checkpoints written before `consecutive_nonfinite` existed resume with a zero count."""
    old = dataclasses.asdict(Counters(step=7, nonfinite_steps=2))
    del old["consecutive_nonfinite"]
    assert Counters(**old) == Counters(step=7, nonfinite_steps=2, consecutive_nonfinite=0)
