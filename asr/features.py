"""Acoustic features (normalised log-mel) and SpecAugment masking."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

LOG_EPS = 1e-6  # floor inside the log: silence maps to log(1e-6) instead of -inf
STD_EPS = 1e-3  # guards constant (e.g. silent) input; real log-mel std is several nats


class LogMel(nn.Module):
    """Waveform -> per-utterance normalised log-mel spectrogram.

    Why log: the seed fed the network a *linear* (power) mel spectrogram, whose values span many
    orders of magnitude, so a handful of loud bins dominate LayerNorm statistics and quiet
    phonetic detail is numerically invisible. Log compression matches perceived loudness and
    makes the dynamic range learnable. Normalising each utterance to mean 0 / std 1 then removes
    recording gain, and makes 0.0 the natural "no information" value used by SpecAugment.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 128,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
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
        x = torch.log(self.mel(wave) + LOG_EPS)  # (..., n_mels, T)
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
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        time_width_ratio: float = 0.1,
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
        self.time_masks = time_masks
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_width)
        # TimeMasking's p caps each mask's width at floor(p * T) frames.
        self.time_mask = torchaudio.transforms.TimeMasking(time_width, p=time_width_ratio)

    def forward(self, spec: Tensor) -> Tensor:
        """(F, T) -> (F, T); identity in eval mode."""
        if not self.training:
            return spec
        if spec.dim() != 2:
            raise ValueError(f"SpecAugment expects one utterance (F, T), got shape {spec.shape}")
        for _ in range(self.freq_masks):
            spec = self.freq_mask(spec, mask_value=0.0)
        for _ in range(self.time_masks):
            spec = self.time_mask(spec, mask_value=0.0)
        return spec
