"""Where a run computes and in what arithmetic: `trainer.device` and `trainer.precision`.

`pick_device`: `auto` is the GPU when there is one, else the CPU.

`trainer.precision`: what arithmetic a training step runs in, each option doing what it says.

- ``fp32``: IEEE single precision everywhere. On CUDA, TF32 is switched off for matmuls and for
  cuDNN (whose convolutions use TF32 by default on Ampere and later).
- ``tf32``: fp32 storage, TF32 tensor-core math for matmuls and cuDNN (convolutions and GRUs).
- ``bf16``: autocast to bfloat16 for the convolutions and linear layers, TF32 as above. The
  GRUs and the CTC loss stay in fp32: PyTorch's autocast would otherwise run cuDNN GRUs in
  *fp16* (its RNN cast policy ignores the autocast dtype) with no loss scaling, and re-flatten
  their weights on every call (see `DeepSpeech2.recurrent`).

The CPU has only ``fp32``: TF32 does not exist there, and bf16 autocast ran slower than fp32
on the CPUs this project was measured on.
"""

from __future__ import annotations

import contextlib

import torch

from asr.schema import ConfigError

PRECISIONS = ("fp32", "tf32", "bf16")


def pick_device(name: str, *, key: str = "trainer.device") -> torch.device:
    """The setting `key` (`trainer.device`, or evaluate's `device`): auto | cpu | cuda | cuda:N."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name} but no CUDA device is available")
    return torch.device(name)


def configure_precision(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager | None:
    """Set the TF32 switches for `precision` and return the autocast context of a training
    forward pass (None: no autocast)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision must be {'|'.join(PRECISIONS)} (got {precision!r})")
    if device.type != "cuda":
        if precision != "fp32":
            raise ConfigError(
                f"trainer.precision={precision} needs a CUDA device (on {device.type}: fp32)"
            )
        return None
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return None
