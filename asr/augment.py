"""Waveform augmentations, applied to one utterance before its features: speed, reverberation,
additive noise, gain and a telephone channel.

Each is drawn from (seed, epoch, utterance), as SpecAugment's masks are, so an utterance is
augmented the same way whichever process loads it and however often the run was resumed. The
speed factor has a generator of its own: the batch sampler needs it, without the audio, to
bucket by the perturbed duration and to keep transcripts that would no longer fit (see
`speed_factor`).

The signal processing is torchaudio's (`speed`, `resample`, `add_noise`, `fftconvolve`,
`mu_law_*`, biquads). Written here: the coloured noises (torchaudio has none; the spectral
shaping is a few lines) and the decaying-noise impulse responses (the classic model of late
reverberation: Gaussian noise under an exponential envelope set by RT60), next to
pyroomacoustics' image-source rooms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from asr.schema import AugmentConfig

NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power falls as 1 / f^beta
TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)
RIR_BANK_SIZE = 64  # impulse responses generated once per run, drawn per utterance


def utterance_generator(seed: int, epoch: int, index: int, stream: int) -> torch.Generator:
    """A generator for one utterance in one epoch; `stream` separates independent draws."""
    state = np.random.SeedSequence([seed, epoch, index, stream]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _happens(g: torch.Generator, prob: float) -> bool:
    return prob > 0 and float(torch.rand((), generator=g)) < prob


def coloured_noise(n: int, g: torch.Generator, beta: float = 0.0) -> torch.Tensor:
    """(n,) Gaussian noise whose power spectrum falls as 1 / f^beta, at unit RMS."""
    spectrum = torch.fft.rfft(torch.randn(n, generator=g))
    freqs = torch.arange(spectrum.shape[0], dtype=torch.float32).clamp_min(1.0)
    noise = torch.fft.irfft(spectrum / freqs ** (beta / 2), n=n)
    return noise / noise.pow(2).mean().sqrt().clamp_min(1e-12)


def decaying_noise_rir(rt60: float, sample_rate: int, g: torch.Generator) -> torch.Tensor:
    """An impulse response: a direct path, then noise decaying by 60 dB over `rt60` s."""
    n = int(rt60 * sample_rate)
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    rir = torch.randn(n, generator=g) * torch.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078
    rir[0] = rir.abs().max() * 4  # the direct sound dominates, as in a small room
    return rir / rir.norm()


def room_rir(rt60: float, sample_rate: int, g: torch.Generator) -> torch.Tensor:
    """An impulse response of a random shoebox room (pyroomacoustics' image-source model)."""
    import pyroomacoustics as pra

    dims = np.array([_uniform(g, 3, 10), _uniform(g, 3, 10), _uniform(g, 2.5, 4)])
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # an RT60 this room cannot have: the most reverberant it can
        absorption, max_order = 0.05, 40
    room = pra.ShoeBox(
        dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(max_order, 40)
    )
    source = [_uniform(g, 0.5, d - 0.5) for d in dims]
    mic = [_uniform(g, 0.5, d - 0.5) for d in dims]
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = torch.from_numpy(np.asarray(room.rir[0][0], dtype=np.float32))
    return rir / rir.norm()


def telephone(wave: torch.Tensor, sample_rate: int, *, mulaw: bool) -> torch.Tensor:
    """Through an 8 kHz telephone channel and back: 300-3400 Hz, optionally mu-law coded.

    The resampler's anti-aliasing filter does the low-pass (`rolloff` = 3400 / 4000), the
    high-pass is a biquad at 300 Hz."""
    narrow = AF.resample(wave, sample_rate, TELEPHONE_RATE, rolloff=TELEPHONE_BAND[1] / 4000)
    narrow = AF.highpass_biquad(narrow, TELEPHONE_RATE, TELEPHONE_BAND[0])
    if mulaw:
        peak = narrow.abs().max().clamp_min(1e-8)
        coded = AF.mu_law_encoding((narrow / peak).clamp(-1, 1), 256)
        narrow = AF.mu_law_decoding(coded, 256) * peak
    back = AF.resample(narrow, TELEPHONE_RATE, sample_rate, rolloff=TELEPHONE_BAND[1] / 4000)
    return back[: wave.shape[-1]]


@dataclass(frozen=True)
class Plan:
    """What one utterance gets this epoch, drawn before its audio is read: an utterance that
    gets nothing keeps its cached features."""

    speed: float = 1.0
    rir: int | None = None  # index into the RIR bank
    noise: str | None = None  # the noise kind
    snr_db: float = 0.0
    gain_db: float | None = None
    telephone: bool = False

    @property
    def empty(self) -> bool:
        return self == Plan()


class WaveAugment:
    """The waveform augmentations of `AugmentConfig`, for one run's training utterances.

    `noise_sources` adds noise kinds to the generated colours: a callable (n samples,
    generator) -> (n,) noise for `babble` and `file`, given by the data pipeline, which can
    read audio. Everything here pickles, for DataLoader workers.
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        sample_rate: int,
        *,
        seed: int,
        noise_sources: dict[str, Callable[[int, torch.Generator], torch.Tensor]] | None = None,
        rirs: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.cfg, self.sample_rate, self.seed = cfg, sample_rate, seed
        self.noise_sources: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
            name: partial(coloured_noise, beta=beta) for name, beta in NOISE_COLOURS.items()
        }
        self.noise_sources.update(noise_sources or {})
        missing = [k for k in cfg.noise_kinds if k not in self.noise_sources]
        if cfg.noise_prob > 0 and missing:
            raise ValueError(f"augment.noise_kinds: no source for {missing}")
        self.rirs = list(rirs) if rirs is not None else []
        if cfg.reverb_prob > 0 and not self.rirs:
            self.rirs = make_rir_bank(cfg, sample_rate, seed=seed)

    def speed_factor(self, epoch: int, index: int) -> float:
        """The utterance's drawn speed factor this epoch (1.0 when speed perturbation is off)."""
        factors = self.cfg.speed_factors
        if not factors or epoch < self.cfg.start_epoch:
            return 1.0
        g = utterance_generator(self.seed, epoch, index, stream=1)
        return float(factors[int(torch.randint(len(factors), (), generator=g))])

    def plan(self, epoch: int, index: int, speed: float) -> tuple[Plan, torch.Generator]:
        """Draw what the utterance gets, and the generator its noise will be drawn from."""
        c = self.cfg
        g = utterance_generator(self.seed, epoch, index, stream=2)
        if epoch < c.start_epoch:
            return Plan(speed), g
        rir = noise = gain_db = None
        snr_db = 0.0
        if _happens(g, c.reverb_prob):
            rir = int(torch.randint(len(self.rirs), (), generator=g))
        if _happens(g, c.noise_prob):
            noise = c.noise_kinds[int(torch.randint(len(c.noise_kinds), (), generator=g))]
            snr_db = _uniform(g, c.noise_snr_min_db, c.noise_snr_max_db)
        if _happens(g, c.gain_prob):
            gain_db = _uniform(g, c.gain_min_db, c.gain_max_db)
        telephone_on = _happens(g, c.telephone_prob)
        return Plan(speed, rir, noise, snr_db, gain_db, telephone_on), g

    def apply(self, wave: torch.Tensor, plan: Plan, g: torch.Generator) -> torch.Tensor:
        """(N,) -> (N / speed,): speed, reverb, noise, gain, telephone, in that order (the
        channel last, as a real one is)."""
        sr = self.sample_rate
        if plan.speed != 1.0:  # resampling: tempo and pitch together, as Kaldi's sox "speed"
            wave = AF.resample(wave, round(sr * plan.speed), sr)
        if plan.rir is not None:
            wave = AF.fftconvolve(wave, self.rirs[plan.rir])[: wave.shape[0]]
        if plan.noise is not None:
            noise = self.noise_sources[plan.noise](wave.shape[0], g)
            wave = AF.add_noise(wave[None], noise[None], torch.tensor([plan.snr_db]))[0]
        if plan.gain_db is not None:  # clipped: gain alone is undone by the features'
            wave = AF.gain(wave, plan.gain_db).clamp(-1.0, 1.0)  # per-utterance normalisation
        if plan.telephone:
            wave = telephone(wave, sr, mulaw=self.cfg.telephone_mulaw)
        return wave


class Babble:
    """`babble` noise: `talkers` other training utterances summed, each from a random point
    (looped when shorter than the target)."""

    def __init__(self, paths: Sequence[Path], sample_rate: int, talkers: int = 4) -> None:
        self.paths, self.sample_rate, self.talkers = paths, sample_rate, talkers  # not copied

    def __call__(self, n: int, g: torch.Generator) -> torch.Tensor:
        mix = torch.zeros(n)
        for _ in range(self.talkers):
            path = self.paths[int(torch.randint(len(self.paths), (), generator=g))]
            mix += _crop(_read(path, self.sample_rate), n, g)
        return mix


class NoiseFiles:
    """`file` noise: a random stretch of a random file of the user's folder (MUSAN, ...)."""

    def __init__(self, folder: str | Path, sample_rate: int) -> None:
        folder = Path(folder).expanduser()
        self.paths = sorted(
            p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if not self.paths:
            raise ValueError(f"augment.noise_dir: no files in {folder}")
        self.sample_rate = sample_rate

    def __call__(self, n: int, g: torch.Generator) -> torch.Tensor:
        path = self.paths[int(torch.randint(len(self.paths), (), generator=g))]
        return _crop(_read(path, self.sample_rate), n, g)


def _read(path: Path, sample_rate: int) -> torch.Tensor:
    from asr.data.audio import AudioError, read_audio

    try:
        return read_audio(path, sample_rate).wave
    except AudioError:  # an unusable noise file adds nothing, rather than stop training
        return torch.zeros(1)


def _crop(wave: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """n samples of `wave` from a random offset, looping it when it is shorter."""
    if wave.shape[0] < n:
        wave = wave.repeat(n // wave.shape[0] + 1)
    start = int(torch.randint(wave.shape[0] - n + 1, (), generator=g))
    return wave[start : start + n]


def make_wave_augment(
    cfg: AugmentConfig, sample_rate: int, *, seed: int, train_audio: Sequence[Path]
) -> WaveAugment | None:
    """The run's waveform augmentations (None when all are off), with babble drawn from the
    training audio and file noise from `cfg.noise_dir`."""
    if not cfg.waveform:
        return None
    sources: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
        "babble": Babble(train_audio, sample_rate)
    }
    if cfg.noise_dir:
        sources["file"] = NoiseFiles(cfg.noise_dir, sample_rate)
    return WaveAugment(cfg, sample_rate, seed=seed, noise_sources=sources)


def make_rir_bank(cfg: AugmentConfig, sample_rate: int, *, seed: int) -> list[torch.Tensor]:
    """RIR_BANK_SIZE impulse responses: from the user's folder, or generated from `seed`."""
    if cfg.rir_source not in ("noise", "room"):
        from asr.data.audio import read_audio

        files = sorted(p for p in Path(cfg.rir_source).expanduser().rglob("*") if p.is_file())
        rirs = [read_audio(p, sample_rate).wave for p in files]
        if not rirs:
            raise ValueError(f"augment.rir_source: no audio files in {cfg.rir_source}")
        return [r / r.norm().clamp_min(1e-12) for r in rirs]
    return [rir for _, rir in generated_rirs(cfg, sample_rate, seed=seed)]


def generated_rirs(
    cfg: AugmentConfig, sample_rate: int, *, seed: int
) -> list[tuple[float, torch.Tensor]]:
    """The generated bank (`rir_source` noise or room) as (drawn RT60, impulse response)."""
    make = decaying_noise_rir if cfg.rir_source == "noise" else room_rir  # (rt60, sr, g)
    g = torch.Generator().manual_seed(seed)
    bank = []
    for _ in range(RIR_BANK_SIZE):
        rt60 = _uniform(g, cfg.rt60_min, cfg.rt60_max)
        bank.append((rt60, make(rt60, sample_rate, g)))
    return bank


def measured_rt60(rir: torch.Tensor, sample_rate: int) -> float:
    """An impulse response's RT60 from its Schroeder decay curve: the -5 to -25 dB slope (T20)
    times 3 (for tests and checks)."""
    energy = rir.flip(0).pow(2).cumsum(0).flip(0)  # Schroeder backward integration
    decay_db = 10 * torch.log10(energy / energy[0])
    t20 = int((decay_db > -25).sum()) - int((decay_db > -5).sum())  # samples from -5 to -25 dB
    return 3 * t20 / sample_rate


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """10 log10(P_clean / P_noise): what `add_noise`'s SNR means (for tests and checks)."""
    noise = noisy - clean
    return 10 * math.log10(float(clean.pow(2).mean()) / float(noise.pow(2).mean()))
