"""The int8 model for CPU decoding: torch's own dynamic quantization (``torch.ao``), no hand-written kernels.

What is int8: every linear layer (the bridge, the attention's key and query projections, the combine
layer, ``pre_output``, the output layer over the vocabulary) and every recurrent matmul (each decoder
layer's ``W_ih [emb; feed]`` and ``W_hh h``, the encoder's GRU/LSTM in both directions). Their weights
are int8 with one scale per output row (symmetric, ``torch.qint8``); their inputs are quantized on the
fly per call (``torch.ops.quantized.linear_dynamic``: one scale per input tensor), and they accumulate in
int32 and return fp32. The embeddings are int8 rows too (``torch.ao.nn.quantized.Embedding``, lookups
dequantized). What stays fp32: biases, the additive attention's score vector ``v`` and coverage weight
(a dot product and a scale, not projections), every nonlinearity, and the recurrences' states ``h`` /
``c`` (the gate arithmetic of :mod:`seq2seq.model.cells`).

An int8 model is a plain :class:`~seq2seq.model.network.Seq2Seq` for search (``encode`` /
``decode_step``) whose encoder and decoder are :class:`Int8Encoder` / :class:`Int8Decoder`: the fp32
classes' methods run unchanged over quantized layers. It cannot train (no gradients through int8).

Its parameters as plain tensors (:func:`int8_state`, what ``seq2seq quantize`` saves): the fp32
state_dict with each quantized weight ``NAME`` replaced by an int8 tensor ``NAME`` and its fp32 row
scales ``NAME_scale``; a weight the fp32 model ties (target embedding = output layer) is the same tensor
under both names, stored once. Prepacking (the engine's own layout: fbgemm/x86 or onednn) happens when
the model is built (:func:`from_int8_state`), so the file does not depend on the CPU that reads it.
:func:`quantize` is :func:`from_int8_state` of :func:`int8_state`: quantizing on load and loading a saved
file give the same model.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Optional

import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn
from torch.ao.quantization.observer import PerChannelMinMaxObserver

from seq2seq.config.schema import ModelConfig
from seq2seq.constants import PAD
from seq2seq.errors import UserError
from seq2seq.model import cells
from seq2seq.model.attention import Attention
from seq2seq.model.dropout import Dropout
from seq2seq.model.network import Decoder, Encoder, Seq2Seq, build_model

QUANTIZATION = "int8-dynamic"  # what a checkpoint's "quantization" names (seq2seq.runs.checkpoint)
SCALE = "_scale"  # NAME_scale: the fp32 row scales of the int8 weight NAME
FP32_WEIGHTS = ("decoder.attention.v.weight", "decoder.attention.coverage_proj.weight")


@contextlib.contextmanager
def _quiet():
    """torch 2.10+ warns that quantized tensor creation is deprecated (in favour of torchao): the
    torch.ao ops used here still run it; one warning per load would only be noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        yield


def check_supported(cfg: ModelConfig) -> None:
    """A UserError for what torch's dynamic quantization has no module for: a tanh-RNN encoder."""
    if cfg.enc_cell == "rnn":
        raise UserError(
            "int8 decoding needs a GRU or LSTM encoder (torch quantizes those); this model's "
            "model.enc_cell is rnn: decode it in fp32 or bf16"
        )


def is_quantized_weight(name: str, tensor: torch.Tensor) -> bool:
    """Whether the fp32 state_dict entry ``name`` becomes int8: every 2-D weight but attention's v/coverage."""
    return tensor.dim() == 2 and ".weight" in name and name not in FP32_WEIGHTS


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight (N, K) fp32 -> (int8 (N, K), fp32 scales (N,)): symmetric per-row quantization as torch's
    per-channel weight observer computes it (weight ~ int8 * scale)."""
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    w = weight.detach().float().cpu()
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    q = torch.quantize_per_channel(w, scale.double(), zero_point, 0, torch.qint8)
    return q.int_repr(), scale.float()


def int8_state(model: Seq2Seq) -> dict[str, torch.Tensor]:
    """The int8 model's tensors from an fp32 model: quantized weights as int8 plus ``NAME_scale``, every
    other tensor fp32 as it is; a tied weight quantized once (the same tensor under each name)."""
    check_supported(model.cfg)
    out: dict[str, torch.Tensor] = {}
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # data_ptr -> (int8, scale): tied weights
    with _quiet():
        for name, t in model.state_dict().items():
            if not is_quantized_weight(name, t):
                out[name] = t.detach().float().cpu().clone()
                continue
            key = t.data_ptr()
            if key not in done:
                done[key] = int8_rows(t)
            out[name], out[name + SCALE] = done[key]
    return out


def _rows(state: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the weight int8 * scale in fp32 (N, K), the scales (N,) in float64) of the int8 weight ``name``:
    quantizing it again with those scales gives back exactly the int8 values."""
    q, scale = state[name], state[name + SCALE]
    if q.dtype != torch.int8 or scale.dim() != 1 or scale.numel() != q.size(0):
        raise UserError(f"int8 weights: {name} is not an int8 tensor with one scale per row")
    return q.float() * scale.float().unsqueeze(1), scale.double()


