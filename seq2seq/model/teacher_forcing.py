"""The default decoder's teacher-forced time loop as one autograd node with a hand-written backward (CPU).

Why: in training, the decoder (an LSTM layer with input feeding, additive attention, the combine layer
and dropout on the attentional vector) runs ~20 small ops a target position. Autograd records each,
and its backward then accumulates every weight's gradient position by position (one small matmul and
one add per position and weight), slices and zero-fills. Here (:class:`TeacherForcedLoop`):

* forward runs the same arithmetic as :meth:`seq2seq.model.network.Decoder.recur_step`, keeping what backward
  needs in preallocated (T, ...) buffers;
* backward walks the positions in reverse for the gradients that must be carried (h, c, the fed
  attentional vector), with ATen's fused ``sigmoid_backward`` / ``tanh_backward``, and gives every
  weight's gradient as one matmul over all positions at the end: the recurrent weights, the query
  projection, the scoring vector, the combine layer, and the memory's gradient;
* the attention's tanh over (B, S, A) is computed as a sigmoid (see :class:`TeacherForcedLoop`), the
  largest pointwise cost of a position.

Measured on a 2-core AVX2 EPYC (the de-en CPU recipe's model, ~112 sentences x 18 positions): the loop's
forward and backward ~165 ms here; a whole training step ~20-30% faster together with
:mod:`seq2seq.model.encoder_gru` and :mod:`seq2seq.training.cpumem` (benchmarks/README.md).

Numbers equal the eager loop's up to float rounding (``tests/model/test_teacher_forcing.py`` compares outputs
and every gradient). It covers the default decoder only (:func:`applies`): one LSTM layer, input
feeding, additive attention without coverage, on the CPU, in fp32 or under bf16 autocast; every other
decoder and CUDA run the eager loop.

Under CPU bf16 autocast it follows the rule of :mod:`seq2seq.model.cells`: matmuls in bf16, the gates,
nonlinearities and the recurrent state in fp32. The weights come in as the fp32 parameters and are cast
once a batch; ``[feed; h]`` and ``[context; h]`` are kept in bf16 (they only enter matmuls), everything
else in fp32, and backward casts each position's fp32 gradients once before its matmuls. The weights'
gradients are one bf16 matmul each over all positions (oneDNN sums the T * B products in fp32; the
result is rounded to bf16 once and returned in fp32: no bf16 matmul with an fp32 result is reachable on
the CPU in torch 2.13). Two small differences from the eager loop under autocast, both more precise:
the attention's tanh and the combine layer's tanh run in fp32 (eager runs them in bf16, as autocast
leaves pointwise ops in their input's dtype), and the scoring vector's reduction over (B, S, A), and
its two gradients, stay fp32 (a cast of that tensor would cost more than the reduction saves).

The dropout masks of all positions are drawn at once
(:meth:`seq2seq.model.dropout.Dropout.scales`): the same generator's numbers in the same order as the eager
loop draws them, so a seeded run draws the same masks (where B * H is a multiple of 4, as a draw gives
four 16-bit numbers).
"""

from __future__ import annotations

import torch

from seq2seq.model.precision import cpu_matmul_dtype


def applies(decoder, device: torch.device) -> bool:
    """Whether ``decoder``'s teacher-forced loop on ``device`` is the one :class:`TeacherForcedLoop` runs."""
    return (
        device.type == "cpu"
        and decoder.lstm
        and decoder.layers == 1
        and decoder.input_feeding
        and decoder.attention.kind == "additive"
        and not decoder.coverage
        and (not torch.is_autocast_enabled("cpu") or cpu_matmul_dtype() == torch.bfloat16)
        and not torch.compiler.is_compiling()
    )


