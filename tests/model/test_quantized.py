"""The int8 model (seq2seq.model.quantized): every matmul int8, log-probs close to fp32 across
architectures, beam search mostly unchanged on a trained tiny model, its tensors saved and loaded give
the same outputs, a tied weight stored once, the file small."""

from __future__ import annotations

import io

import pytest
import torch
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
from conftest import random_ids, tiny_model
from torch import nn

from seq2seq.config.schema import DecodeConfig
from seq2seq.constants import BOS, EOS
from seq2seq.data.batches import source_tensor
from seq2seq.decode.search import decode
from seq2seq.errors import UserError
from seq2seq.model.quantized import Int8Decoder, Int8Encoder, from_int8_state, int8_state, quantize

ARCHITECTURES = {
    "default": {},
    "gru-decoder-2-layers": dict(dec_cell="gru", dec_layers=2),
    "rnn-decoder-lstm-encoder-general-untied": dict(
        dec_cell="rnn", enc_cell="lstm", attention="general", tie_embeddings=False
    ),
    "coverage": dict(coverage=True),
    "no-attention-forward-only": dict(attention="none", bidirectional=False),
    "dot-shared-embeddings": dict(attention="dot", enc_hidden=10, share_embeddings=True),
    "no-input-feeding-1-layer-encoder": dict(input_feeding=False, enc_layers=1),
}


def step_logprobs(model, ids, steps: int = 4, forced=None) -> list[torch.Tensor]:
    """Log-probs (B, V) of ``steps`` decoder steps, each fed the ``forced`` model's argmax (default its own)."""
    src, lengths = source_tensor(ids)
    out = []
    with torch.no_grad():
        state = model.encode(src, lengths)
        prev = torch.full((len(ids),), BOS)
        for t in range(steps):
            logp, state, _ = model.decode_step(prev, state)
            out.append(logp)
            prev = forced[t].argmax(1) if forced is not None else logp.argmax(1)
    return out


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_int8_logprobs_are_close_to_fp32(arch):
    model = tiny_model(**ARCHITECTURES[arch])
    ids = random_ids(8)
    fp32 = step_logprobs(model, ids)
    int8 = step_logprobs(quantize(model), ids, forced=fp32)
    for a, b in zip(fp32, int8):
        assert b.dtype == torch.float32
        assert (a - b).abs().max() < 0.08, (a - b).abs().max()  # log-probs spread over ~1 nat here
        assert (a - b).abs().mean() < 0.02


