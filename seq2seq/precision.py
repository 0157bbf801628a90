"""Mixed precision: which autocast dtype a ``train.precision`` setting means on a device, and the
autocast context and gradient scaler that go with it."""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

from seq2seq.errors import UserError


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for a ``train.precision`` setting on ``device`` (None: plain fp32)."""
    cuda = device.type == "cuda"
    if precision == "fp32" or (precision == "auto" and not cuda):
        return None
    if precision == "fp16":
        if not cuda:
            raise UserError(
                "config key 'train.precision': fp16 needs a CUDA device (use bf16 or fp32 on CPU)"
            )
        return torch.float16
    if cuda:
        if precision == "auto" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise UserError("config key 'train.precision': this CPU has no native bf16; use fp32")
    return torch.bfloat16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
