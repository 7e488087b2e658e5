"""DeepSpeech2-style acoustic model (residual CNN + bidirectional GRU + CTC head).

Reproduces the seed model (the "end-to-end speech recognition in PyTorch" tutorial) parameter
for parameter, with its batching defects fixed:

* every GRU layer is ``batch_first`` (the seed set it only on layer 0, so later layers treated
  the batch axis as time and mixed utterances together);
* padding cannot leak into real frames: conv inputs are zeroed past each utterance's length
  (what a 3x3 conv would see at the edge of an unpadded utterance), and each GRU's backward
  direction starts at the last *real* frame, not the last pad frame (see `asr.gru`);
* output lengths come from the stem conv's geometry, not the seed's ``T // 2``, which is off by
  one for odd ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from asr.gru import GRU_IMPLS, pack, resolve_impl, run_bidirectional, unpack


@dataclass
class ModelConfig:
    n_cnn: int = 3  # residual CNN blocks
    n_rnn: int = 5  # bidirectional GRU layers
    rnn_dim: int = 512
    n_feats: int = 128  # mel bins (follows data.n_mels in configs)
    n_class: int = 29  # ' , <SPACE>, a..z, blank
    stride: int = 2
    dropout: float = 0.1
    # How the GRUs keep padding out of the backward direction (asr.gru): the same function
    # every way, only the speed differs. pack | reverse | scan; auto: pack on CUDA (cuDNN),
    # scan for training on CPU, reverse for inference on CPU.
    gru_impl: str = "auto"

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
        if self.gru_impl not in GRU_IMPLS:
            raise ValueError(f"gru_impl must be {'|'.join(GRU_IMPLS)} (got {self.gru_impl!r})")
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


def frames_kept(lengths: Tensor, steps: int) -> Tensor:
    """(B,) lengths -> (B, steps) bool: True on each utterance's real frames."""
    return torch.arange(steps, device=lengths.device) < lengths[:, None]