def _qweight(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The quantized tensor (torch.qint8, symmetric per-row scales) of the int8 weight ``name``."""
    w, scale = _rows(state, name)
    return torch.quantize_per_channel(w, scale, torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)


def linear(state: dict, prefix: str) -> nnqd.Linear:
    """A dynamically quantized ``nn.Linear`` from ``prefix.weight`` (int8) and ``prefix.bias`` (if any)."""
    w = _qweight(state, prefix + ".weight")
    bias = state.get(prefix + ".bias")
    layer = nnqd.Linear(w.size(1), w.size(0), bias_=bias is not None, dtype=torch.qint8)
    layer.set_weight_bias(w, bias)
    return layer


def embedding(state: dict, name: str, padding_idx: Optional[int]) -> nnq.Embedding:
    """An int8-row embedding (``torch.ao.nn.quantized.Embedding``, quint8 with per-row scale and offset
    128: the same numbers as the int8 rows) from the int8 weight ``name``."""
    w, scale = _rows(state, name)
    zero = torch.full_like(scale, 128.0)  # float zero points: the per-row "float qparams" embeddings take
    w = torch.quantize_per_channel(w, scale, zero, 0, torch.quint8)
    layer = nnq.Embedding(w.size(0), w.size(1), padding_idx=padding_idx, dtype=torch.quint8)
    layer.set_weight(w)
    return layer


def recurrent(state: dict, prefix: str, rnn_cfg: ModelConfig, input_size: int) -> nn.Module:
    """The encoder's ``nn.GRU`` / ``nn.LSTM`` as torch's dynamically quantized module (batch first)."""
    kind = nnqd.GRU if rnn_cfg.enc_cell == "gru" else nnqd.LSTM
    layers, bidirectional = rnn_cfg.enc_layers, rnn_cfg.bidirectional
    rnn = kind(
        input_size,
        rnn_cfg.enc_hidden,
        layers,
        batch_first=True,
        bidirectional=bidirectional,
        dropout=rnn_cfg.dropout if layers > 1 else 0.0,
        dtype=torch.qint8,
    )
    names = [
        f"{w}_l{k}{s}"
        for k in range(layers)
        for s in ["", "_reverse"][: 2 if bidirectional else 1]
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    rnn.set_weight_bias(
        {
            n: _qweight(state, f"{prefix}.{n}") if n.startswith("weight") else state[f"{prefix}.{n}"]
            for n in names
        }
    )
    return rnn


class Int8Cell(nn.Module):
    """One decoder layer with int8 matmuls: ``W_ih x + b_ih`` and ``W_hh h + b_hh`` (separate, so the input
    and the state each get their own activation scale), then the fp32 gate arithmetic of
    :mod:`seq2seq.model.cells` for ``kind`` (lstm, gru, rnn)."""

    def __init__(self, kind: str, ih: nnqd.Linear, hh: nnqd.Linear):
        super().__init__()
        self.kind, self.ih, self.hh = kind, ih, hh

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """x (B, I), h (B, H), c (B, H) (GRU/RNN: (B, 0)) -> new h, c fp32."""
        gi, gh = self.ih(x.float()), self.hh(h.float())  # (B, G*H) each, G = 4 / 3 / 1
        if self.kind == "lstm":
            return cells.lstm_update(gi + gh, c)
        if self.kind == "gru":
            H = h.size(1)
            return cells.gru_update(gi[:, : 2 * H] + gh[:, : 2 * H], gi[:, 2 * H :], gh[:, 2 * H :], h), c
        return torch.tanh(gi + gh), c


class Int8Attention(Attention):
    """:class:`Attention` whose key and query projections are int8 (``v`` and coverage stay fp32)."""

    def __init__(self, cfg: ModelConfig, state: dict):
        nn.Module.__init__(self)
        self.kind = cfg.attention
        p = "decoder.attention."
        if self.kind in ("additive", "general"):
            self.key_proj = linear(state, p + "key_proj")
        if self.kind == "additive":
            self.query_proj = linear(state, p + "query_proj")
            self.v = _fp32_linear(state, p + "v")
            self.coverage_proj = _fp32_linear(state, p + "coverage_proj") if cfg.coverage else None


def _fp32_linear(state: dict, prefix: str) -> nn.Linear:
    w, b = state[prefix + ".weight"], state.get(prefix + ".bias")
    layer = nn.Linear(w.size(1), w.size(0), bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
    return layer


class Int8Encoder(Encoder):
    """:class:`Encoder` with an int8 embedding and torch's dynamically quantized GRU/LSTM (it takes the
    packed-sequence path of :meth:`Encoder.forward`). Built from the int8 state, not from layers."""

    def __init__(self, cfg: ModelConfig, state: dict):
        nn.Module.__init__(self)  # the same attributes as Encoder.__init__, each int8 where it is a matmul
        self.embed = embedding(state, "encoder.embed.weight", PAD)
        self.rnn = recurrent(state, "encoder.rnn", cfg, cfg.emb_dim)
        self.drop = Dropout(0.0)
        self.between_layers = Dropout(0.0)
        self.layers, self.directions = cfg.enc_layers, 2 if cfg.bidirectional else 1


class Int8Decoder(Decoder):
    """:class:`Decoder` for search with int8 layers: :meth:`cell_step` runs :class:`Int8Cell`; init_state,
    finish_step and logits are Decoder's own. Teacher forcing (training) is not available."""

    def __init__(self, cfg: ModelConfig, state: dict):
        nn.Module.__init__(self)  # the same attributes as Decoder.__init__, each int8 where it is a matmul
        H, E = cfg.dec_hidden, cfg.emb_dim
        self.layers, self.hidden, self.emb_dim, self.input_feeding = cfg.dec_layers, H, E, cfg.input_feeding
        self.lstm, self.coverage = cfg.dec_cell == "lstm", cfg.coverage
        self.embed = embedding(state, "decoder.embed.weight", PAD)
        p = "decoder.cells."
        self.cells = nn.ModuleList(
            [
                Int8Cell(
                    cfg.dec_cell, linear_named(state, f"{p}{i}", "ih"), linear_named(state, f"{p}{i}", "hh")
                )
                for i in range(cfg.dec_layers)
            ]
        )
        self.attention = Int8Attention(cfg, state)
        self.bridge = linear(state, "decoder.bridge")
        self.combine = linear(state, "decoder.combine")
        self.pre_output = linear(state, "decoder.pre_output") if cfg.tie_embeddings else None
        self.output = linear(state, "decoder.output")
        self.drop = Dropout(0.0)

    def cell_step(self, i: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """Layer ``i``'s step: x (B, I), h/c (B, H) -> new h, c fp32 (GRU/RNN: c (B, 0) unchanged)."""
        return self.cells[i](x, h, c)

    def forward(self, tgt_in, state, loop=None):
        raise NotImplementedError("an int8 model decodes (encode / decode_step); it does not train")


def linear_named(state: dict, prefix: str, part: str) -> nnqd.Linear:
    """A decoder cell's int8 ``weight_{part}`` with ``bias_{part}`` (part: ih or hh) as one linear layer."""
    view = {f"{prefix}.x.weight": state[f"{prefix}.weight_{part}"]}
    view[f"{prefix}.x.weight{SCALE}"] = state[f"{prefix}.weight_{part}{SCALE}"]
    view[f"{prefix}.x.bias"] = state[f"{prefix}.bias_{part}"]
    return linear(view, f"{prefix}.x")


def check_state(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """A UserError unless ``state`` holds every tensor of ``cfg``'s model in its shape (int8 with row
    scales where :func:`is_quantized_weight`), as an fp32 model built on the meta device lays them out."""
    vocab = [state[k].size(0) for k in ("encoder.embed.weight", "decoder.output.weight") if k in state]
    if len(vocab) < 2:
        raise UserError("int8 weights do not match the model's config (no embedding or output layer)")
    with torch.device("meta"):
        layout = build_model(cfg, *vocab).state_dict()
    for name, t in layout.items():
        mine = state.get(name)
        int8 = is_quantized_weight(name, t)
        if mine is None or mine.shape != t.shape or (int8 and (name + SCALE) not in state):
            got = "missing" if mine is None else f"{tuple(mine.shape)}"
            raise UserError(
                f"int8 weights do not match the model's config ({name}: {got}, the config gives {tuple(t.shape)})"
            )


def from_int8_state(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> Seq2Seq:
    """The int8 model (eval mode, CPU) from :func:`int8_state`'s tensors, checked against ``cfg`` first."""
    check_supported(cfg)
    check_state(cfg, state)
    with _quiet():
        model = Seq2Seq(cfg, Int8Encoder(cfg, state), Int8Decoder(cfg, state))
    return model.eval()


def quantize(model: Seq2Seq) -> Seq2Seq:
    """A new int8 model (CPU, eval mode) with ``model``'s weights; ``model`` is left as it is."""
    return from_int8_state(model.cfg, int8_state(model))


def is_int8(model) -> bool:
    """Whether ``model`` is an int8 model built here."""
    return isinstance(getattr(model, "decoder", None), Int8Decoder)