class TeacherForcedLoop(torch.autograd.Function):
    """gates_x (T, B, 4H) layer 0's input gates (both biases in), w_rec (4H, 2H) the weight of [feed; h],
    feed0 / h0 / c0 (B, H), memory (B, S, M), keys (B, S, A), mask (B, S) True at real tokens,
    w_q (A, H), b_q (A), v (A,), w_c (H, M + H), drop (T, B, H) dropout scales or None, low the matmuls'
    dtype (gates_x's, or bf16: the weights come in gates_x's dtype and are cast inside)
    -> attentional vectors (T, B, H) in ``low``.

    The attention's tanh is taken as tanh(x) = 2 sigmoid(2x) - 1 (ATen's CPU tanh is ~3x slower than its
    sigmoid), and only u = sigmoid(2 (keys + q)) is kept: the scores are 2 u.v - sum(v), and tanh's
    derivative 1 - tanh^2 = 4 u (1 - u). That saves four passes over the (B, S, A) tensor a position.
    """

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, gates_x, w_rec, feed0, h0, c0, memory, keys, mask, w_q, b_q, v, w_c, drop, low):
        T, B, G = gates_x.shape
        H, M, S, A = G // 4, memory.size(2), memory.size(1), keys.size(2)
        full = gates_x.dtype
        w_rec, w_q, w_c, memory = (x.to(low) for x in (w_rec, w_q, w_c, memory))  # once a batch
        rec = gates_x.new_empty(T, B, 2 * H, dtype=low)  # [feed; h] before each position
        sig = gates_x.new_empty(T, B, G)  # sigmoid(i, f, -, o) and tanh(g) in the g block
        cs = gates_x.new_empty(T + 1, B, H)  # cell states; cs[0] = c0
        tanh_c = gates_x.new_empty(T, B, H)
        comb = gates_x.new_empty(T, B, M + H, dtype=low)  # [context; h] after each position
        u = gates_x.new_empty(T, B, S, A)  # sigmoid(2 (keys + query)): tanh(keys + query) = 2u - 1
        weights = gates_x.new_empty(T, B, S)  # attention
        att = gates_x.new_empty(T, B, H)  # tanh(w_c [context; h]) before dropout
        feeds = gates_x.new_empty(T, B, H, dtype=low)
        neg, keys2, v2, v_sum = ~mask, keys.to(full) * 2, v * 2, v.sum()
        rec[0, :, :H], rec[0, :, H:], cs[0] = feed0, h0, c0
        for t in range(T):
            gates = mm_add(gates_x[t], rec[t], w_rec.t())  # (B, 4H)
            s = sig[t]
            torch.sigmoid(gates, out=s)
            torch.tanh(gates[:, 2 * H : 3 * H], out=s[:, 2 * H : 3 * H])
            i, f, g, o = s.chunk(4, dim=1)
            torch.addcmul(i * g, f, cs[t], out=cs[t + 1])  # c = f c + i g
            torch.tanh(cs[t + 1], out=tanh_c[t])
            h = comb[t, :, M:]
            torch.mul(o, tanh_c[t], out=h)
            q = mm_add(b_q, h, w_q.t())  # (B, A)
            torch.sigmoid(torch.add(keys2, q.unsqueeze(1), alpha=2), out=u[t])  # (B, S, A)
            scores = torch.mv(u[t].view(-1, A), v2).view(B, S).sub_(v_sum)  # v . tanh(keys + q)
            weights[t] = torch.softmax(scores.masked_fill_(neg, float("-inf")), dim=1)
            comb[t, :, :M] = torch.bmm(weights[t].to(low).unsqueeze(1), memory).squeeze(1)  # context (B, M)
            torch.tanh(comb[t] @ w_c.t(), out=att[t])
            torch.mul(att[t], drop[t], out=feeds[t]) if drop is not None else feeds[t].copy_(att[t])
            if t + 1 < T:
                rec[t + 1, :, :H], rec[t + 1, :, H:] = feeds[t], h
        ctx.save_for_backward(w_rec, memory, w_q, v, w_c, drop, rec, sig, cs, tanh_c, comb, u, weights, att)
        return feeds

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, d_feeds):
        w_rec, memory, w_q, v, w_c, drop, rec, sig, cs, tanh_c, comb, u, weights, att = ctx.saved_tensors
        T, B, G = sig.shape
        H, M, S, A = G // 4, memory.size(2), memory.size(1), u.size(3)
        low = rec.dtype
        tanh_backward, sigmoid_backward = torch.ops.aten.tanh_backward, torch.ops.aten.sigmoid_backward
        d_gates = sig.new_empty(T, B, G)
        d_att = sig.new_empty(T, B, H)  # through the combine layer's tanh
        d_ctx = sig.new_empty(T, B, M, dtype=low)
        d_scores = sig.new_empty(T, B, S)
        d_q = sig.new_empty(T, B, A)
        d_keys = torch.zeros_like(u[0])  # (B, S, A), without the factor 4v (applied at the end)
        v4 = v * 4
        d_feed, d_h, d_c = (sig.new_zeros(B, H) for _ in range(3))  # carried from position t + 1
        memory_t = memory.transpose(1, 2).contiguous()  # (B, M, S): bmm(memory, x) runs ~10x slower
        for t in range(T - 1, -1, -1):
            d_f = d_feed + d_feeds[t]
            tanh_backward(d_f * drop[t] if drop is not None else d_f, att[t], grad_input=d_att[t])
            d_comb = mm(d_att[t], w_c)  # (B, M + H)
            d_ctx[t] = d_comb[:, :M]
            # attention: weights (B, S) = softmax(scores), scores = v . tanh(keys + q) = 2 u.v - sum(v)
            d_w = torch.bmm(d_ctx[t].unsqueeze(1), memory_t).squeeze(1).to(sig.dtype)  # (B, S)
            w = weights[t]
            torch.mul(w, d_w - (w * d_w).sum(1, keepdim=True), out=d_scores[t])  # zero at padding
            du = torch.addcmul(u[t], u[t], u[t], value=-1)  # u (1 - u) = (1 - tanh^2) / 4, (B, S, A)
            torch.mul(torch.bmm(d_scores[t].unsqueeze(1), du).squeeze(1), v4, out=d_q[t])  # (B, A)
            d_keys.addcmul_(du, d_scores[t].unsqueeze(2))
            d_h = mm_add(d_h + d_comb[:, M:], d_q[t], w_q)  # (B, H): the new h's gradient
            # the LSTM cell
            i, f, g, o = sig[t].chunk(4, dim=1)
            d_c = d_c + tanh_backward(d_h * o, tanh_c[t])  # (B, H)
            dg = d_gates[t]
            sigmoid_backward(d_c * g, i, grad_input=dg[:, :H])
            sigmoid_backward(d_c * cs[t], f, grad_input=dg[:, H : 2 * H])
            tanh_backward(d_c * i, g, grad_input=dg[:, 2 * H : 3 * H])
            sigmoid_backward(d_h * tanh_c[t], o, grad_input=dg[:, 3 * H :])
            d_c = d_c * f
            d_rec = mm(dg, w_rec)  # (B, 2H): the previous feed's and h's gradients
            d_feed, d_h = d_rec[:, :H], d_rec[:, H:]
        flat = lambda x: x.reshape(T * B, x.size(-1))  # noqa: E731
        d_w_rec = mm(flat(d_gates).t(), flat(rec))  # (4H, 2H): one matmul over all positions
        d_w_c = mm(flat(d_att).t(), flat(comb))  # (H, M + H)
        d_w_q = mm(flat(d_q).t(), flat(comb[:, :, M:]))  # (A, H)
        # d v = sum d_scores (2u - 1) = 2 sum d_scores u: a softmax gradient sums to 0 over the positions
        d_v = (d_scores.reshape(1, -1) @ u.reshape(-1, A)).view(A) * 2
        d_memory = torch.bmm(weights.permute(1, 2, 0).to(low), d_ctx.transpose(0, 1))  # (B, S, M)
        return (
            d_gates,
            d_w_rec,
            d_feed,
            d_h,
            d_c,
            d_memory,
            d_keys.mul_(v4),
            None,
            d_w_q,
            d_q.sum((0, 1)),
            d_v,
            d_w_c,
            None,
            None,
        )


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in b's dtype (a cast to it), the result in a's: the matmuls of the backward, whose weights
    (b) are in the low dtype and whose gradients (a) are fp32; one matmul, one rounding of its output."""
    return torch.mm(a.to(b.dtype), b).to(a.dtype)


def mm_add(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + a @ b with the matmul in b's dtype (a cast to it) and the sum in bias's: one ``addmm``
    where all three share a dtype (fp32 training), else the low-precision matmul, then the sum."""
    if a.dtype == b.dtype == bias.dtype:
        return torch.addmm(bias, a, b)
    return torch.add(bias, torch.mm(a.to(b.dtype), b))


