"""Bidirectional GRU layers that keep padding out of the backward direction, three ways.

All three compute the function of ``nn.GRU(bidirectional=True)`` run on each utterance alone,
with the same parameters (so checkpoints and quantization do not care which one ran):

- ``pack``: ``pack_padded_sequence``, once for the whole GRU stack (the layer norms, GELUs and
  dropouts between the GRUs act on the packed rows), with lengths read on the host: no device
  sync. cuDNN runs it fast; torch's CPU kernel then computes each step's input projection
  separately, ~1.6x slower per layer than on a padded tensor.
- ``reverse``: torch's GRU on the padded tensor, one direction at a time: the forward direction
  is causal (padding at the end never reaches real frames), and the backward direction scans
  each utterance flipped within its own length, so its padding is at the end too.
- ``scan``: the ``reverse`` arrangement with both directions advanced together (one batched
  matmul per step) and a hand-written backward pass. torch's CPU GRU backward computes the
  recurrent weight gradient one step at a time, T small products that each read the whole
  3H x H weight, plus T accumulations; here the backward walks the steps only for what must be
  sequential (the gradient through the hidden state) and gets every weight gradient from one
  large matmul at the end. For training on CPU.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

GRU_IMPLS = ("auto", "pack", "reverse", "scan")


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Flip each sequence of a (B, T, ...) batch within its own length; padding stays at the
    end. Its own inverse."""
    t = torch.arange(x.shape[1], device=x.device)
    n = lengths.to(x.device)[:, None]
    index = torch.where(t < n, n - 1 - t, t)  # (B, T)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


def _weights(gru: nn.GRU, reverse: bool) -> list[Tensor]:
    suffix = "_reverse" if reverse else ""
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    return [getattr(gru, name + suffix) for name in names]


def gru_direction(gru: nn.GRU, x: Tensor, reverse: bool) -> Tensor:
    """One direction of a one-layer bidirectional `gru`, scanned forward over batch-first `x`:
    (B, T, in) -> (B, T, H). The same op nn.GRU calls, given one direction's weights."""
    h0 = x.new_zeros(1, x.shape[0], gru.hidden_size)
    args = (True, 1, 0.0, gru.training, False, True)  # bias, layers, dropout, train, bidir, bf
    out, _ = torch.ops.aten.gru.input(x, h0, _weights(gru, reverse), *args)
    return out


