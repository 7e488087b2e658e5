"""Waveform augmentations: deterministic per (seed, epoch, utterance), what each one does to the
signal, speed perturbation as the sampler and the CTC filter see it, and exact resume."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.augment import (
    NOISE_COLOURS,
    Babble,
    WaveAugment,
    coloured_noise,
    decaying_noise_rir,
    make_wave_augment,
    measured_rt60,
    measured_snr_db,
    room_rir,
    telephone,
)
from asr.data.dataset import SpeechDataset, Utterance
from asr.data.loader import make_loader
from asr.features import LogMel
from asr.schema import AugmentConfig

SR = 16000
ROBUST = AugmentConfig(
    name="robust",
    speed_factors=[0.9, 1.0, 1.1],
    reverb_prob=0.5,
    rir_source="noise",
    noise_prob=0.5,
    gain_prob=0.5,
    telephone_prob=0.5,
)


def tone_speech(seconds: float, seed: int) -> np.ndarray:
    """Speech-like audio: a few harmonics with a syllable-rate envelope, and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 40 * rng.random()
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    wave *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * wave / np.abs(wave).max() + 0.003 * rng.standard_normal(len(t))).astype("f4")


@pytest.fixture
def utts(tmp_path: Path) -> list[Utterance]:
    out = []
    for i, seconds in enumerate([1.0, 1.4, 0.8, 1.2]):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, tone_speech(seconds, i), SR)
        out.append(Utterance(f"u{i}", path, "ab", (2, 3), seconds))
    return out


def augmenter(utts: list[Utterance], cfg: AugmentConfig = ROBUST, seed: int = 0) -> WaveAugment:
    return make_wave_augment(cfg, SR, seed=seed, train_audio=[u.audio_path for u in utts])


def test_each_augmentation_is_deterministic_in_seed_epoch_and_utterance(utts) -> None:
    wave = torch.from_numpy(tone_speech(1.0, 0))
    kinds = [*NOISE_COLOURS, "babble"]
    for field in ("speed_factors", "reverb_prob", "noise_prob", "gain_prob", "telephone_prob"):
        value = [0.9, 1.1] if field == "speed_factors" else 1.0
        only = AugmentConfig(name=field, rir_source="noise", noise_kinds=kinds, **{field: value})
        results = []
        for aug in (augmenter(utts, only), augmenter(utts, only)):  # two processes' worth
            plan, g = aug.plan(epoch=3, index=1, speed=aug.speed_factor(3, 1))
            assert not plan.empty, field
            results.append(aug.apply(wave, plan, g))
        assert torch.equal(results[0], results[1]), field
        if field == "telephone_prob":
            continue  # the channel itself draws nothing
        aug = augmenter(utts, only)
        others = [
            aug.apply(wave, *aug.plan(e, i, aug.speed_factor(e, i))) for e, i in ((4, 1), (3, 2))
        ]
        assert any(o.shape != wave.shape or not torch.equal(o, results[0]) for o in others), field


def test_waveform_augmentations_wait_for_start_epoch(utts) -> None:
    late = augmenter(utts, dataclasses.replace(ROBUST, start_epoch=2))
    early = augmenter(utts)
    for i in range(len(utts)):
        for epoch in (0, 1):
            speed = late.speed_factor(epoch, i)
            assert speed == 1.0 and late.plan(epoch, i, speed)[0].empty
        for epoch in (2, 3):  # then the same draws as a run that augments from the start
            assert late.speed_factor(epoch, i) == early.speed_factor(epoch, i)
            assert late.plan(epoch, i, 1.0)[0] == early.plan(epoch, i, 1.0)[0]


def test_the_dataset_gives_the_same_item_in_any_process_and_the_cache_does_not_leak(utts) -> None:
    aug = augmenter(utts)
    logmel = LogMel(SR, 32)
    first = SpeechDataset(utts, logmel, None, seed=0, wave_augment=aug)
    second = SpeechDataset(utts, logmel, None, seed=0, wave_augment=augmenter(utts))
    for epoch in (0, 1):
        first.set_epoch(epoch), second.set_epoch(epoch)
        for i in range(len(utts)):
            assert torch.equal(first[i].feats, second[i].feats)
    plain = SpeechDataset(utts, logmel, None, seed=0)
    augmented = [i for i in range(len(utts)) if not aug.plan(1, i, first.speed_of(1, i))[0].empty]
    assert augmented  # robust touches most utterances
    for i in augmented:
        assert not torch.equal(first[i].feats, plain[i].feats)