def test_every_matmul_is_int8_and_the_fp32_model_is_untouched():
    model = tiny_model(dec_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize(model)
    dec, enc = q.decoder, q.encoder
    int8_linears = [dec.bridge, dec.combine, dec.pre_output, dec.output, dec.attention.key_proj]
    int8_linears += [dec.attention.query_proj] + [m for cell in dec.cells for m in (cell.ih, cell.hh)]
    assert all(type(m) is nnqd.Linear for m in int8_linears)
    assert type(enc.rnn) is nnqd.GRU and type(enc.embed) is nnq.Embedding and type(dec.embed) is nnq.Embedding
    fp32_linears = {name for name, m in q.named_modules() if type(m) is nn.Linear}
    assert fp32_linears == {"decoder.attention.v"}  # a score vector (A -> 1), not a projection
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert type(quantize(tiny_model(enc_cell="lstm")).encoder.rnn) is nnqd.LSTM


def test_int8_layers_mirror_the_fp32_ones():
    """Int8Encoder/Int8Decoder set every attribute Encoder/Decoder set (Decoder's methods read them)."""
    model = tiny_model(coverage=True)
    q = quantize(model)
    for fp32, int8, kind in (
        (model.encoder, q.encoder, Int8Encoder),
        (model.decoder, q.decoder, Int8Decoder),
    ):
        assert isinstance(int8, kind)
        assert set(vars(fp32)) - {"training"} <= set(vars(int8))
        assert set(dict(fp32.named_children())) == set(dict(int8.named_children()))


def test_saved_tensors_load_to_the_same_outputs_and_a_tied_weight_is_stored_once():
    model = tiny_model()
    state = int8_state(model)
    assert state["decoder.output.weight"] is state["decoder.embed.weight"]
    assert state["decoder.output.weight"].dtype == torch.int8
    assert state["decoder.attention.v.weight"].dtype == torch.float32
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = from_int8_state(model.cfg, torch.load(buf, weights_only=True))
    ids = random_ids(6)
    direct = step_logprobs(quantize(model), ids)
    again = step_logprobs(loaded, ids)
    assert all(torch.equal(a, b) for a, b in zip(direct, again))


def test_int8_tensors_are_under_30_percent_of_the_fp32_parameters():
    model = tiny_model(vocab=600, emb_dim=128, enc_hidden=128, dec_hidden=256, attn_dim=128)

    def size(tensors) -> int:
        buf = io.BytesIO()
        torch.save(tensors, buf)
        return buf.tell()

    ratio = size(int8_state(model)) / size(model.state_dict())
    assert ratio <= 0.30, ratio


def test_an_int8_model_decodes_only_and_a_tanh_rnn_encoder_is_refused():
    q = quantize(tiny_model())
    src, lengths = source_tensor(random_ids(2))
    with pytest.raises(NotImplementedError, match="decodes"):
        q(src, lengths, torch.full((2, 3), BOS))
    with pytest.raises(UserError, match="GRU or LSTM encoder"):
        quantize(tiny_model(enc_cell="rnn"))
    with pytest.raises(UserError, match="do not match"):
        from_int8_state(tiny_model(dec_hidden=24).cfg, int8_state(tiny_model()))


def reverse_task_model() -> nn.Module:
    """A tiny model trained for a few seconds to reverse id sequences: peaked distributions, like a
    trained translation model's, so beam search has something to agree on."""
    torch.manual_seed(0)
    model = tiny_model(vocab=24, emb_dim=32, enc_hidden=32, dec_hidden=48, attn_dim=32).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(150):
        ids = random_ids(32, vocab=24, min_len=2, max_len=7, seed=step)
        src, lengths = source_tensor(ids)
        tgt = [x[::-1] + [EOS] for x in ids]
        width = max(map(len, tgt))
        tgt_out = torch.tensor([t + [0] * (width - len(t)) for t in tgt])
        tgt_in = torch.cat([torch.full((len(ids), 1), BOS), tgt_out[:, :-1]], dim=1)
        logits = model(src, lengths, tgt_in)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.slow
def test_beam_search_outputs_are_mostly_identical_on_a_trained_model():
    model = reverse_task_model()
    ids = random_ids(40, vocab=24, min_len=2, max_len=7, seed=999)
    src, lengths = source_tensor(ids)
    dc = DecodeConfig(beam_size=5)
    fp32 = [h[0].tokens for h in decode(model, src, lengths, dc)]
    int8 = [h[0].tokens for h in decode(quantize(model), src, lengths, dc)]
    assert sum(a == x[::-1] for a, x in zip(fp32, ids)) >= 20  # the model did learn the task
    assert sum(a == b for a, b in zip(fp32, int8)) >= 36, (fp32, int8)


def test_the_built_layers_hold_exactly_the_saved_int8_values():
    model = tiny_model()
    state = int8_state(model)
    q = from_int8_state(model.cfg, state)
    weight = q.decoder.output.weight()  # the prepacked layer's weight, unpacked
    assert torch.equal(weight.int_repr(), state["decoder.output.weight"])
    assert torch.allclose(weight.q_per_channel_scales().float(), state["decoder.output.weight_scale"])
    embedded = q.decoder.embed.weight()
    assert torch.equal(embedded.int_repr().int() - 128, state["decoder.embed.weight"].int())