def run(decoder, gates_x: torch.Tensor, w_rec: torch.Tensor, state) -> torch.Tensor:
    """The loop of :meth:`seq2seq.model.network.Decoder.forward` for a decoder :func:`applies` to: gates_x
    (B, T, 4H), w_rec (4H, 2H), the initial :class:`seq2seq.model.network.DecoderState` -> attentional vectors
    (B, T, H) in the matmuls' dtype (:func:`seq2seq.model.precision.cpu_matmul_dtype`); w_rec and the
    attention's weights are the fp32 parameters (cast once inside), memory and keys as
    :meth:`seq2seq.model.network.Decoder.init_state` made them."""
    B, T, _ = gates_x.shape
    drop = decoder.drop.scales(torch.Size((T, B, decoder.hidden)), gates_x.dtype)  # T masks of (B, H)
    att = decoder.attention
    feeds = TeacherForcedLoop.apply(
        gates_x.transpose(0, 1).contiguous(),
        w_rec,
        state.feed,
        state.h[0],
        state.c[0],
        state.memory,
        state.keys,
        state.mask,
        att.query_proj.weight,
        att.query_proj.bias,
        att.v.weight.view(-1),
        decoder.combine.weight,
        drop,
        cpu_matmul_dtype(),
    )
    return feeds.transpose(0, 1)  # (B, T, H)