@pytest.mark.parametrize("kind", [*NOISE_COLOURS, "babble"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_is_added_at_the_snr_asked_for(utts, kind: str, snr_db: float) -> None:
    cfg = AugmentConfig(noise_prob=1.0, noise_kinds=[kind], noise_snr_min_db=snr_db,
                        noise_snr_max_db=snr_db)  # fmt: skip
    aug = augmenter(utts, cfg)
    wave = torch.from_numpy(tone_speech(1.0, 5))
    plan, g = aug.plan(0, 0, 1.0)
    assert plan.noise == kind and plan.snr_db == snr_db
    noisy = aug.apply(wave, plan, g)
    assert abs(measured_snr_db(wave, noisy) - snr_db) < 0.5


def test_noise_colours_have_their_spectral_slopes() -> None:
    g = torch.Generator().manual_seed(0)
    for name, beta in NOISE_COLOURS.items():
        power = torch.fft.rfft(coloured_noise(1 << 16, g, beta)).abs().pow(2)
        f = torch.arange(power.shape[0], dtype=torch.float64)
        low, high = power[100:200].mean(), power[10000:20000].mean()  # ~100x apart in frequency
        slope = float(
            torch.log10(high / low) / torch.log10(f[10000:20000].mean() / f[100:200].mean())
        )
        assert slope == pytest.approx(-beta, abs=0.15), name


def test_the_telephone_channel_removes_energy_above_3400_hz() -> None:
    g = torch.Generator().manual_seed(0)
    wave = coloured_noise(SR * 2, g, 0.0) * 0.1  # white: the same energy at every frequency
    out = telephone(wave, SR, mulaw=False)
    power = torch.fft.rfft(out).abs().pow(2)
    hz = torch.fft.rfftfreq(out.shape[0], 1 / SR)
    band = power[(hz > 500) & (hz < 3000)].mean()
    above = power[hz > 3700].mean()
    below = power[hz < 150].mean()
    assert above < band * 1e-3  # 30 dB down
    assert below < band * 0.1  # the 300 Hz high-pass
    assert out.shape == wave.shape
    coded = telephone(wave, SR, mulaw=True)
    assert not torch.equal(coded, out)  # mu-law quantisation noise
    assert measured_snr_db(out, coded) > 25


def test_speed_perturbation_changes_length_sampler_and_ctc_filter(utts) -> None:
    cfg = AugmentConfig(speed_factors=[1.1])
    aug = augmenter(utts, cfg)
    wave = torch.from_numpy(tone_speech(1.0, 0))
    plan, g = aug.plan(0, 0, 1.1)
    assert aug.apply(wave, plan, g).shape[0] == pytest.approx(SR / 1.1, abs=2)
    # 1 s of audio makes 50 CTC frames; "ab" repeated needs one frame per label (and blanks
    # between repeats). 46 labels fit 50 frames but not the 45 of the audio played at 1.1x.
    frames = lambda seconds: int(seconds * 50)  # noqa: E731
    tight = Utterance("tight", utts[0].audio_path, "x", (2, 3) * 23, 1.0)
    roomy = Utterance("roomy", utts[0].audio_path, "x", (2, 3), 1.0)
    ds = SpeechDataset([tight, roomy], LogMel(SR, 32), None, output_frames=frames, wave_augment=aug)
    assert ds.speed_of(0, 0) == 1.0  # the filter sees 1.0 s / 1.1: too short, so no speed-up
    assert ds.speed_of(0, 1) == 1.1
    loader, sampler = make_loader(
        [tight, roomy], LogMel(SR, 32), batch_size=2, output_frames=frames, wave_augment=aug,
        shuffle=True,
    )  # fmt: skip
    assert sampler.epoch_durations(0).tolist() == pytest.approx([1.0, 1.0 / 1.1])
    played = aug.apply(wave, *aug.plan(0, 1, 1.1)).shape[0]  # the roomy one, at 1.1x
    batch = next(iter(loader))
    lengths = sorted(batch.feat_lens.tolist())
    assert lengths == sorted([LogMel(SR, 32).num_frames(n) for n in (SR, played)])
    assert batch.audio_seconds == pytest.approx(1.0 + 1.0 / 1.1)  # what was trained on


@pytest.mark.parametrize("make", [decaying_noise_rir, room_rir])
def test_generated_impulse_responses_decay_at_their_rt60(make) -> None:
    g = torch.Generator().manual_seed(0)
    rir = make(0.5, SR, g)
    assert rir.norm() == pytest.approx(1.0, abs=1e-5)
    rt60 = measured_rt60(rir, SR)
    assert 0.2 < rt60 < 1.0, rt60  # the asked-for 0.5 s, within what the models can give


def test_babble_mixes_other_utterances(utts) -> None:
    babble = Babble([u.audio_path for u in utts], SR)
    g1, g2 = (torch.Generator().manual_seed(7) for _ in range(2))
    a, b = babble(SR * 3, g1), babble(SR * 3, g2)  # longer than any file: looped
    assert a.shape == (SR * 3,) and torch.equal(a, b) and a.abs().max() > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"noise_prob": 1.5}, "noise_prob must be in [0, 1]"),
        ({"speed_factors": [0.3]}, "speed_factors must lie in [0.5, 2]"),
        ({"noise_kinds": ["rain"]}, "noise_kinds: unknown ['rain']"),
        ({"noise_prob": 0.5, "noise_kinds": ["file"]}, "give noise_dir"),
        ({"noise_snr_min_db": 30.0}, "noise_snr_min_db must be <= noise_snr_max_db"),
    ],
)
def test_bad_settings_are_one_line_errors(override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AugmentConfig(**override)


@pytest.mark.slow
def test_sigkill_resume_is_exact_with_robust_augmentation(corpus_cache: Path, tmp_path: Path):
    """The fault test's check (tests/test_faults.py) with every waveform augmentation on."""
    from tests.conftest import run_script
    from tests.test_faults import (
        assert_checkpoints_readable,
        assert_same_training,
        last_logged_step,
        launch,
        read_summary,
        train_args,
        wait_until,
    )

    robust = ["augment=robust", "augment.reverb_prob=0.5", "augment.telephone_prob=0.5"]
    reference = tmp_path / "reference"
    done = run_script("train.py", train_args(corpus_cache, reference, *robust), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_summary(reference)["status"] == "ok"

    run_dir = tmp_path / "run"
    args = train_args(corpus_cache, run_dir, *robust)
    metrics = run_dir / "metrics.jsonl"
    for n, step in enumerate((3, 7)):
        offset = metrics.stat().st_size if metrics.is_file() else 0
        log = tmp_path / f"launch-{n}.log"
        proc = launch(args, log)
        wait_until(proc, lambda s=step, o=offset: last_logged_step(metrics, o) >= s, log)
        wait_until(proc, lambda: (run_dir / "last.pt").is_file(), log)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert_checkpoints_readable(run_dir)
    final = run_script("train.py", args, cwd=tmp_path)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resumed from" in final.stdout
    assert_same_training(reference, run_dir)


@pytest.mark.parametrize("preset", ["none", "specaugment", "speed", "robust"])
def test_presets_reach_the_training_loader(corpus_cache: Path, preset: str) -> None:
    from asr.config import to_train_config
    from asr.data.loader import make_training_data
    from asr.model import DeepSpeech2
    from asr.text import make_vocabulary
    from tests.conftest import TINY_CORPUS, compose_train

    cfg = to_train_config(
        compose_train([*TINY_CORPUS, f"data.cache_dir={corpus_cache}", f"augment={preset}"])
    )
    assert cfg.augment.name == preset
    data = make_training_data(
        cfg.data, cfg.augment, make_vocabulary(), DeepSpeech2(cfg.model).output_lengths,
        seed=0, device=torch.device("cpu"), num_workers=0,
    )  # fmt: skip
    dataset = data.train_loader.dataset
    assert (dataset.wave_augment is not None) == (preset in ("speed", "robust"))
    assert (dataset.augment is not None) == (preset != "none")
    if preset == "robust":
        assert dataset.wave_augment.rirs and set(dataset.wave_augment.noise_sources) >= {
            "white", "pink", "brown", "babble"
        }  # fmt: skip
    for loader in data.eval_loaders.values():  # dev and test are never augmented
        assert loader.dataset.wave_augment is None and loader.dataset.augment is None
