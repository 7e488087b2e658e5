"""Tests for asr.model: parameter count, shapes, padding independence, CTC trainability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asr.model import (
    DeepSpeech2,
    ModelConfig,
    conv_output_lengths,
    conv_time_major,
    num_params,
)

SMALL = dict(n_cnn=1, n_rnn=2, rnn_dim=32, n_feats=16, dropout=0.0)


def small_model(seed: int = 0, gru_impl: str = "auto") -> DeepSpeech2:
    torch.manual_seed(seed)
    return DeepSpeech2(ModelConfig(**SMALL, gru_impl=gru_impl)).eval()


def expected_params(n_cnn: int, n_rnn: int) -> int:
    return 4_741_981 + 18_752 * n_cnn + 4_726_784 * (n_rnn - 1)


def test_default_param_count_matches_seed() -> None:
    with torch.device("meta"):  # no memory, no init cost
        model = DeepSpeech2(ModelConfig(n_cnn=3, n_rnn=5, rnn_dim=512, n_feats=128, n_class=29))
    assert num_params(model) == 23_705_373


@pytest.mark.parametrize(("n_cnn", "n_rnn"), [(0, 1), (1, 2), (2, 3), (3, 5), (4, 1)])
def test_param_count_formula(n_cnn: int, n_rnn: int) -> None:
    with torch.device("meta"):
        model = DeepSpeech2(ModelConfig(n_cnn=n_cnn, n_rnn=n_rnn))
    assert num_params(model) == expected_params(n_cnn, n_rnn)


def test_output_lengths_formula() -> None:
    lens = torch.arange(1, 11)
    expected = torch.tensor([(t + 2 * 1 - 3) // 2 + 1 for t in range(1, 11)])
    assert torch.equal(conv_output_lengths(lens), expected)
    assert torch.equal(small_model().output_lengths(lens), expected)
    # Unlike the seed's T // 2, odd lengths round up: 1 -> 1, 3 -> 2, 9 -> 5.
    assert expected.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_output_lengths_read_the_time_axis_of_the_stem() -> None:
    """The stem keeps the seed's (B, C, F, T) parameter layout: index 1 of its kernel, stride and
    padding is time. With a non-square stem the lengths still match the frames it emits."""
    model = small_model()
    model.cnn = torch.nn.Conv2d(1, 32, kernel_size=(3, 5), stride=(1, 3), padding=(1, 2))
    for t in (1, 7, 20, 21):
        frames = conv_time_major(model.cnn, torch.zeros(1, 1, t, 16)).shape[2]  # (B, C, T', F)
        assert int(model.output_lengths(torch.tensor([t]))[0]) == frames == (t + 4 - 5) // 3 + 1


@pytest.mark.parametrize("t", [20, 21])
def test_forward_shapes(t: int) -> None:
    model = small_model()
    feats = torch.randn(3, 16, t)
    feat_lens = torch.tensor([t, t - 5, t - 8])
    log_probs, out_lens = model(feats, feat_lens)
    t_out = int(model.output_lengths(torch.tensor(t)))
    assert log_probs.shape == (3, t_out, 29)
    assert torch.equal(out_lens, model.output_lengths(feat_lens))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, t_out), atol=1e-5)


def _alone_vs_batched(model: DeepSpeech2, lens: list[int]) -> list[float]:
    """Max |difference| per utterance between its batched output and its solo output."""
    torch.manual_seed(1)
    t = max(lens)
    feats = torch.randn(len(lens), 16, t)
    feat_lens = torch.tensor(lens)
    for i, n in enumerate(lens):  # garbage in the padding: it must not matter
        feats[i, :, n:] = 100.0
    with torch.no_grad():
        batched, out_lens = model(feats, feat_lens)
        diffs = []
        for i, n in enumerate(lens):
            alone, alone_lens = model(feats[i : i + 1, :, :n], feat_lens[i : i + 1])
            m = int(out_lens[i])
            assert int(alone_lens[0]) == m and alone.shape[1] == m
            diffs.append((batched[i, :m] - alone[0]).abs().max().item())
    return diffs


@pytest.mark.parametrize("gru_impl", ["pack", "reverse", "scan"])
def test_batch_independence(gru_impl: str) -> None:
    diffs = _alone_vs_batched(small_model(gru_impl=gru_impl), [37, 20, 9, 30, 1])
    assert max(diffs) < 1e-5, diffs


@pytest.mark.parametrize("gru_impl", ["reverse", "scan"])
def test_every_gru_impl_is_the_packed_function_forward_and_backward(gru_impl: str) -> None:
    """The ways of keeping padding out of the backward GRU are the same function, with the same
    gradients (what training sees)."""
    packed = small_model(gru_impl="pack").train()
    other = small_model(gru_impl=gru_impl).train()
    torch.manual_seed(3)
    feats, feat_lens = torch.randn(4, 16, 41), torch.tensor([41, 30, 17, 41])
    outputs, grads = [], []
    for model in (packed, other):
        torch.manual_seed(4)  # the same dropout masks
        log_probs, out_lens = model(feats, feat_lens)
        keep = torch.arange(log_probs.shape[1])[None, :] < out_lens[:, None]
        (log_probs * keep[..., None] * torch.linspace(-1, 1, 29)).sum().backward()
        outputs.append(log_probs[keep])
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-5, rtol=1e-4), name


def test_padding_leaks_when_ignored() -> None:
    lens = [40, 12]
    leaky = small_model()
    leaky.gru_impl = "ignore"
    # The backward GRU of the short utterance starts in 14 frames of padding.
    assert _alone_vs_batched(leaky, lens)[1] > 1e-3
    # With equal lengths there is no padding: every mode is the same function.
    feats, feat_lens = torch.randn(3, 16, 25), torch.full((3,), 25)
    with torch.no_grad():
        outs = []
        for mode in ("ignore", "pack", "reverse", "scan"):
            leaky.gru_impl = mode
            outs.append(leaky(feats, feat_lens)[0])
    assert all(torch.allclose(outs[0], o, atol=1e-5) for o in outs[1:])


def test_quantized_model_still_keeps_padding_out() -> None:
    model = torch.ao.quantization.quantize_dynamic(
        small_model(), {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
    )
    # int8 activations are scaled per batch, so batch-mates shift outputs by ~4e-3 here; a
    # backward GRU starting in these 54 frames of padding shifts them by 0.1.
    assert max(_alone_vs_batched(model, [60, 6])) < 0.02


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_cnn": -1}, "n_cnn"),
        ({"n_rnn": 0}, "n_rnn"),
        ({"rnn_dim": 0}, "rnn_dim"),
        ({"n_class": 1}, "n_class"),
        ({"stride": 0}, "stride"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"n_feats": 127}, "n_feats"),
        ({"gru_impl": "none"}, "gru_impl"),
    ],
)
def test_config_validation_names_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"^n_cnn must be >= 0 \(got -1\)$"):
        ModelConfig(n_cnn=-1)
    with pytest.raises(ValueError, match=r"^dropout must be in \[0, 1\) \(got 1.0\)$"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"^n_feats \(127\) must be divisible by stride \(2\)$"):
        ModelConfig(n_feats=127)


def test_ctc_loss_decreases() -> None:
    model = small_model().train()
    torch.manual_seed(2)
    feats = torch.randn(2, 16, 30)
    feat_lens = torch.tensor([30, 24])
    targets = torch.randint(0, 28, (2, 6))  # blank (28) never a target
    target_lens = torch.tensor([6, 4])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        log_probs, out_lens = model(feats, feat_lens)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), targets, out_lens, target_lens, blank=28, zero_infinity=True
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.parametrize("gru_impl", ["pack", "reverse", "scan"])
def test_grus_run_in_fp32_under_bf16_autocast(gru_impl: str) -> None:
    """Autocast would run cuDNN GRUs in fp16 with no scaler: the stack turns it off."""
    model = small_model(gru_impl=gru_impl)
    seen = []
    for layer in model.birnn_layers:
        hook = lambda _m, _args, out: seen.append((out.dtype, torch.is_autocast_enabled("cpu")))  # noqa: E731
        layer.layer_norm.register_forward_hook(hook)
    feats, lens = torch.randn(2, 16, 30), torch.tensor([30, 21])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, _ = model(feats, lens)
    assert seen == [(torch.float32, False)] * len(model.birnn_layers)
    assert torch.isfinite(log_probs).all()
