"""The encoder's GRU on the CPU: a padded batch, both directions in one batched matmul a step, and a
hand-written backward.

Why: ``nn.GRU`` on packed sequences runs its CPU recurrence as a chain of small ATen ops per time step
and direction, and autograd records each of them: backward then slices, zero-fills, copies and adds
per step. Here a layer is one autograd node (:class:`GRULayer`):

* forward: the input projection of every position and both directions is one batched matmul; each
  step is then one batched matmul ``h @ W_hh^T`` for both directions and the gate arithmetic, whose
  results are kept in (D, S, ...) buffers;
* backward: the same steps in reverse order give the gates' gradients (ATen's fused
  ``sigmoid_backward`` / ``tanh_backward``); the weights' and the inputs' gradients are then one
  batched matmul each over all steps, not one accumulation per step.

On a 2-core AVX2 EPYC, a 112-sentence batch of 19 positions (bi-GRU 256): forward and backward
~120 ms against ~140-155 ms for the packed ``nn.GRU`` (same process, alternating; benchmarks/README.md).

Padding instead of packing: row ``b`` of the forward direction stops updating after its last real
token and the reverse direction starts from its zero state there, so outputs and final states equal
the packed ``nn.GRU``'s up to float rounding (``tests/model/test_encoder_gru.py``), with outputs zero at
padding. The weights are the ``nn.GRU``'s own (``weight_ih_l0``, ``weight_hh_l0_reverse``, ...), so
checkpoints do not change. Dropout between layers (``enc_layers > 1``) is :class:`seq2seq.model.dropout.Dropout`.
Inputs, weights, gates and states are fp32: the encoder calls it with autocast off, as it runs ``nn.GRU``.
Under CPU bf16 autocast the encoder passes ``low=bf16`` (:func:`seq2seq.model.precision.cpu_matmul_dtype`):
the matmuls then take bf16 operands (the weights and the inputs cast once a layer, the state once a
step) and give fp32 results, the rule of :mod:`seq2seq.model.cells`; the weights' gradients are one bf16
matmul each over all steps (oneDNN sums in fp32, the result is rounded to bf16 once).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from seq2seq.model.dropout import Dropout


class GRULayer(torch.autograd.Function):
    """One GRU layer, D directions at once: x (S, B, E) time-major input, w_ih (D, 3H, E), w_hh (D, 3H, H),
    b_ih / b_hh (D, 3H), mask (S, B, 1) True at real tokens, low the matmuls' dtype (None: x's) -> outputs (D, S, B, H)
    zero at padding, with direction 1 in reversed time order (its step k is position S-1-k), final h
    (D, B, H), both fp32."""

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, mask, low=None):
        S, B, E = x.shape
        D, H = w_hh.size(0), w_hh.size(2)
        xs = torch.stack([x, x.flip(0)][:D]).view(D, S * B, E)  # each direction's inputs in step order
        masks = torch.stack([mask, mask.flip(0)][:D])  # (D, S, B, 1)
        keep = masks.to(x.dtype)
        low = low or x.dtype
        xs, w_ih, w_hh = xs.to(low), w_ih.to(low), w_hh.to(low)  # once a layer
        gi = baddbmm(b_ih.unsqueeze(1), xs, w_ih.transpose(1, 2)).view(D, S, B, 3 * H)  # all steps
        w_t, bias = w_hh.transpose(1, 2), b_hh.unsqueeze(1)  # (D, H, 3H), (D, 1, 3H)
        hs = x.new_zeros(D, S + 1, B, H)  # hs[:, k]: the state before step k
        rz = x.new_empty(D, S, B, 2 * H)  # reset and update gates (after the sigmoid)
        n = x.new_empty(D, S, B, H)  # candidate
        gh_n = x.new_empty(D, S, B, H)  # W_hn h + b_hn, which r scales
        out = x.new_empty(D, S, B, H)
        for k in range(S):
            h, m = hs[:, k], masks[:, k]
            gh = baddbmm(bias, h, w_t)  # (D, B, 3H)
            torch.sigmoid(gi[:, k, :, : 2 * H] + gh[..., : 2 * H], out=rz[:, k])
            gh_n[:, k] = gh[..., 2 * H :]
            torch.tanh(torch.addcmul(gi[:, k, :, 2 * H :], rz[:, k, :, :H], gh_n[:, k]), out=n[:, k])
            new = torch.addcmul(n[:, k], rz[:, k, :, H:], h - n[:, k])  # (1 - z) n + z h
            torch.where(m, new, h, out=hs[:, k + 1])  # padding: the state stays
            torch.mul(new, keep[:, k], out=out[:, k])
        ctx.save_for_backward(xs, w_ih, w_hh, masks, hs, rz, n, gh_n)
        return out, hs[:, S].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, d_out, d_last):
        xs, w_ih, w_hh, masks, hs, rz, n, gh_n = ctx.saved_tensors
        D, S, B, H = n.shape
        d_gi = n.new_empty(D, S, B, 3 * H)  # gradients of the input gates
        d_gh = n.new_empty(D, S, B, 3 * H)  # ... and of the recurrent ones
        dh = d_last.clone() if d_last is not None else n.new_zeros(D, B, H)
        keep = masks.to(n.dtype)  # (D, S, B, 1) 1 at real tokens
        tanh_backward, sigmoid_backward = torch.ops.aten.tanh_backward, torch.ops.aten.sigmoid_backward
        for k in range(S - 1, -1, -1):
            m, h, nk = masks[:, k], hs[:, k], n[:, k]
            r, z = rz[:, k, :, :H], rz[:, k, :, H:]
            d_new = (
                (dh + d_out[:, k]) * keep[:, k] if d_out is not None else dh * keep[:, k]
            )  # reaches the update
            d_pn = tanh_backward(torch.addcmul(d_new, d_new, z, value=-1), nk)  # through (1 - z) n, tanh
            d_gi[:, k, :, 2 * H :] = d_pn
            torch.mul(d_pn, r, out=d_gh[:, k, :, 2 * H :])
            sigmoid_backward(d_pn * gh_n[:, k], r, grad_input=d_gi[:, k, :, :H])
            sigmoid_backward(d_new * (h - nk), z, grad_input=d_gi[:, k, :, H : 2 * H])
            d_gh[:, k, :, : 2 * H] = d_gi[:, k, :, : 2 * H]
            # the previous state: through z h and W_hh h; unchanged where the step is padding
            dh = baddbmm(torch.where(m, d_new * z, dh), d_gh[:, k], w_hh)
        d_gi, d_gh = d_gi.view(D, S * B, 3 * H), d_gh.view(D, S * B, 3 * H)
        low, full = xs.dtype, n.dtype
        d_gi_low, h_low = d_gi.to(low), hs[:, :S].reshape(D, S * B, H).to(low)  # once (no-ops in fp32)
        d_w_ih = torch.bmm(d_gi_low.transpose(1, 2), xs).to(full)  # (D, 3H, E): one matmul over all steps
        d_w_hh = torch.bmm(d_gh.to(low).transpose(1, 2), h_low).to(full)  # (D, 3H, H)
        d_xs = torch.bmm(d_gi_low, w_ih).to(full).view(D, S, B, -1)  # (D, S, B, E)
        d_x = d_xs[0] + d_xs[1].flip(0) if D == 2 else d_xs[0]
        return d_x, d_w_ih, d_w_hh, d_gi.sum(1), d_gh.sum(1), None, None


def baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + a @ b (batched), the matmul in b's dtype (a cast to it), the sum in bias's: one ``baddbmm``
    where all three share a dtype."""
    if a.dtype == b.dtype == bias.dtype:
        return torch.baddbmm(bias, a, b)
    return torch.add(bias, torch.bmm(a.to(b.dtype), b))


