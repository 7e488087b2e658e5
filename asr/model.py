"""DeepSpeech2-style acoustic model (residual CNN + bidirectional GRU + CTC head).

Reproduces the seed model (the "end-to-end speech recognition in PyTorch" tutorial) parameter
for parameter, with its batching defects fixed:

* every GRU layer is ``batch_first`` (the seed set it only on layer 0, so later layers treated
  the batch axis as time and mixed utterances together);
* padding cannot leak into real frames: conv inputs are zeroed past each utterance's length
  (what a 3x3 conv would see at the edge of an unpadded utterance) and the GRUs run on packed
  sequences, so the backward direction starts at the last *real* frame, not the last pad frame;
* output lengths come from the stem conv's geometry, not the seed's ``T // 2``, which is off by
  one for odd ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ModelConfig:
    n_cnn: int = 3  # residual CNN blocks
    n_rnn: int = 5  # bidirectional GRU layers
    rnn_dim: int = 512
    n_feats: int = 128  # mel bins (follows data.n_mels in configs)
    n_class: int = 29  # ' , <SPACE>, a..z, blank
    stride: int = 2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        # Fail at config time with the field's name rather than deep inside a shape error.
        for name, low in (("n_cnn", 0), ("n_rnn", 1), ("rnn_dim", 1), ("n_feats", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low} (got {getattr(self, name)})")
        if self.n_class < 2:
            raise ValueError(f"n_class must be >= 2 (got {self.n_class})")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 (got {self.stride})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.n_feats % self.stride != 0:
            raise ValueError(
                f"n_feats ({self.n_feats}) must be divisible by stride ({self.stride})"
            )


STEM_KERNEL = 3
STEM_PADDING = STEM_KERNEL // 2


def conv_output_lengths(
    lengths: Tensor, kernel: int = STEM_KERNEL, stride: int = 2, padding: int = STEM_PADDING
) -> Tensor:
    """Frames after a conv: ``(L + 2p - k) // s + 1`` (usable without a model instance)."""
    return torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _time_mask(x: Tensor, lengths: Tensor) -> Tensor:
    """Zero frames at index >= length on the last (time) axis of ``x`` (B, ..., T)."""
    keep = torch.arange(x.shape[-1], device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
    return x * keep.view(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1]).to(x.dtype)


class CNNLayerNorm(nn.Module):
    """LayerNorm over the feature axis of a (B, C, F, T) map."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(n_feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer_norm(x.transpose(2, 3)).transpose(2, 3)  # (B, C, F, T)


class ResidualCNN(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, dropout: float, n_feats: int
    ) -> None:
        super().__init__()
        self.cnn1 = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2)
        self.cnn2 = nn.Conv2d(out_ch, out_ch, kernel, stride, padding=kernel // 2)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.layer_norm1 = CNNLayerNorm(n_feats)
        self.layer_norm2 = CNNLayerNorm(n_feats)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        # LayerNorm turns zero padding into beta, so re-zero each conv's input past `lengths`.
        residual = x  # (B, C, F, T)
        x = self.dropout1(F.gelu(self.layer_norm1(x)))
        x = self.cnn1(_time_mask(x, lengths))  # (B, C, F, T)
        x = self.dropout2(F.gelu(self.layer_norm2(x)))
        x = self.cnn2(_time_mask(x, lengths))  # (B, C, F, T)
        return x + residual


class BidirectionalGRU(nn.Module):
    def __init__(self, rnn_dim: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(rnn_dim)
        self.gru = nn.GRU(rnn_dim, hidden_size, num_layers=1, bidirectional=True, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor, packed: bool = True) -> Tensor:
        x = F.gelu(self.layer_norm(x))  # (B, T, in)
        if packed:
            # pack_padded_sequence needs CPU int64 lengths >= 1.
            seq = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False
            )
            out, _ = self.gru(seq)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            x, _ = self.gru(x)  # backward direction starts in the padding
        return self.dropout(x)  # (B, T, 2H)


class DeepSpeech2(nn.Module):
    """feats (B, n_feats, T) log-mel -> CTC log-probs (B, T', n_class) and lengths T'.

    ``packed=False`` runs the GRUs on the padded batch (faster, but padding leaks into the
    backward direction); it exists for benchmarking and tests only.
    """

    def __init__(self, cfg: Any = None, *, packed: bool = True) -> None:
        super().__init__()
        if cfg is None:
            cfg = ModelConfig()
        elif not isinstance(cfg, ModelConfig):  # e.g. an OmegaConf DictConfig: re-validate
            cfg = ModelConfig(**{f.name: getattr(cfg, f.name) for f in fields(ModelConfig)})
        self.cfg: ModelConfig = cfg
        self.packed = packed
        n_feats = cfg.n_feats // cfg.stride
        self.cnn = nn.Conv2d(1, 32, STEM_KERNEL, stride=cfg.stride, padding=STEM_PADDING)
        self.rescnn_layers = nn.ModuleList(
            ResidualCNN(32, 32, kernel=3, stride=1, dropout=cfg.dropout, n_feats=n_feats)
            for _ in range(cfg.n_cnn)
        )
        self.fully_connected = nn.Linear(32 * n_feats, cfg.rnn_dim)
        self.birnn_layers = nn.ModuleList(
            BidirectionalGRU(cfg.rnn_dim if i == 0 else 2 * cfg.rnn_dim, cfg.rnn_dim, cfg.dropout)
            for i in range(cfg.n_rnn)
        )
        self.classifier = nn.Sequential(
            nn.Linear(2 * cfg.rnn_dim, cfg.rnn_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.rnn_dim, cfg.n_class),
        )

    def output_lengths(self, feat_lens: Tensor) -> Tensor:
        """Frames out of the stem conv (the only layer that changes the time resolution)."""
        return conv_output_lengths(
            feat_lens, self.cnn.kernel_size[1], self.cnn.stride[1], self.cnn.padding[1]
        )

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        out_lens = self.output_lengths(feat_lens)  # (B,)
        # Collate pads with anything; zero it so the stem sees what an unpadded input sees.
        x = _time_mask(feats, feat_lens).unsqueeze(1)  # (B, 1, F, T)
        x = _time_mask(self.cnn(x), out_lens)  # (B, 32, F/s, T')
        for layer in self.rescnn_layers:
            x = layer(x, out_lens)  # (B, 32, F/s, T')
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t).transpose(1, 2)  # (B, T', 32*F/s)
        x = self.fully_connected(x)  # (B, T', rnn_dim)
        for layer in self.birnn_layers:
            x = layer(x, out_lens, self.packed)  # (B, T', 2*rnn_dim)
        logits = self.classifier(x)  # (B, T', n_class)
        # Frames at index >= out_lens are don't-care: ctc_loss reads only out_lens frames.
        return F.log_softmax(logits, dim=-1), out_lens
