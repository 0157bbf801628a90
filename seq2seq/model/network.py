"""Bidirectional-GRU encoder, attention LSTM decoder with input feeding.

Those are the defaults; ``model.enc_cell`` / ``dec_cell`` pick GRU, LSTM or tanh-RNN recurrences
(:mod:`seq2seq.model.cells`), ``bidirectional: false`` a forward-only encoder (memory enc_hidden wide),
``attention: none`` the plain encoder-decoder and ``coverage`` the coverage-scored additive attention
(:mod:`seq2seq.model.attention`).

The model exposes :meth:`Seq2Seq.encode` and :meth:`Seq2Seq.decode_step` for search, and a
training :meth:`Seq2Seq.forward` that gives the same numbers as stepping ``decode_step`` with
teacher forcing but hoists everything that does not depend on the previous step out of the
time loop: the first LSTM layer's input projection of all target embeddings, the attention
keys, and the output layer (computed once over all positions).

Mixed precision (autocast): matmuls run in the autocast dtype, but the recurrences do not. The
encoder's RNN runs with autocast disabled (CUDA autocast would run cuDNN's RNN in fp16 even under
bf16, where no loss scaler guards its gradients; the CPU GRU takes bf16 matmuls with fp32 gates and
state under CPU bf16 autocast, :mod:`seq2seq.model.encoder_gru`), and every LSTM layer of the decoder does its gate
arithmetic and carries ``h``/``c`` in fp32 (:func:`seq2seq.model.cells.lstm_cell`): a bf16 cell state summed over 100
positions loses what small updates it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config.schema import ModelConfig
from seq2seq.constants import EOS, PAD, UNK
from seq2seq.model import cells, precision, teacher_forcing
from seq2seq.model.attention import Attention
from seq2seq.model.dropout import Dropout
from seq2seq.model.encoder_gru import padded_gru


@dataclass
class DecoderState:
    """Everything a decoder step needs; every tensor's first (or second, for h/c) dim is the batch."""

    h: torch.Tensor  # (L, B, H) hidden states
    c: torch.Tensor  # (L, B, H) LSTM cell states; (L, B, 0) for GRU/RNN decoders (no cell state)
    feed: torch.Tensor  # (B, H) previous attentional vector (input feeding)
    memory: torch.Tensor  # (B, S, M) encoder outputs, M = 2He (He without bidirectional)
    keys: torch.Tensor  # (B, S, K) projected attention keys (attention none: the encoder's final state)
    mask: torch.Tensor  # (B, S) True at real source tokens
    coverage: Optional[torch.Tensor] = None  # (B, S) attention weights summed so far; None without coverage

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Rows ``index`` (N,) of every tensor: expands beams, drops finished sentences."""
        return DecoderState(
            self.h.index_select(1, index),
            self.c.index_select(1, index),
            self.feed.index_select(0, index),
            self.memory.index_select(0, index),
            self.keys.index_select(0, index),
            self.mask.index_select(0, index),
            None if self.coverage is None else self.coverage.index_select(0, index),
        )

    def reorder(self, index: torch.Tensor) -> "DecoderState":
        """Rows ``index`` (N = B,) of the recurrent tensors only, for an ``index`` that moves rows within
        blocks of identical source rows (beams of one sentence): memory, keys and mask stay as they are."""
        return DecoderState(
            self.h.index_select(1, index),
            self.c.index_select(1, index),
            self.feed.index_select(0, index),
            self.memory,
            self.keys,
            self.mask,
            None if self.coverage is None else self.coverage.index_select(0, index),
        )


class Encoder(nn.Module):
    def __init__(self, vocab: int, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab, cfg.emb_dim, padding_idx=PAD)
        self.rnn = cells.encoder_rnn(
            cfg.enc_cell,
            cfg.emb_dim,
            cfg.enc_hidden,
            cfg.enc_layers,
            cfg.bidirectional,
            cfg.dropout if cfg.enc_layers > 1 else 0.0,
        )
        self.drop = Dropout(cfg.dropout)
        self.between_layers = Dropout(self.rnn.dropout)  # the CPU GRU's (seq2seq.model.encoder_gru)
        self.layers, self.directions = cfg.enc_layers, 2 if cfg.bidirectional else 1

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) ids, lengths (B,) -> outputs (B, S, M) zero at padding, final (B, M); M = 2He
        (bidirectional) or He. final: the last layer's last hidden state of each direction.

        The padding never enters the recurrence, in either direction: packed sequences, or on the CPU
        a GRU's padded recurrence that skips it (:mod:`seq2seq.model.encoder_gru`, same numbers, faster).
        """
        x = self.drop(self.embed(src)).float()  # (B, S, E)
        low = precision.cpu_matmul_dtype()  # the CPU GRU's matmuls: bf16 under CPU bf16 autocast
        with torch.autocast(src.device.type, enabled=False):  # fp32 (TF32 on GPUs), never fp16
            if src.device.type == "cpu" and isinstance(self.rnn, nn.GRU):
                out, h = padded_gru(self.rnn, x, lengths, self.between_layers, low)  # (B, S, M)
            else:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, h = self.rnn(packed)  # h: (layers * directions, B, He); an LSTM's is (h, c)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, M)
        h = h[0] if isinstance(h, tuple) else h
        last = h.view(self.layers, self.directions, h.size(1), h.size(2))[-1]  # (dirs, B, He): last layer
        return self.drop(out), torch.cat([last[0], last[1]], dim=1) if self.directions == 2 else last[0]


