"""Acoustic features (normalised log-mel) and SpecAugment masking."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from asr.schema import AugmentConfig, DataConfig

LOG_EPS = 1e-6  # floor inside the log: silence maps to log(1e-6) instead of -inf
# What LogMel(**features) takes: the feature settings a checkpoint's data config carries.
FEATURE_KEYS = ("sample_rate", "n_mels", "n_fft", "win_length", "hop_length", "log_floor_db")
STD_EPS = 1e-3  # guards constant (e.g. silent) input; real log-mel std is several nats


class LogMel(nn.Module):
    """Waveform -> per-utterance normalised log-mel spectrogram.

    Why log: the seed fed the network a *linear* (power) mel spectrogram, whose values span many
    orders of magnitude, so a handful of loud bins dominate LayerNorm statistics and quiet
    phonetic detail is numerically invisible. Log compression matches perceived loudness and
    makes the dynamic range learnable. Normalising each utterance to mean 0 / std 1 then removes
    recording gain, and makes 0.0 the natural "no information" value used by SpecAugment.

    The floor inside the log decides how much gain it removes: `log_floor_db` (dB below the
    utterance's peak, the default) makes the features independent of the level; the absolute
    floor of older checkpoints (None: LOG_EPS) covers more of a quiet recording than of a loud
    one, so their features still depend on it.
    """

    # The STFT settings default to the config schema's (DataConfig): one source of truth. A run
    # builds its LogMel from its config (`asr.data.loader.make_logmel`).
    def __init__(
        self,
        sample_rate: int,
        n_mels: int,
        *,
        n_fft: int = DataConfig.n_fft,
        win_length: int = DataConfig.win_length,
        hop_length: int = DataConfig.hop_length,
        log_floor_db: float | None = DataConfig.log_floor_db,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.log_floor_db = log_floor_db
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            center=True,
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (center=True framing), without computing."""
        return num_samples // self.hop_length + 1

    def forward(self, wave: Tensor) -> Tensor:
        """(N,) -> (n_mels, T) or (B, N) -> (B, n_mels, T).

        In the batched form each row is normalised on its own statistics, including any padding
        it carries, so pass unpadded waves (one at a time) when lengths differ.
        """
        n = wave.shape[-1]
        shortest = self.mel.n_fft // 2 + 1  # the STFT's reflect padding needs more than n_fft/2
        if n < shortest:  # a very short clip: pad with silence, keep the frames it has
            wave = torch.nn.functional.pad(wave, (0, shortest - n))
        power = self.mel(wave)[..., : self.num_frames(n)]  # (..., n_mels, T)
        if self.log_floor_db is None:
            x = torch.log(power + LOG_EPS)  # absolute: how much sits on it depends on the level
        else:  # relative to the peak: a gain changes nothing. Dividing by the peak first keeps
            # the values in [-floor, 0], so silence (no peak) is a constant normalising exactly.
            peak = power.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
            x = torch.log((power / peak).clamp_min(10 ** (-self.log_floor_db / 10)))
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True)
        return (x - mean) / std.clamp_min(STD_EPS)


class SpecAugment(nn.Module):
    """Frequency and time masking for ONE utterance (F, T), active only in training mode.

    Applied per utterance, before padding, so masks always land on real frames rather than
    possibly only on a batch's padding. Each time mask is at most
    ``min(time_width, time_width_ratio * T)`` frames wide: with a fixed width of 40 a 0.5 s
    utterance (~50 frames) could lose most of its content and become untrainable. The masked
    value is 0.0, which is the utterance mean after LogMel's normalisation.

    The masks are drawn from `generator` when one is given (else torch's global RNG). The data
    pipeline passes one seeded from (seed, epoch, utterance), so an utterance gets the same
    masks whichever process augments it and however the run was interrupted and resumed.
    """

    # Defaults: the config schema's (AugmentConfig), one source of truth. A run builds its
    # SpecAugment from its config (`asr.data.loader.make_augment`).
    def __init__(
        self,
        freq_masks: int = AugmentConfig.freq_masks,
        freq_width: int = AugmentConfig.freq_width,
        time_masks: int = AugmentConfig.time_masks,
        time_width: int = AugmentConfig.time_width,
        time_width_ratio: float = AugmentConfig.time_width_ratio,
    ) -> None:
        super().__init__()
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (got {value})")
        if not 0.0 <= time_width_ratio <= 1.0:
            raise ValueError(f"time_width_ratio must be in [0, 1] (got {time_width_ratio})")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.time_width_ratio = time_width_ratio

    def forward(self, spec: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(F, T) -> (F, T); identity in eval mode."""
        if not self.training:
            return spec
        if spec.dim() != 2:
            raise ValueError(f"SpecAugment expects one utterance (F, T), got shape {spec.shape}")
        n_freq, n_time = spec.shape
        # torchaudio's TimeMasking(p=ratio) caps a mask at floor(ratio * T) frames, except that
        # ratio 1.0 means no cap at all; kept as it was.
        time_width = self.time_width
        if self.time_width_ratio != 1.0:
            time_width = min(time_width, int(n_time * self.time_width_ratio))
        for _ in range(self.freq_masks):
            spec = _mask(spec, 0, _band(n_freq, self.freq_width, generator))
        for _ in range(self.time_masks):
            spec = _mask(spec, 1, _band(n_time, time_width, generator))
        return spec


def _band(size: int, max_width: int, generator: torch.Generator | None) -> tuple[int, int] | None:
    """[start, end) of one mask along an axis of `size`, or None when no mask fits.

    The same draws, in the same float32 arithmetic, as torchaudio's `mask_along_axis`: width
    ~ U[0, max_width), start ~ U[0, size - width). With a generator seeded like the global RNG
    it gives exactly torchaudio's masks, so the mask distribution did not change.
    """
    if max_width < 1:
        return None  # torchaudio draws nothing here either
    width = torch.rand(1, generator=generator) * max_width
    start = torch.rand(1, generator=generator) * (size - width)
    first = int(start.long())
    return first, first + int(width.long())


def _mask(spec: Tensor, axis: int, band: tuple[int, int] | None) -> Tensor:
    if band is None or band[0] == band[1]:
        return spec
    index = torch.arange(spec.shape[axis])
    hit = (index >= band[0]) & (index < band[1])
    return spec.masked_fill(hit.unsqueeze(-1) if axis == 0 else hit, 0.0)