def weights(rnn: nn.GRU, layer: int) -> list[tuple[torch.Tensor, ...]]:
    """(w_ih, w_hh, b_ih, b_hh) of each direction of ``layer``, the nn.GRU's own parameters."""
    suffixes = ["", "_reverse"][: 2 if rnn.bidirectional else 1]
    return [
        tuple(
            getattr(rnn, f"{name}_l{layer}{s}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        for s in suffixes
    ]


def padded_gru(
    rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor, dropout: Dropout, low: Optional[torch.dtype] = None
):
    """``rnn`` (batch first, with biases) over x (B, S, E) whose row b has lengths[b] real positions
    -> outputs (B, S, D*H) zero at padding, final states (layers * D, B, H) as nn.GRU orders them.
    ``dropout`` is applied to every layer's outputs but the last (nn.GRU's ``dropout``); ``low``: the
    matmuls' dtype (the module docstring; None: x's)."""
    B, S, _ = x.shape
    D = 2 if rnn.bidirectional else 1
    mask = (torch.arange(S, device=x.device).unsqueeze(1) < lengths.to(x.device)).unsqueeze(2)  # (S, B, 1)
    x = x.transpose(0, 1).contiguous()  # (S, B, E) time-major
    finals = []
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = dropout(x)
        w_ih, w_hh, b_ih, b_hh = (torch.stack(t) for t in zip(*weights(rnn, layer)))
        out, last = GRULayer.apply(x, w_ih, w_hh, b_ih, b_hh, mask, low)  # (D, S, B, H), (D, B, H)
        x = torch.cat([out[0], out[1].flip(0)], dim=2) if D == 2 else out[0]  # (S, B, D*H)
        finals.append(last)
    return x.transpose(0, 1), torch.cat(finals)
