"""The recurrences' arithmetic: the default decoder LSTM (:func:`lstm_cell`, :func:`lstm_update`), the GRU
and tanh-RNN decoder steps beside it (``model.dec_cell``), the GRU's hoisted teacher-forcing projection,
and the encoder's RNN of any kind (``model.enc_cell``). All follow one rule: matmuls in the autocast
dtype (if any), gate arithmetic and the state in fp32.

GRU and RNN have no cell state: a decoder step passes its ``c`` through untouched, and the decoder
state's ``c`` is an empty (L, B, 0) tensor (search, beams and compiled buckets select it as any other).

Teacher forcing hoists layer 0's input projection of all target embeddings out of the time loop; each
position then adds one matmul of ``[feed; h]`` (``rec``) against ``w_rec``. The tanh RNN sums its input
and hidden projections as the LSTM does (the model's own hoisting serves both). The GRU's candidate
``n = tanh(W_in x + r * (W_hn h + b_hn))`` scales the hidden part alone, so its hoisted gates come in four
blocks of H (:func:`gru_hoisted`): ``[r, z]`` (input and hidden summed), n's input part, n's hidden part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's pointwise step in fp32: gates (B, 4H) in order i, f, g, o and c (B, H) -> new h, c."""
    i, f, g, o = gates.float().chunk(4, dim=1)
    c = torch.sigmoid(f) * c.float() + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_cell(cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """``cell(x, (h, c))`` with its matmuls in the autocast dtype (if any) and its state in fp32:
    x (B, I), h/c (B, H) -> new h, c (B, H) fp32. (nn.LSTMCell would run in fp16/bf16 under autocast.)"""
    gates = (
        F.linear(x, cell.weight_ih, cell.bias_ih).float() + F.linear(h, cell.weight_hh, cell.bias_hh).float()
    )
    return lstm_update(gates, c)


def encoder_rnn(kind: str, input_size: int, hidden: int, layers: int, bidirectional: bool, dropout: float):
    """The encoder's multi-layer ``nn.GRU``, ``nn.LSTM`` or tanh ``nn.RNN`` (batch first)."""
    rnn = nn.GRU if kind == "gru" else nn.LSTM if kind == "lstm" else nn.RNN
    return rnn(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional, dropout=dropout)


def decoder_cell(kind: str, input_size: int, hidden: int) -> nn.Module:
    """One decoder layer: ``nn.LSTMCell``, ``nn.GRUCell`` or tanh ``nn.RNNCell``."""
    if kind == "lstm":
        return nn.LSTMCell(input_size, hidden)
    if kind == "gru":
        return nn.GRUCell(input_size, hidden)
    return nn.RNNCell(input_size, hidden, nonlinearity="tanh")


def gru_update(rz: torch.Tensor, n_x: torch.Tensor, n_h: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's pointwise step in fp32: rz (B, 2H) reset and update pre-activations, n_x / n_h (B, H) the
    candidate's input and hidden projections, h (B, H) -> new h (B, H), as ``nn.GRUCell`` computes it."""
    r, z = torch.sigmoid(rz.float()).chunk(2, dim=1)  # (B, H) each
    n = torch.tanh(n_x.float() + r * n_h.float())
    return (1 - z) * n + z * h.float()


def gru_cell(cell: nn.GRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``cell(x, h)`` with its matmuls in the autocast dtype and its state in fp32: x (B, I), h (B, H)."""
    H = cell.hidden_size
    gi = F.linear(x, cell.weight_ih, cell.bias_ih).float()  # (B, 3H): r, z, n
    gh = F.linear(h, cell.weight_hh, cell.bias_hh).float()  # (B, 3H)
    return gru_update(gi[:, : 2 * H] + gh[:, : 2 * H], gi[:, 2 * H :], gh[:, 2 * H :], h)


def rnn_cell(cell: nn.RNNCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``cell(x, h)`` (tanh) with its matmuls in the autocast dtype and its state in fp32."""
    return torch.tanh(
        F.linear(x, cell.weight_ih, cell.bias_ih).float() + F.linear(h, cell.weight_hh, cell.bias_hh).float()
    )


def step(cell: nn.Module, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """A GRU or RNN decoder layer's step: x (B, I), h (B, H), c (B, 0) -> new h (B, H) fp32, c unchanged."""
    if isinstance(cell, nn.GRUCell):
        return gru_cell(cell, x, h), c
    return rnn_cell(cell, x, h), c


def gru_hoisted(cell: nn.GRUCell, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 0's teacher-forced input projection: emb (B, T, E) -> gates_x (B, T, 4H) fp32 (both biases
    included), and w_rec (4H, [H] + H), the weight of ``[feed; h]`` (the feed part only with input feeding):
    block rows [r, z] (input and hidden weights side by side), n's input part, n's hidden part."""
    H, E = cell.hidden_size, emb.size(-1)
    w_i, w_h, b_i, b_h = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    bias = torch.cat([b_i[: 2 * H] + b_h[: 2 * H], b_i[2 * H :]])  # (3H)
    gx = F.linear(emb, w_i[:, :E], bias).float()  # (B, T, 3H)
    gates_x = torch.cat([gx, b_h[2 * H :].float().expand(*gx.shape[:2], H)], dim=2)  # (B, T, 4H)
    return gates_x, gru_blocks(w_i[:, E:], w_h)  # w_rec (4H, [H] + H)


def gru_blocks(w_x: torch.Tensor, w_h: torch.Tensor) -> torch.Tensor:
    """The weight of ``[x; h]`` whose product gives a GRU's gates in the four blocks of :func:`gru_hoisted`:
    w_x (3H, I) the input weight's rows r, z, n, w_h (3H, H) the hidden weight's -> (4H, I + H)."""
    H, n_in = w_h.size(1), w_x.size(1)
    return torch.cat(
        [
            torch.cat([w_x[: 2 * H], w_h[: 2 * H]], dim=1),  # (2H, I + H)
            torch.cat([w_x[2 * H :], w_h.new_zeros(H, H)], dim=1),  # (H, I + H)
            torch.cat([w_x.new_zeros(H, n_in), w_h[2 * H :]], dim=1),  # (H, I + H)
        ]
    )


def joint_weights(cell: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoder layer's weight and bias for one matmul of ``[x; h]`` per step, built once per batch
    (teacher forcing): -> w_t (I + H, G) transposed, b (G,) both biases summed; G = 4H (LSTM, and GRU in
    the blocks of :func:`gru_hoisted`) or H (tanh RNN)."""
    w_i, w_h, b_i, b_h = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    if isinstance(cell, nn.GRUCell):
        H = cell.hidden_size
        bias = torch.cat([b_i[: 2 * H] + b_h[: 2 * H], b_i[2 * H :], b_h[2 * H :]])  # (4H)
        return gru_blocks(w_i, w_h).t(), bias
    return torch.cat([w_i, w_h], dim=1).t(), b_i + b_h


def joint_step(cell: nn.Module, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_t, b):
    """A decoder layer's step on the weights of :func:`joint_weights`: x (B, I), h/c (B, H) -> new h, c
    fp32, the numbers of :func:`lstm_cell` / :func:`step` up to float rounding (GRU/RNN: c unchanged)."""
    gates = torch.addmm(b, torch.cat([x, h], dim=1), w_t).float()  # (B, G)
    if isinstance(cell, nn.LSTMCell):
        return lstm_update(gates, c)
    return recur_update(cell, gates, h), c


def recur_update(cell: nn.Module, gates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """A GRU or RNN layer 0's new h (B, H) from its hoisted gates plus ``rec @ w_rec.T``: (B, 4H) for a GRU
    (the blocks of :func:`gru_hoisted`), (B, H) for a tanh RNN."""
    if isinstance(cell, nn.GRUCell):
        rz, n_x, n_h = gates.split([2 * cell.hidden_size, cell.hidden_size, cell.hidden_size], dim=1)
        return gru_update(rz, n_x, n_h, h)
    return torch.tanh(gates.float())
