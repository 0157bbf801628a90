"""Dropout whose CPU masks come from 16-bit random numbers instead of one Bernoulli draw per element.

Why: on a CPU, ``nn.Dropout`` draws one Bernoulli sample per element from the serial Mersenne
Twister generator (~14 ns an element on a 2-core AVX2 EPYC, 2 threads: 14 ms for a 1M-element mask).
Here one full-range 64-bit draw of the same generator gives four 16-bit numbers (1.7 ms for 1M
elements), and an element is dropped when its number falls in the lowest ``round(p * 65536)`` of the
65536 values: the drop probability is ``p`` rounded to a multiple of 1/65536 (0.3 -> 0.300003; at
most 65535/65536), and kept elements are scaled by the inverse of the keep probability, as
``nn.Dropout`` scales them. Figures: ``benchmarks/dropout_masks.py``.

Same rules as ``nn.Dropout``: identity in eval mode or at ``p = 0`` (or below 1/131072, which rounds
to 0); the masks use the default CPU generator, so seeding, checkpointed RNG state and exact resume
work as before. Other devices (CUDA's fused Philox dropout is fast) and compiled graphs (inductor
draws its own) use ``F.dropout``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # values of a 16-bit random number


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """A CPU dropout mask of ``shape``: 0 where dropped (probability ``round(p * 65536) / 65536``),
    else 1 / keep probability, in ``dtype``."""
    dropped = min(round(p * LEVELS), LEVELS - 1)  # values below -32768 + dropped are dropped
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # full 64-bit range
    bits = words.view(torch.int16)[:n].view(shape)  # four uniform 16-bit numbers a draw
    return (bits >= dropped - LEVELS // 2).to(dtype).mul_(LEVELS / (LEVELS - dropped))


class Dropout(nn.Module):
    """``nn.Dropout(p)`` with the fast CPU mask of :func:`keep_mask`."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def active(self) -> bool:
        """False where forward is the identity: eval mode, p = 0 or too small to drop anything."""
        return self.training and round(self.p * LEVELS) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active():
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return F.dropout(x, self.p, True)
        return x * keep_mask(x.shape, self.p, x.dtype)

    def scales(
        self, shape: torch.Size, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> Optional[torch.Tensor]:
        """What a forward of an input of ``shape`` on ``device`` multiplies it by, None where forward is
        the identity: for code that draws the masks of many steps at once and applies them itself
        (seq2seq.model.teacher_forcing, the decoder's time loop). On the CPU a :func:`keep_mask`, elsewhere
        Bernoulli draws of the device's generator scaled as ``F.dropout`` scales them."""
        if not self.active():
            return None
        if torch.device(device).type == "cpu":
            return keep_mask(shape, self.p, dtype)
        return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1 - self.p).div_(1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
