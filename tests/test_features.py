"""Tests for asr.features: LogMel framing/normalisation and SpecAugment masking."""

from __future__ import annotations

import math

import pytest
import torch

from asr.data.loader import make_augment, make_logmel
from asr.features import LogMel, SpecAugment
from asr.schema import AugmentConfig, DataConfig


# 200 and 512: shorter than the STFT's reflect padding takes with n_fft 1024 (n_fft // 2 + 1)
@pytest.mark.parametrize("n", [200, 512, 513, 1600, 12345, 16000, 16159, 16160])
def test_logmel_frames_match_num_frames(n: int) -> None:
    lm = LogMel(16000, 128)
    out = lm(torch.randn(n))
    assert out.shape == (128, lm.num_frames(n)) and bool(out.isfinite().all())


def test_logmel_batched_matches_single() -> None:
    lm = LogMel(16000, 40)
    waves = torch.randn(3, 8000)
    batched = lm(waves)
    assert batched.shape == (3, 40, lm.num_frames(8000))
    for i in range(3):
        assert torch.allclose(batched[i], lm(waves[i]), atol=1e-5)


def test_logmel_normalised() -> None:
    torch.manual_seed(0)
    out = LogMel(16000, 128)(0.01 * torch.randn(16000))  # gain must not matter
    assert abs(out.mean().item()) < 1e-4
    assert abs(out.std().item() - 1.0) < 1e-4
    silent = LogMel(16000, 128)(torch.zeros(4000))  # constant input: guarded std, no NaN
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-2


def _hz_to_mel(f: float) -> float:  # HTK scale, torchaudio's default
    return 2595.0 * math.log10(1.0 + f / 700.0)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 4000.0])
def test_tone_lands_in_right_mel_bin(freq: float) -> None:
    sr, n_mels = 16000, 64
    t = torch.arange(sr) / sr
    spec = LogMel(sr, n_mels)(torch.sin(2 * math.pi * freq * t))
    peak = int(spec.mean(dim=1).argmax())
    top = _hz_to_mel(sr / 2)
    centres = [top * (i + 1) / (n_mels + 1) for i in range(n_mels)]
    expected = min(range(n_mels), key=lambda i: abs(centres[i] - _hz_to_mel(freq)))
    assert abs(peak - expected) <= 1, (peak, expected)


def _spec(f: int = 80, t: int = 200) -> torch.Tensor:
    return torch.randn(f, t) + 10.0  # no natural zeros


def test_specaugment_masks_in_train_mode() -> None:
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=20, time_masks=2, time_width=40).train()
    rows = cols = 0
    for _ in range(10):
        spec = _spec()
        before = spec.clone()
        out = aug(spec)
        assert torch.equal(spec, before)  # input untouched
        zero = out == 0
        rows += int(zero.all(dim=1).sum())
        cols += int(zero.all(dim=0).sum())
        assert torch.equal(out[~zero], spec[~zero])  # only masking, nothing else changes
    assert rows > 0 and cols > 0


def test_specaugment_eval_and_zero_masks_are_identity() -> None:
    spec = _spec()
    assert torch.equal(SpecAugment().eval()(spec), spec)
    assert torch.equal(SpecAugment(freq_masks=0, time_masks=0).train()(spec), spec)


@pytest.mark.parametrize(("time_masks", "t"), [(1, 200), (2, 200), (2, 30)])
def test_specaugment_time_mask_capped_by_ratio(time_masks: int, t: int) -> None:
    torch.manual_seed(0)
    ratio = 0.1
    aug = SpecAugment(freq_masks=0, time_masks=time_masks, time_width=1000, time_width_ratio=ratio)
    for _ in range(100):
        masked = int((aug.train()(_spec(t=t)) == 0).all(dim=0).sum())
        assert masked <= time_masks * ratio * t


def test_specaugment_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="time_width_ratio"):
        SpecAugment(time_width_ratio=1.5)
    with pytest.raises(ValueError, match="freq_masks"):
        SpecAugment(freq_masks=-1)


def test_builders_take_every_setting_from_the_config() -> None:
    d = DataConfig(sample_rate=8000, n_mels=40, n_fft=512, win_length=320, hop_length=80)
    mel = make_logmel(d).mel
    assert (mel.sample_rate, mel.n_mels, mel.n_fft, mel.win_length, mel.hop_length) == (
        8000,
        40,
        512,
        320,
        80,
    )
    a = AugmentConfig(freq_masks=1, freq_width=7, time_masks=3, time_width=11, time_width_ratio=0.5)
    aug = make_augment(a)
    assert aug is not None
    assert (aug.freq_masks, aug.freq_width, aug.time_masks, aug.time_width) == (1, 7, 3, 11)
    assert aug.time_width_ratio == 0.5
    assert make_augment(AugmentConfig(name="none")) is None


def test_code_defaults_are_the_schemas() -> None:
    """LogMel's STFT settings and SpecAugment's masks default to the config schema's, so a
    LogMel or SpecAugment built without a config cannot drift from a run's (n_fft was 400 here
    against 1024 in the schema, the mask widths 27/40 against 15/35)."""
    d, a = DataConfig(), AugmentConfig()
    mel = LogMel(d.sample_rate, d.n_mels).mel
    assert (mel.n_fft, mel.win_length, mel.hop_length) == (d.n_fft, d.win_length, d.hop_length)
    mel_cfg = make_logmel(d).mel
    assert (mel.n_fft, mel.win_length, mel.hop_length) == (
        mel_cfg.n_fft,
        mel_cfg.win_length,
        mel_cfg.hop_length,
    )
    aug = SpecAugment()
    assert (aug.freq_masks, aug.freq_width, aug.time_masks, aug.time_width) == (
        a.freq_masks,
        a.freq_width,
        a.time_masks,
        a.time_width,
    )
    assert aug.time_width_ratio == a.time_width_ratio


def test_a_relative_log_floor_makes_features_independent_of_the_level():
    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    wave = torch.sin(2 * torch.pi * 220 * t) * (t < 0.6) + 1e-4 * torch.randn(16000)  # then quiet
    relative = LogMel(16000, 64)  # the default: 60 dB below the peak
    assert relative.log_floor_db == 60.0
    for gain in (0.01, 0.1, 3.0):
        assert torch.allclose(relative(wave * gain), relative(wave), atol=1e-4)
    # The absolute floor (older checkpoints', log(power + 1e-6)) is not: a quiet recording puts
    # more of itself on the floor.
    absolute = LogMel(16000, 64, log_floor_db=None)
    assert not torch.allclose(absolute(wave * 0.01), absolute(wave), atol=1e-2)


def test_checkpoints_saved_before_the_relative_floor_keep_the_absolute_one():
    import dataclasses

    from asr.checkpoint import checkpoint_data

    saved = dataclasses.asdict(DataConfig())
    assert checkpoint_data({"config": {"data": saved}}).log_floor_db == 60.0
    del saved["log_floor_db"]  # what such a checkpoint's config holds
    assert checkpoint_data({"config": {"data": saved}}).log_floor_db is None