class Decoder(nn.Module):
    def __init__(self, vocab: int, cfg: ModelConfig):
        super().__init__()
        H, E, M = cfg.dec_hidden, cfg.emb_dim, cfg.memory_dim
        self.layers, self.hidden, self.emb_dim, self.input_feeding = cfg.dec_layers, H, E, cfg.input_feeding
        self.lstm, self.coverage = cfg.dec_cell == "lstm", cfg.coverage  # GRU/RNN: seq2seq.model.cells
        self.embed = nn.Embedding(vocab, E, padding_idx=PAD)
        self.cells = nn.ModuleList(
            [
                cells.decoder_cell(cfg.dec_cell, E + (H if cfg.input_feeding else 0) if i == 0 else H, H)
                for i in range(cfg.dec_layers)
            ]
        )
        self.attention = Attention(cfg.attention, H, M, cfg.attn_dim, cfg.coverage)
        # encoder final state -> every layer's (h, c); GRU/RNN: h only
        self.bridge = nn.Linear(M, (2 if self.lstm else 1) * cfg.dec_layers * H)
        self.combine = nn.Linear(M + H, H, bias=False)  # attentional vector tanh(W [ctx; h])
        self.pre_output = nn.Linear(H, E, bias=False) if cfg.tie_embeddings else None
        self.output = nn.Linear(E if cfg.tie_embeddings else H, vocab)  # tied to embed by build_model
        self.drop = Dropout(cfg.dropout)

    def init_state(self, memory: torch.Tensor, final: torch.Tensor, mask: torch.Tensor) -> DecoderState:
        B = memory.size(0)
        hc = torch.tanh(self.bridge(final)).view(B, -1, self.layers, self.hidden)  # (B, 2 or 1, L, H)
        h = hc[:, 0].transpose(0, 1).float().contiguous()  # (L, B, H), fp32 even under autocast
        c = hc[:, 1].transpose(0, 1).float().contiguous() if self.lstm else h.new_zeros(self.layers, B, 0)
        feed = memory.new_zeros(B, self.hidden)
        coverage = mask.new_zeros(mask.shape, dtype=torch.float32) if self.coverage else None  # (B, S)
        device = memory.device.type
        if torch.is_autocast_enabled(device):  # once here, not at every position's context bmm
            memory = memory.to(torch.get_autocast_dtype(device))
        keys = self.attention.project_keys(memory, final)
        return DecoderState(h, c, feed, memory, keys, mask, coverage)

    def cell_step(self, i: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Layer ``i``'s step: x (B, I), h/c (B, H) -> new h, c fp32 (GRU/RNN: c (B, 0) unchanged)."""
        if self.lstm:
            return cells.lstm_cell(self.cells[i], x, h, c)
        return cells.step(self.cells[i], x, h, c)

    def finish_step(self, h0, c0, state: DecoderState):
        """Layers 1..L-1 on top of layer 0's new (h0, c0), then attention. Returns the new state's pieces
        (the attention weights (B, S): add them to the coverage with :func:`add_coverage`)."""
        hs, cs, x = [h0], [c0], h0
        for i in range(1, self.layers):
            h, c = self.cell_step(i, self.drop(x), state.h[i], state.c[i])
            hs.append(h), cs.append(c)
            x = h
        # (B, M), (B, S)
        context, weights = self.attention(x, state.keys, state.memory, state.mask, state.coverage)
        feed = self.drop(torch.tanh(self.combine(torch.cat([context, x], dim=1))))  # (B, H)
        return torch.stack(hs), torch.stack(cs), feed, weights

    def logits(self, feed: torch.Tensor) -> torch.Tensor:
        """(..., H) attentional vectors -> (..., V) output scores."""
        return self.output(self.pre_output(feed) if self.pre_output is not None else feed)

    def forward(self, tgt_in: torch.Tensor, state: DecoderState, loop=None) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> attentional vectors (B, T, H), equal to stepping decode_step.

        Why it exists: training hoists what does not depend on the previous step. Layer 0's input
        projection of all embeddings (and both biases) is one matmul; each position then adds one
        matmul of [feed; h] against the concatenated recurrent weights (:meth:`recur_step`).
        ``loop(gates_x, w_rec, state) -> feeds`` runs the positions: by default on the CPU the default
        decoder's one-node loop (:mod:`seq2seq.model.teacher_forcing`, same numbers, faster backward), else
        :func:`run_positions` over :meth:`recur_step`; seq2seq.model.compiled passes one with a compiled step.
        """
        cell, E = self.cells[0], self.emb_dim
        emb = self.drop(self.embed(tgt_in))  # (B, T, E)
        if isinstance(cell, nn.GRUCell):  # gates in four blocks (see seq2seq.model.cells)
            gates_x, w_rec = cells.gru_hoisted(cell, emb)  # (B, T, 4H), (4H, [H] + H)
        else:  # LSTM (a tanh RNN sums its projections the same way, with H gates)
            gates_x = F.linear(emb, cell.weight_ih[:, :E], cell.bias_ih + cell.bias_hh).float()  # (B, T, 4H)
            w_rec = torch.cat([cell.weight_ih[:, E:], cell.weight_hh], dim=1)  # (4H, [H] + H); RNN: H rows
        if loop is None and teacher_forcing.applies(self, tgt_in.device):
            return teacher_forcing.run(self, gates_x, w_rec, state)
        if loop is None:
            return run_positions(self.recur_step, gates_x, w_rec, state)
        return loop(gates_x, w_rec, state)

    def recur_step(self, gx, w_rec, feed, h, c, memory, keys, mask, coverage=None):
        """One teacher-forced position on plain tensors (what training compiles): gx (B, 4H) layer 0's
        input gates, w_rec (4H, [H] + H), feed (B, H), h/c (L, B, H), memory (B, S, M), keys (B, S, K),
        mask (B, S), coverage (B, S) or None -> new feed, h, c, coverage."""
        rec = torch.cat([feed, h[0]], dim=1) if self.input_feeding else h[0]
        gates = gx.float() + F.linear(rec, w_rec).float()  # (B, 4H) in fp32 (tanh RNN: (B, H))
        if self.lstm:
            h0, c0 = cells.lstm_update(gates, c[0])
        else:  # GRU/RNN: no cell state
            h0, c0 = cells.recur_update(self.cells[0], gates, h[0]), c[0]
        h, c, feed, weights = self.finish_step(h0, c0, DecoderState(h, c, feed, memory, keys, mask, coverage))
        return feed, h, c, add_coverage(coverage, weights)


def add_coverage(coverage: Optional[torch.Tensor], weights: torch.Tensor) -> Optional[torch.Tensor]:
    """The coverage after a step: coverage (B, S) + that step's attention weights (B, S); None stays None."""
    return None if coverage is None else coverage + weights


def run_positions(step_fn, gates_x: torch.Tensor, w_rec: torch.Tensor, state: DecoderState) -> torch.Tensor:
    """gates_x (B, T, 4H) -> attentional vectors (B, T, H): ``step_fn`` (a :meth:`Decoder.recur_step`)
    once per target position, carrying feed, h, c and coverage."""
    feed, h, c, coverage = state.feed, state.h, state.c, state.coverage
    w_rec_use = precision.autocast_uses(w_rec)  # cast once; gradients summed in fp32
    feeds = []
    # position-major: every gx (B, 4H) is contiguous whatever T is (a compiled step guards on strides);
    # unbind is one backward node, not T full-size zero-filled gradients
    for gx in gates_x.transpose(0, 1).contiguous().unbind(0):
        feed, h, c, coverage = step_fn(
            gx, w_rec_use(), feed, h, c, state.memory, state.keys, state.mask, coverage
        )
        feeds.append(feed)
    return torch.stack(feeds, dim=1)  # (B, T, H)


class Seq2Seq(nn.Module):
    """Encoder + decoder; :func:`build_model` builds and wires them (embedding tying and sharing)."""

    def __init__(self, cfg: ModelConfig, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = encoder, decoder

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        """src (B, S) ids (each row ends with EOS), lengths (B,) -> the initial decoder state (search API)."""
        if self.training and self.cfg.word_dropout > 0:  # source word dropout: training only
            drop = (
                (torch.rand(src.shape, device=src.device) < self.cfg.word_dropout)
                & (src != PAD)
                & (src != EOS)
            )
            src = src.masked_fill(drop, UNK)
        mask = src != PAD  # (B, S)
        memory, final = self.encoder(src, lengths)
        return self.decoder.init_state(memory, final, mask)

    def decode_step(self, prev: torch.Tensor, state: DecoderState):
        """prev (B,) previous target ids -> log-probs (B, V) float32, new state, attention (B, S) (search API)."""
        logp, h, c, feed, weights, coverage = self.step_tensors(
            prev, state.h, state.c, state.feed, state.memory, state.keys, state.mask, state.coverage
        )
        return logp, DecoderState(h, c, feed, state.memory, state.keys, state.mask, coverage), weights

    def step_tensors(self, prev, h, c, feed, memory, keys, mask, coverage=None):
        """:meth:`decode_step` on plain tensors, for compiling (dynamo and CUDA graphs take tensors):
        -> log-probs (B, V), h, c (L, B, H), feed (B, H), attention (B, S), coverage (B, S) or None."""
        dec = self.decoder
        emb = dec.drop(dec.embed(prev))  # (B, E)
        x = torch.cat([emb, feed], dim=1) if dec.input_feeding else emb
        h0, c0 = dec.cell_step(0, x, h[0], c[0])
        state = DecoderState(h, c, feed, memory, keys, mask, coverage)
        h, c, feed, weights = dec.finish_step(h0, c0, state)
        logp = torch.log_softmax(dec.logits(feed).float(), dim=-1)
        return logp, h, c, feed, weights, add_coverage(coverage, weights)

    def forward(
        self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor, loop=None
    ) -> torch.Tensor:
        """Teacher-forced scores (training): src (B, S), lengths (B,), tgt_in (B, T) starting with BOS
        -> (B, T, V). ``loop``: how the decoder runs its positions (see :meth:`Decoder.forward`)."""
        return self.decoder.logits(self.decoder(tgt_in, self.encode(src, lengths), loop))


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    """Build the encoder and decoder and wire their embeddings: the target embedding is the output
    layer's weight (``tie_embeddings``), and with ``share_embeddings`` one embedding serves both sides."""
    encoder, decoder = Encoder(src_vocab, cfg), Decoder(tgt_vocab, cfg)
    if cfg.tie_embeddings:
        decoder.output.weight = decoder.embed.weight
    if cfg.share_embeddings:
        if src_vocab != tgt_vocab:
            raise ValueError("share_embeddings needs one joint vocabulary")
        decoder.embed.weight = encoder.embed.weight
        if cfg.tie_embeddings:
            decoder.output.weight = encoder.embed.weight
    return Seq2Seq(cfg, encoder, decoder)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
