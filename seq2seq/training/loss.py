"""The training objective: the output layer fused with label-smoothed cross-entropy.

Why fused: the output layer's scores are the largest tensor of a step (positions x vocabulary, 137 MB
for a 4096-token batch and 8k pieces). Unfused, that tensor and its log-softmax are written and read
back several times (log-softmax, the smoothing sum, the NLL the log reports, softmax backward). Here
the scores of a block of rows are computed, turned into the loss *and* their gradient while they are
in cache, and dropped: the gradient of a summed loss is known in the forward pass, so backward only
scales what forward kept (the gradients of the rows, the weight and the bias). Same numbers as
``F.linear`` + ``F.cross_entropy(label_smoothing=...)`` up to float rounding
(tests/training/test_loss.py).

Two more savings, neither changing the numbers beyond float rounding: on a CPU the padding rows
(about a tenth of a length-bucketed batch) never enter the three matmuls, and each block's scores are
exponentiated once (softmax's fused kernel gives the probabilities, and the log-sum-exp follows from
the largest one). Together about +8% training tokens/s on a 2-core AVX2 CPU (benchmarks/README.md).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.constants import PAD

# scores per block: 16 MiB in fp32 on a CPU (stays in the last-level cache); GPUs want large matmuls
CHUNK_ELEMENTS = {"cpu": 2**22, "cuda": 2**26}


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, target, smoothing: float, need_grad: bool = True):
        """x (N, E), weight (V, E), bias (V,) or None, target (N,) with PAD ignored -> summed loss and
        summed NLL (scalars, fp32). ``need_grad``: also the gradients (forward runs in no-grad mode, so
        the caller says)."""
        V, full_x = weight.size(0), x
        real_rows = None
        if x.device.type == "cpu":  # padding rows give nothing: skip their three matmuls (a GPU would sync)
            real_rows = (target != PAD).nonzero().squeeze(1)  # (n_real,)
            x, target = x.index_select(0, real_rows), target.index_select(0, real_rows)
        rows = max(1, CHUNK_ELEMENTS.get(x.device.type, 2**26) // V)
        device = x.device.type
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype  # matmuls
        loss = torch.zeros((), dtype=torch.float32, device=x.device)
        nll = torch.zeros((), dtype=torch.float32, device=x.device)
        gx = torch.empty_like(x) if need_grad else None
        gw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device) if need_grad else None
        gb = torch.zeros(V, dtype=torch.float32, device=x.device) if need_grad and bias is not None else None
        for start in range(0, x.size(0), rows):
            xc, yc = x[start : start + rows], target[start : start + rows]  # (n, E), (n,)
            z = F.linear(xc, weight, bias).float()  # (n, V), autocast dtype matmul, fp32 softmax
            real = (yc != PAD).unsqueeze(1)  # (n, 1)
            y = yc.clamp(min=0).unsqueeze(1)
            # one pass of exp (softmax's fused kernel) gives both p and log-sum-exp: the largest
            # probability is exp(max z - lse) >= 1/V, so lse = max z - log(max p) never underflows
            p = torch.softmax(z, dim=1)  # (n, V)
            lse = z.amax(dim=1, keepdim=True) - p.amax(dim=1, keepdim=True).log()  # (n, 1)
            nll_c = (lse - z.gather(1, y)).masked_fill(~real, 0.0).sum()
            nll += nll_c
            if smoothing:  # -mean log p over the vocabulary = lse - mean z
                smooth_c = (lse - z.mean(dim=1, keepdim=True)).masked_fill(~real, 0.0).sum()
                loss += (1.0 - smoothing) * nll_c + smoothing * smooth_c
            else:
                loss += nll_c
            if not need_grad:
                continue
            # d loss / d z = softmax(z) - (1 - eps) onehot(y) - eps / V, zero at padding
            g = p.scatter_add_(1, y, torch.full_like(lse, smoothing - 1.0))
            if smoothing:
                g.sub_(smoothing / V)
            if real_rows is None:
                g.mul_(real)
            gm = g.to(low)  # once: autocast would cast it for each of the two matmuls
            gx[start : start + rows] = torch.mm(gm, weight).to(x.dtype)
            gw += torch.mm(gm.t(), xc).float()
            if gb is not None:
                gb += g.sum(0)
        if need_grad and real_rows is not None:  # padding rows' gradient is zero
            gx = full_x.new_zeros(full_x.shape).index_copy_(0, real_rows, gx)
        ctx.save_for_backward(gx, gw, gb)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll):
        gx, gw, gb = ctx.saved_tensors
        return (
            gx * grad_loss.to(gx.dtype) if ctx.needs_input_grad[0] else None,
            gw * grad_loss if ctx.needs_input_grad[1] else None,
            gb * grad_loss if gb is not None and ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    target: torch.Tensor,
    smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed label-smoothed cross-entropy of ``F.linear(x, weight, bias)`` against ``target`` and the
    summed plain NLL (for the log; no gradient). x (..., E), target (...) with PAD positions ignored."""
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    x, target = x.reshape(-1, x.size(-1)), target.reshape(-1)
    return _LinearCrossEntropy.apply(x, weight, bias, target, smoothing, need_grad)


class TrainingLoss(nn.Module):
    """What a training step calls (and DDP wraps): a model and its objective.
    (src, lengths, tgt_in, tgt_out) -> summed label-smoothed loss, summed NLL over real target tokens."""

    def __init__(self, model: nn.Module, smoothing: float, loop=None):
        super().__init__()
        self.model, self.smoothing, self.loop = model, smoothing, loop

    def forward(self, src, lengths, tgt_in, tgt_out):
        dec = self.model.decoder
        feeds = dec(tgt_in, self.model.encode(src, lengths), self.loop)  # (B, T, H)
        x = dec.pre_output(feeds) if dec.pre_output is not None else feeds  # (B, T, E)
        return linear_cross_entropy(x, dec.output.weight, dec.output.bias, tgt_out, self.smoothing)