def conv_time_major(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """Apply `conv`, defined on (B, C, F, T) maps as in the seed, to a (B, C, T, F) map.

    The conv stack runs time-major so that its LayerNorms (over F) normalise the last,
    contiguous axis: the seed's layout transposed every LayerNorm's input and output, and those
    copies, and GELU on the strided result, cost more than the convolutions (measured: the
    front-end's forward and backward in 0.65x the time). The parameters stay the seed's; only
    the kernel is viewed transposed, so checkpoints are unchanged.
    """
    return F.conv2d(
        x,
        conv.weight.transpose(2, 3),
        conv.bias,
        conv.stride[::-1],
        conv.padding[::-1],  # type: ignore[arg-type]
        conv.dilation[::-1],
        conv.groups,
    )


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from `torch.rand`: the same distribution, in less time.
    torch's CPU `bernoulli_` draws ~6 ns per element; dropout took 8% of a seed-size training
    step here, and this mask takes 0.53-0.77x the time of `F.dropout` (forward and backward;
    bench/micro.py dropout). CUDA keeps torch's fused kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0 or x.is_cuda:
            return super().forward(x)
        scale = (torch.rand(x.shape, dtype=x.dtype) >= self.p).to(x.dtype)  # keep w.p. 1 - p
        return x * scale.mul_(1 / (1 - self.p))


class CNNLayerNorm(nn.Module):
    """LayerNorm over the feature axis of a time-major (B, C, T, F) map."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(n_feats)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer_norm(x)  # (B, C, T, F)


class ResidualCNN(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, dropout: float, n_feats: int
    ) -> None:
        super().__init__()
        self.cnn1 = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2)
        self.cnn2 = nn.Conv2d(out_ch, out_ch, kernel, stride, padding=kernel // 2)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.layer_norm1 = CNNLayerNorm(n_feats)
        self.layer_norm2 = CNNLayerNorm(n_feats)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """(B, C, T, F) -> (B, C, T, F); `keep` (B, 1, T, 1) is 1 on real frames, 0 on padding."""
        # LayerNorm turns zero padding into beta, so re-zero each conv's input past the lengths.
        residual = x  # (B, C, T, F)
        x = self.dropout1(F.gelu(self.layer_norm1(x)))
        x = conv_time_major(self.cnn1, x * keep)  # (B, C, T, F)
        x = self.dropout2(F.gelu(self.layer_norm2(x)))
        x = conv_time_major(self.cnn2, x * keep)  # (B, C, T, F)
        return x + residual


class BidirectionalGRU(nn.Module):
    def __init__(self, rnn_dim: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(rnn_dim)
        self.gru = nn.GRU(rnn_dim, hidden_size, num_layers=1, bidirectional=True, batch_first=True)
        self.dropout = Dropout(dropout)

    def forward(
        self, x: Tensor, lengths: Tensor, impl: str = "auto", *, padded: bool = True
    ) -> Tensor:
        """(B, T, in) -> (B, T, 2H). `impl`: how the backward direction skips padding
        (ModelConfig.gru_impl), or "ignore": start it in the padding (leaks; for tests and
        benchmarks only). `padded` False: no utterance is shorter than T."""
        x = F.gelu(self.layer_norm(x))  # (B, T, in)
        x = run_bidirectional(self.gru, x, lengths, resolve_impl(impl, x), padded=padded)
        return self.dropout(x)  # (B, T, 2H)

    def forward_packed(self, seq: PackedSequence) -> PackedSequence:
        """The same function on packed rows (N, in) -> (N, 2H): the norm, GELU and dropout act
        on each real frame alone, so they need no padding."""
        seq = seq._replace(data=F.gelu(self.layer_norm(seq.data)))
        out = self.gru(seq)[0]
        return out._replace(data=self.dropout(out.data))


class DeepSpeech2(nn.Module):
    """feats (B, n_feats, T) log-mel -> CTC log-probs (B, T', n_class) and lengths T'.

    `gru_impl` starts as `cfg.gru_impl`; setting it to "ignore" lets padding leak into the
    backward GRU direction (for tests and benchmarks only).
    """

    def __init__(self, cfg: Any = None) -> None:
        super().__init__()
        if cfg is None:
            cfg = ModelConfig()
        elif not isinstance(cfg, ModelConfig):  # e.g. an OmegaConf DictConfig: re-validate
            cfg = ModelConfig(**{f.name: getattr(cfg, f.name) for f in fields(ModelConfig)})
        self.cfg: ModelConfig = cfg
        self.gru_impl = cfg.gru_impl
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
            Dropout(cfg.dropout),
            nn.Linear(cfg.rnn_dim, cfg.n_class),
        )

    def output_lengths(self, feat_lens: Tensor) -> Tensor:
        """Frames out of the stem conv (the only layer that changes the time resolution).

        The conv's parameters are the seed's, laid out for (B, C, F, T) maps: index 1 of its
        kernel, stride and padding is the time axis (`conv_time_major` applies them to the
        (B, C, T, F) map with the axes swapped).
        """
        return conv_output_lengths(
            feat_lens, self.cnn.kernel_size[1], self.cnn.stride[1], self.cnn.padding[1]
        )

    def forward(self, feats: Tensor, feat_lens: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, F, T) on the model's device; feat_lens (B,) anywhere, best on the host:
        the lengths then never travel back from the device (a host sync on CUDA), and the
        returned out_lens (B,) stay on the host too, where CTC wants them."""
        out_lens = self.output_lengths(feat_lens)  # (B,), where feat_lens are
        lens = feat_lens.to(feats.device, non_blocking=True)  # pinned by the loader on CUDA
        out_lens_here = self.output_lengths(lens)
        # Collate pads with anything; zero it so the stem sees what an unpadded input sees.
        keep_in = frames_kept(lens, feats.shape[2]).to(feats.dtype)  # (B, T)
        x = (feats * keep_in[:, None, :]).transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        x = conv_time_major(self.cnn, x)  # (B, 32, T', F/s)
        keep = frames_kept(out_lens_here, x.shape[2]).to(x.dtype)[:, None, :, None]  # (B,1,T',1)
        x = x * keep
        for layer in self.rescnn_layers:
            x = layer(x, keep)  # (B, 32, T', F/s)
        b, c, t, f = x.shape
        x = x.transpose(1, 2).reshape(b, t, c * f)  # (B, T', 32*F/s), channel-major as the seed
        x = self.fully_connected(x)  # (B, T', rnn_dim)
        x = self.recurrent(x, out_lens, out_lens_here)  # (B, T', 2*rnn_dim)
        logits = self.classifier(x)  # (B, T', n_class)
        # Frames at index >= out_lens are don't-care: ctc_loss reads only out_lens frames.
        return F.log_softmax(logits, dim=-1), out_lens

    def recurrent(self, x: Tensor, out_lens: Tensor, out_lens_here: Tensor) -> Tensor:
        """The GRU stack, (B, T', rnn_dim) -> (B, T', 2*rnn_dim). Packed: packed once and
        unpacked once for all layers, from the lengths in `out_lens` (host). The padded
        arrangements take `out_lens_here`, on x's device.

        Always in fp32, whatever autocast says: autocast casts cuDNN RNNs to fp16 (not to its
        own dtype) and re-flattens their weights on every call, which under bf16 autocast would
        be fp16 training with no loss scaling."""
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.recurrent(x.float(), out_lens, out_lens_here)
        impl = resolve_impl(self.gru_impl, x)
        if impl == "pack" or not all(isinstance(m.gru, nn.GRU) for m in self.birnn_layers):
            seq = pack(x, out_lens.cpu())  # host lengths: .cpu() is a no-op
            for layer in self.birnn_layers:
                seq = layer.forward_packed(seq)
            return unpack(seq, total_length=x.shape[1])
        padded = min(out_lens.tolist()) < x.shape[1]
        for layer in self.birnn_layers:
            x = layer(x, out_lens_here, impl, padded=padded)
        return x


def load_model(state: dict[str, Any]) -> DeepSpeech2:
    """The model of a checkpoint's state (`asr.checkpoint.load`), in eval mode, on the CPU."""
    model = DeepSpeech2(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval()