class _TwoDirectionScan(torch.autograd.Function):
    """h_t = GRUCell(gi_t, h_{t-1}) for two directions at once, from h_0 = 0.

    gi: (T, 2, B, 3H) input projections (biases included), w_hh: (2, 3H, H), b_hh: (2, 3H)
    -> (T, 2, B, H). Gate order and equations are torch's: r, z, n with
    n = tanh(gi_n + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
    """

    @staticmethod
    def forward(ctx, gi: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        steps, _, batch, h3 = gi.shape
        hidden, h2 = h3 // 3, 2 * (h3 // 3)
        w_t = w_hh.transpose(1, 2)  # (2, H, 3H)
        out = gi.new_empty(steps, 2, batch, hidden)
        gates = gi.new_empty(steps, 2, batch, h3)  # r, z, n after their nonlinearities
        hn_all = gi.new_empty(steps, 2, batch, hidden)  # W_hn h + b_hn, for d r
        h = gi.new_zeros(2, batch, hidden)
        for t in range(steps):  # results go straight into the saved buffers (out=): no copies
            gh = torch.baddbmm(b_hh.unsqueeze(1), h, w_t)  # (2, B, 3H)
            rz = torch.sigmoid(gi[t, ..., :h2] + gh[..., :h2], out=gates[t, ..., :h2])
            r, z, hn = rz[..., :hidden], rz[..., hidden:], gh[..., h2:]
            hn_all[t] = hn
            n = torch.tanh(torch.addcmul(gi[t, ..., h2:], r, hn), out=gates[t, ..., h2:])
            h = torch.addcmul(n, z, h - n, out=out[t])  # (1 - z) * n + z * h
        ctx.save_for_backward(w_hh, out, gates, hn_all)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w_hh, out, gates, hn_all = ctx.saved_tensors
        steps, _, batch, hidden = out.shape
        h2 = 2 * hidden
        d_gh = torch.empty_like(gates)  # d(W_hh h + b_hh): [d r, d z] pre-activation, d hn
        d_gi_n = torch.empty_like(hn_all)  # d(gi_n), pre-tanh
        dh = torch.zeros_like(out[0])
        zeros = torch.zeros_like(dh)
        for t in reversed(range(steps)):
            dh = dh + grad_out[t]
            r, z, n = gates[t, ..., :hidden], gates[t, ..., hidden:h2], gates[t, ..., h2:]
            h_prev = out[t - 1] if t > 0 else zeros
            # h' = (1 - z) n + z h_prev;  n = tanh(gi_n + r hn);  r, z = sigmoid(...)
            d_n = torch.mul(dh * (1 - z), 1 - n * n, out=d_gi_n[t])
            torch.mul(dh * (h_prev - n), z * (1 - z), out=d_gh[t, ..., hidden:h2])
            torch.mul(d_n * hn_all[t], r * (1 - r), out=d_gh[t, ..., :hidden])
            torch.mul(d_n, r, out=d_gh[t, ..., h2:])
            dh = torch.baddbmm(dh * z, d_gh[t], w_hh)  # to h_prev: directly, and through W_hh
        # Every step's recurrent weight gradient in one matmul per direction.
        h_prev_all = torch.cat([torch.zeros_like(out[:1]), out[:-1]])  # (T, 2, B, H)
        lhs = d_gh.permute(1, 3, 0, 2).reshape(2, 3 * hidden, steps * batch)
        rhs = h_prev_all.permute(1, 0, 2, 3).reshape(2, steps * batch, hidden)
        d_w_hh = torch.bmm(lhs, rhs)  # (2, 3H, H)
        d_b_hh = d_gh.sum(dim=(0, 2))  # (2, 3H)
        d_gi = torch.cat([d_gh[..., :h2], d_gi_n], dim=-1)  # gi's r, z parts get what gh's do
        return d_gi, d_w_hh, d_b_hh


def bidirectional_scan(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """``scan``: (B, T, in) -> (B, T, 2H), padding kept out of the backward direction."""
    w_ih_f, w_hh_f, b_ih_f, b_hh_f = _weights(gru, reverse=False)
    w_ih_b, w_hh_b, b_ih_b, b_hh_b = _weights(gru, reverse=True)
    # Input projections of every step at once: two large matmuls, time-major for the scan.
    gi_f = torch.nn.functional.linear(x, w_ih_f, b_ih_f)  # (B, T, 3H)
    gi_b = torch.nn.functional.linear(reverse_within_lengths(x, lengths), w_ih_b, b_ih_b)
    gi = torch.stack([gi_f, gi_b]).permute(2, 0, 1, 3).contiguous()  # (T, 2, B, 3H)
    w_hh, b_hh = torch.stack([w_hh_f, w_hh_b]), torch.stack([b_hh_f, b_hh_b])
    out = _TwoDirectionScan.apply(gi, w_hh, b_hh)  # (T, 2, B, H)
    forward, backward = out.permute(1, 2, 0, 3).unbind(0)  # (B, T, H) each
    return torch.cat([forward, reverse_within_lengths(backward, lengths)], dim=-1)


def resolve_impl(impl: str, x: Tensor) -> str:
    """`auto`: pack on CUDA (cuDNN), scan for training on the CPU, reverse for CPU inference."""
    if impl != "auto":
        return impl
    if x.is_cuda:
        return "pack"
    return "scan" if torch.is_grad_enabled() else "reverse"


def run_bidirectional(
    gru: nn.Module, x: Tensor, lengths: Tensor, impl: str, *, padded: bool = True
) -> Tensor:
    """(B, T, in) batch-first with valid `lengths` (on x's device) -> (B, T, 2H), for the
    arrangements that work on padded tensors; see the module docstring. `padded` False says no
    utterance is shorter than T, so one plain call is exact. `impl` "ignore" starts the backward
    direction in the padding (for tests only). ``pack`` packs here, once per call; the model
    packs once for all its layers instead (`DeepSpeech2.forward`)."""
    if not isinstance(gru, nn.GRU):  # e.g. quantize_dynamic's GRU: it takes packed input
        impl = "pack"
    if impl == "scan":
        return bidirectional_scan(gru, x, lengths)
    if impl == "ignore" or not padded:
        return gru(x)[0]  # no padding (or leaking accepted): one plain call is exact
    if impl == "reverse":
        forward = gru_direction(gru, x, reverse=False)
        flipped = gru_direction(gru, reverse_within_lengths(x, lengths), reverse=True)
        return torch.cat([forward, reverse_within_lengths(flipped, lengths)], dim=-1)
    seq = pack(x, lengths.cpu())
    return unpack(gru(seq)[0], total_length=x.shape[1])


def pack(x: Tensor, host_lengths: Tensor) -> PackedSequence:
    """Pack a batch-first (B, T, ...) tensor by lengths that live on the host, with no sync.

    `pack_padded_sequence(enforce_sorted=False)` sorts too, but copies its index to a CUDA
    device with a blocking copy (the host waits for the device's queue). Here the host sorts,
    and the index travels without blocking; `unpack` restores the batch's order.
    """
    lengths = host_lengths.clamp_min(1)  # pack_padded_sequence refuses empty sequences
    as_list = lengths.tolist()
    if all(a >= b for a, b in pairwise(as_list)):
        return nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
    order = torch.argsort(lengths, descending=True, stable=True)  # (B,) on the host
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    order_x = order.to(x.device, non_blocking=True)
    seq = nn.utils.rnn.pack_padded_sequence(x.index_select(0, order_x), lengths[order], True)
    return seq._replace(
        sorted_indices=order_x, unsorted_indices=inverse.to(x.device, non_blocking=True)
    )


def unpack(seq: PackedSequence, total_length: int) -> Tensor:
    return nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=total_length)[0]
