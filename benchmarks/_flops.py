"""How much of the machine's matmul peak a training step reaches: the model's matmul FLOPs (analytic,
from its sizes and each batch's shape) and the peak of one large matmul measured in the same process.

Forward matmul FLOPs of one batch, a multiply-add counted as 2 FLOPs; B sentences, S (padded) source
and T (padded) target positions, n real target tokens; E emb_dim, He enc_hidden, D directions (2 with
``bidirectional``), M = D * He the memory width, H dec_hidden, A attn_dim, V the target vocabulary,
g the gate count of a cell (GRU 3, LSTM 4, tanh RNN 1), I_l a layer's input width (E, then D * He or
H; the decoder's layer 0 takes E + H with input feeding):

    encoder      sum_l  2 B S D g_enc He (I_l + He)                  every padded position (the CPU
                                                                       GRU runs the padding too)
    bridge       2 B M (2 or 1) L H                                   encoder state -> (h, c) per layer
    keys         2 B S M K                                            additive: K = A, general: K = H
    decoder      sum_l  2 B T g_dec H (I_l + H)                       input projection + recurrence
    attention    B T (2 H A + 2 S A + 2 S M)                          additive: query, v . tanh(.), context
                 B T (2 S H + 2 S M)                                  general / dot: scores, context
    combine      2 B T (M + H) H                                      attentional vector
    pre_output   2 B T H E                                            tied embeddings only
    output       2 n E' V                                             E' = E tied, else H; real rows only

Training = 3 x forward (backward computes, for every matmul, the gradient of its input and of its
weight, each as many FLOPs as the forward product). Pointwise work (gates, softmax, the loss) is not
counted: the figure is the matmul work a step must do, divided by the time the whole step took.

Checked against ``torch.utils.flop_counter.FlopCounterMode`` around a training step's forward (the fused
loss computes its gradients there) and backward on tiny models: within 0.2%.

The peak is the best rate of a square matmul (``--peak-size``, default 2048) in the dtype, at the
thread count the step ran with: the same hardware and library, what the step could reach if it were
one large matmul.
"""

from __future__ import annotations

import time

import torch

GATES = {"gru": 3, "lstm": 4, "rnn": 1}


def forward_flops(model_cfg, tgt_vocab: int, B: int, S: int, T: int, n: int) -> float:
    """The forward matmul FLOPs of one batch (module docstring): B sentences, S / T padded source /
    target positions, n real target tokens (the output layer skips padding rows)."""
    m = model_cfg
    E, He, H, A, V = m.emb_dim, m.enc_hidden, m.dec_hidden, m.attn_dim, tgt_vocab
    D = 2 if m.bidirectional else 1
    M = D * He
    g_enc, g_dec = GATES[m.enc_cell], GATES[m.dec_cell]
    flops = 0.0
    for layer in range(m.enc_layers):
        width = E if layer == 0 else M
        flops += 2 * B * S * D * g_enc * He * (width + He)
    flops += 2 * B * M * (2 if m.dec_cell == "lstm" else 1) * m.dec_layers * H
    for layer in range(m.dec_layers):
        width = (E + (H if m.input_feeding else 0)) if layer == 0 else H
        flops += 2 * B * T * g_dec * H * (width + H)
    if m.attention == "additive":
        flops += 2 * B * S * M * A + B * T * (2 * H * A + 2 * S * A + 2 * S * M)
    elif m.attention == "general":
        flops += 2 * B * S * M * H + B * T * (2 * S * H + 2 * S * M)
    elif m.attention == "dot":
        flops += B * T * (2 * S * M + 2 * S * M)
    flops += 2 * B * T * (M + H) * H  # combine
    out_in = E if m.tie_embeddings else H
    if m.tie_embeddings:
        flops += 2 * B * T * H * E  # pre_output
    flops += 2 * n * out_in * V
    return flops


def training_flops(model_cfg, tgt_vocab: int, batches) -> float:
    """3 x the forward matmul FLOPs of ``batches`` (seq2seq.data.batches.Batch: src (B, S), tgt_in (B, T))."""
    return 3 * sum(
        forward_flops(model_cfg, tgt_vocab, b.src.size(0), b.src.size(1), b.tgt_in.size(1), b.ntokens)
        for b in batches
    )


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0, device: str = "cpu") -> float:
    """FLOP/s of the best of repeated (size x size) @ (size x size) matmuls in ``dtype`` over about
    ``seconds`` (after one warm-up), at torch's current thread count."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best
