"""The architecture keys (model.enc_cell, dec_cell, bidirectional, attention none, coverage) and beam
search's coverage penalty: the default model unchanged, every variant trains, its hoisted teacher
forcing equals stepping decode_step, beam 1 equals greedy, ensembles and the compiled step decode."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from conftest import random_ids, tiny_model
from torch import nn

from seq2seq.config.schema import Config, DecodeConfig
from seq2seq.constants import BOS, EOS, PAD
from seq2seq.data.batches import collate, pad, source_tensor
from seq2seq.decode.search import beam_search, decode, greedy
from seq2seq.decode.translator import Ensemble, Translator, decode_ids
from seq2seq.errors import UserError
from seq2seq.model import cells
from seq2seq.model.compiled import CompiledDecoder, pad_state, training_loop

VOCAB = 40
ATOL = 1e-5
VARIANTS = {
    "enc-lstm": dict(enc_cell="lstm"),
    "enc-rnn": dict(enc_cell="rnn"),
    "dec-gru": dict(dec_cell="gru"),
    "dec-rnn": dict(dec_cell="rnn"),
    "dec-gru-2-layers-no-feeding": dict(dec_cell="gru", dec_layers=2, input_feeding=False),
    "dec-rnn-2-layers": dict(dec_cell="rnn", dec_layers=2, tie_embeddings=False),
    "unidirectional": dict(bidirectional=False),
    "unidirectional-dot": dict(bidirectional=False, attention="dot", dec_hidden=12, enc_layers=1),
    "attention-none": dict(attention="none"),
    "attention-none-gru": dict(attention="none", dec_cell="gru", enc_cell="lstm", bidirectional=False),
    "coverage": dict(coverage=True),
    "coverage-gru-2-layers": dict(coverage=True, dec_cell="gru", dec_layers=2, enc_cell="rnn"),
}
# what the slower checks (training, compiling) run: every key's non-default value at least once
COMBINED = {
    "lstm-enc-gru-dec-coverage": dict(enc_cell="lstm", dec_cell="gru", dec_layers=2, coverage=True),
    "rnn-rnn-unidirectional-none": dict(
        enc_cell="rnn", dec_cell="rnn", bidirectional=False, attention="none"
    ),
}


def model_of(variant: dict, seed: int = 0) -> nn.Module:
    model = tiny_model(seed, VOCAB, **variant)
    if model.cfg.coverage:  # a zero-initialised-looking w_c would hide coverage's effect: make it count
        with torch.no_grad():
            model.decoder.attention.coverage_proj.weight.mul_(5.0)
    return model


def batch(n: int = 5, seed: int = 11):
    src, lengths = source_tensor(random_ids(n, VOCAB, 1, 8, seed=seed))
    tgt = random_ids(n, VOCAB, 1, 7, seed=seed + 1)
    return src, lengths, pad(tgt, prefix=[BOS]), pad(tgt, suffix=[EOS])


def stepped(model, src, lengths, tgt_in) -> torch.Tensor:
    state = model.encode(src, lengths)
    out = []
    for t in range(tgt_in.size(1)):
        logp, state, _ = model.decode_step(tgt_in[:, t], state)
        out.append(logp)
    return torch.stack(out, dim=1)


# ---- the default model is today's ------------------------------------------------------------------


def test_default_model_builds_the_same_modules_in_the_same_order():
    """Same parameter names, shapes and RNG draws as the modules of the original code built in its order
    (so old checkpoints load and a seed gives the same model); the default forward path is unchanged."""
    model = tiny_model(0, VOCAB)  # emb 16, enc 12 x 2 layers, dec 20, attn 10, tied
    torch.manual_seed(0)
    E, He, H, A = 16, 12, 20, 10
    reference = [
        nn.Embedding(VOCAB, E, padding_idx=PAD),
        nn.GRU(E, He, 2, batch_first=True, bidirectional=True),
        nn.Embedding(VOCAB, E, padding_idx=PAD),
        nn.LSTMCell(E + H, H),
        nn.Linear(2 * He, A, bias=False),
        nn.Linear(H, A),
        nn.Linear(A, 1, bias=False),
        nn.Linear(2 * He, 2 * H),
        nn.Linear(2 * He + H, H, bias=False),
        nn.Linear(H, E, bias=False),
        nn.Linear(E, VOCAB),
    ]
    expected = [t for m in reference for t in m.state_dict().values()]
    expected[-2] = expected[1 + len(reference[1].state_dict())]  # output.weight is tied to decoder.embed
    names = list(model.state_dict())
    assert names[:2] == ["encoder.embed.weight", "encoder.rnn.weight_ih_l0"]
    assert names[17:] == [
        "decoder.embed.weight",
        "decoder.cells.0.weight_ih",
        "decoder.cells.0.weight_hh",
        "decoder.cells.0.bias_ih",
        "decoder.cells.0.bias_hh",
        "decoder.attention.key_proj.weight",
        "decoder.attention.query_proj.weight",
        "decoder.attention.query_proj.bias",
        "decoder.attention.v.weight",
        "decoder.bridge.weight",
        "decoder.bridge.bias",
        "decoder.combine.weight",
        "decoder.pre_output.weight",
        "decoder.output.weight",
        "decoder.output.bias",
    ]
    assert len(names) == len(expected)
    for name, got, want in zip(names, model.state_dict().values(), expected):
        assert got.shape == want.shape and torch.equal(got, want), name
    state = model.encode(*batch()[:2])
    assert state.coverage is None and state.c.shape == state.h.shape


# ---- the cells -----------------------------------------------------------------------------------


def test_gru_and_rnn_steps_equal_torchs_cells():
    torch.manual_seed(0)
    x, h = torch.randn(4, 7), torch.randn(4, 5)
    gru, rnn = nn.GRUCell(7, 5), nn.RNNCell(7, 5)
    assert torch.allclose(cells.gru_cell(gru, x, h), gru(x, h), atol=1e-6)
    assert torch.allclose(cells.rnn_cell(rnn, x, h), rnn(x, h), atol=1e-6)
    empty = torch.zeros(4, 0)
    assert cells.step(gru, x, h, empty)[1] is empty  # no cell state: c passes through
    assert (
        isinstance(cells.decoder_cell("rnn", 7, 5), nn.RNNCell)
        and cells.decoder_cell("rnn", 7, 5).nonlinearity == "tanh"
    )


@pytest.mark.parametrize("feed", [True, False])
def test_gru_hoisted_gates_equal_the_stepped_cell(feed):
    torch.manual_seed(1)
    E, H = 6, 5
    cell = nn.GRUCell(E + (H if feed else 0), H)
    emb, f, h = torch.randn(3, 4, E), torch.randn(3, H), torch.randn(3, H)
    gates_x, w_rec = cells.gru_hoisted(cell, emb)
    assert gates_x.shape == (3, 4, 4 * H) and w_rec.shape == (4 * H, (H if feed else 0) + H)
    rec = torch.cat([f, h], dim=1) if feed else h
    hoisted = cells.recur_update(cell, gates_x[:, 2] + rec @ w_rec.T, h)
    x = torch.cat([emb[:, 2], f], dim=1) if feed else emb[:, 2]
    assert torch.allclose(hoisted, cell(x, h), atol=1e-6)


# ---- every variant -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_hoisted_forward_equals_stepped_decode(variant):
    model = model_of(variant, seed=3)
    src, lengths, tgt_in, _ = batch()
    with torch.no_grad():
        hoisted = torch.log_softmax(model(src, lengths, tgt_in), dim=-1)
        steps = stepped(model, src, lengths, tgt_in)
    assert torch.allclose(hoisted, steps, atol=ATOL)


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_state_shapes_and_padding_invariance(variant):
    model = model_of(variant, seed=4)
    cfg = model.cfg
    src, lengths, tgt_in, _ = batch(4, seed=20)
    with torch.no_grad():
        state = model.encode(src, lengths)
        B, S = src.shape
        assert state.memory.shape == (B, S, cfg.memory_dim)
        assert state.c.shape == (
            (cfg.dec_layers, B, cfg.dec_hidden) if cfg.dec_cell == "lstm" else (cfg.dec_layers, B, 0)
        )
        assert (state.coverage is not None) == cfg.coverage
        _, new, attn = model.decode_step(torch.full((B,), BOS), state)
        assert attn.shape == (B, S) and (attn[~state.mask] == 0).all()
        alone = torch.log_softmax(model(src[1:2, : lengths[1]], lengths[1:2], tgt_in[1:2]), dim=-1)
        together = torch.log_softmax(model(src, lengths, tgt_in), dim=-1)
    assert torch.allclose(alone[0], together[1], atol=ATOL)
    if cfg.attention == "none":  # nothing attended: weights 0, the context is the encoder's final state
        assert (attn == 0).all()
        _, final = model.encoder(src, lengths)
        assert torch.equal(state.keys[:, 0], final) and torch.equal(state.keys[:, -1], final)
    else:
        assert torch.allclose(attn.sum(1), torch.ones(B), atol=1e-6)
    if cfg.coverage:
        assert torch.equal(new.coverage, attn) and not torch.allclose(state.coverage, new.coverage)


def test_unidirectional_encoder_final_state_is_its_last_real_step():
    model = model_of(dict(bidirectional=False, enc_cell="lstm"), seed=2)
    src, lengths = source_tensor(random_ids(6, VOCAB, 1, 9, seed=7))
    with torch.no_grad():
        memory, final = model.encoder(src, lengths)
    assert memory.size(2) == final.size(1) == model.cfg.enc_hidden
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(final[b], memory[b, n - 1], atol=1e-6)


def test_coverage_sums_the_attention_and_changes_the_scores():
    model = model_of(VARIANTS["coverage"], seed=5)
    plain = copy.deepcopy(model)
    plain.decoder.attention.coverage_proj.weight.data.zero_()  # w_c = 0: coverage has no effect
    src, lengths, tgt_in, _ = batch(3, seed=30)
    with torch.no_grad():
        state, total = model.encode(src, lengths), 0
        for t in range(tgt_in.size(1)):
            _, state, attn = model.decode_step(tgt_in[:, t], state)
            total = total + attn
        assert torch.allclose(state.coverage, total, atol=1e-6)
        sel = state.select(torch.tensor([2, 0]))
        assert torch.equal(sel.coverage, state.coverage[[2, 0]])
        assert torch.equal(state.reorder(torch.tensor([1, 0, 2])).coverage, state.coverage[[1, 0, 2]])
        assert not torch.allclose(model(src, lengths, tgt_in), plain(src, lengths, tgt_in), atol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_a_few_training_steps_lower_the_loss(variant):
    model = model_of(variant, seed=6).train()
    src, lengths, tgt_in, tgt_out = batch(6, seed=40)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(
            model(src, lengths, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD
        )
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_beam_one_is_greedy_and_ensembles_decode(variant):
    seqs = random_ids(10, VOCAB, 1, 8, seed=50)
    src, lengths = source_tensor(seqs)
    model, other = model_of(variant, seed=7), model_of(variant, seed=8)
    g = greedy(model, src, lengths, 1.5, 3, return_attention=True)
    b = beam_search(model, src, lengths, 1, 0.0, 1.5, 3, return_attention=True)
    assert [h.tokens for h in g] == [h[0].tokens for h in b]
    assert [h.logprob for h in g] == pytest.approx([h[0].logprob for h in b], abs=1e-4)
    assert all(x.attention.shape == y[0].attention.shape for x, y in zip(g, b))
    dc = DecodeConfig(beam_size=3, n_best=2, batch_size=4)
    alone = decode_ids(model, seqs, dc, torch.device("cpu"), return_attention=True)
    twice = decode_ids(Ensemble([model, copy.deepcopy(model)]), seqs, dc, torch.device("cpu"))
    assert [[h.tokens for h in hs] for hs in alone] == [[h.tokens for h in hs] for hs in twice]
    pair = decode_ids(Ensemble([model, other]), seqs, dc, torch.device("cpu"), return_attention=True)
    assert all(len(hs) == 2 and hs[0].attention.size(1) >= len(s) + 1 for hs, s in zip(pair, seqs))


# ---- compiled steps (aot_eager, as in tests/model/test_compiled.py) ----------------------------------------


@pytest.fixture
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("variant", list(COMBINED.values()), ids=list(COMBINED))
def test_compiled_training_and_search_give_the_eager_numbers(variant, _fresh_dynamo):
    eager = model_of(variant, seed=9).train()
    compiled = copy.deepcopy(eager)
    loop = training_loop(compiled, "default", backend="aot_eager")
    b = collate(random_ids(5, VOCAB, seed=1, max_len=20), random_ids(5, VOCAB, seed=2, max_len=12))
    for m, m_loop in ((eager, None), (compiled, loop)):
        m.zero_grad()
        logits = m(b.src, b.lengths, b.tgt_in, loop=m_loop)
        nn.functional.cross_entropy(logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name

    model = eager.eval()
    src, lengths = source_tensor(random_ids(6, VOCAB, seed=3, max_len=15))
    fast = CompiledDecoder(model, "default", backend="aot_eager")
    beta = 0.0 if model.cfg.attention == "none" else 0.3
    plain = beam_search(model, src, lengths, 3, 1.0, n_best=2, return_attention=True, coverage_penalty=beta)
    comp = beam_search(fast, src, lengths, 3, 1.0, n_best=2, return_attention=True, coverage_penalty=beta)
    for x, y in zip(plain, comp):
        assert [h.tokens for h in x] == [h.tokens for h in y]
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)
    assert [h.tokens for h in greedy(model, src, lengths)] == [h.tokens for h in greedy(fast, src, lengths)]


def test_pad_state_pads_the_coverage():
    model = model_of(VARIANTS["coverage"])
    src, lengths = source_tensor(random_ids(3, VOCAB, seed=1))
    state = model.encode(src, lengths)
    padded = pad_state(state, 8, 32)
    assert padded.coverage.shape == (8, 32) and not padded.coverage.any()


# ---- the coverage penalty ------------------------------------------------------------------------------

X, Y = 4, 5  # the two first pieces of the scripted model
STEP_LOGP = {BOS: {X: math.log(0.6), Y: math.log(0.4)}, X: {EOS: math.log(0.97)}, Y: {EOS: math.log(0.97)}}
# attention over the 3 source positions of ONE, by the previous piece: after X it stays on position 0
STEP_ATTN = {BOS: [0.98, 0.01, 0.01], X: [0.98, 0.01, 0.01], Y: [0.01, 0.5, 0.49]}
ONE = source_tensor([[6, 7]])  # 2 pieces + EOS


@dataclasses.dataclass
class _Rows:
    n: int

    def select(self, index):
        return _Rows(index.numel())

    def reorder(self, index):
        return self


class Scripted:
    """A model whose log-probabilities and attention depend on the previous piece only (STEP_LOGP and
    STEP_ATTN): X then EOS is the more likely output, but its attention covers position 0 only."""

    def encode(self, src, lengths):
        self.width = src.size(1)
        return _Rows(src.size(0))

    def decode_step(self, prev, state):
        logp = torch.full((prev.numel(), 12), -30.0)
        attn = torch.zeros(prev.numel(), self.width)  # (B, S): the first 3 positions only
        for row, p in enumerate(prev.tolist()):
            for tok, lp in STEP_LOGP.get(p, {EOS: 0.0}).items():
                logp[row, tok] = lp
            attn[row, :3] = torch.tensor(STEP_ATTN.get(p, [1 / 3] * 3))
        return logp, state, attn


def test_coverage_penalty_reranks_finished_hypotheses_by_their_coverage():
    model = Scripted()
    plain = beam_search(model, *ONE, beam_size=2, alpha=0.0, n_best=2)[0]
    assert [h.tokens for h in plain] == [[X], [Y]] and all(h.coverage_penalty == 0.0 for h in plain)
    assert plain[0].score == plain[0].logprob == pytest.approx(math.log(0.6 * 0.97), abs=1e-5)
    beta = 0.2
    penalised = beam_search(model, *ONE, beam_size=2, alpha=0.0, n_best=2, coverage_penalty=beta)[0]
    assert [h.tokens for h in penalised] == [[Y], [X]]  # Y's attention covers the whole source
    cov_x = [0.98 + 0.98, 0.02, 0.02]
    cov_y = [0.98 + 0.01, 0.01 + 0.5, 0.01 + 0.49]
    for h, cov in ((penalised[0], cov_y), (penalised[1], cov_x)):
        cp = beta * sum(math.log(min(c, 1.0)) for c in cov)
        assert h.coverage_penalty == pytest.approx(cp, abs=1e-5)
        assert h.score == pytest.approx(h.logprob + cp, abs=1e-5)
        assert h.rescore(1.0) == pytest.approx(
            h.logprob / ((5 + 2) / 6) + cp, abs=1e-5
        )  # tune-decode keeps it


def test_coverage_penalty_ignores_padding_and_is_for_beam_search_only():
    model = Scripted()
    src, lengths = source_tensor([[6, 7], [6, 7, 8, 9]])  # the first row is padded: its cp ignores padding
    hyps = beam_search(model, src[:1, :3], lengths[:1], 2, 0.0, n_best=1, coverage_penalty=0.2)
    padded = beam_search(model, src, lengths, 2, 0.0, n_best=1, coverage_penalty=0.2)
    assert hyps[0][0].tokens == padded[0][0].tokens == [Y]  # Scripted attends to the first 3 positions only
    assert math.isfinite(padded[0][0].coverage_penalty)
    assert padded[0][0].coverage_penalty == pytest.approx(hyps[0][0].coverage_penalty, abs=1e-6)
    dc = DecodeConfig(beam_size=1, n_best=1, coverage_penalty=5.0)
    (g,) = decode(model, *ONE, dc)[0]
    assert g.tokens == [X] and g.coverage_penalty == 0.0  # greedy search: no penalty
    sampled = decode(
        model, *ONE, dataclasses.replace(dc, sampling=True), generator=torch.Generator().manual_seed(0)
    )
    assert all(h.coverage_penalty == 0.0 for h in sampled[0])


def test_coverage_penalty_of_an_unattended_source_position_is_finite():
    model = Scripted()  # attends to the first 3 positions only: positions 3 and 4 of this source get 0
    hyps = beam_search(model, *source_tensor([[6, 7, 8, 9]]), 2, 0.0, n_best=2, coverage_penalty=0.2)[0]
    floor = math.log(torch.finfo(torch.float32).tiny)
    cov = [0.98 + 0.01, 0.01 + 0.5, 0.01 + 0.49]  # Y then EOS, the penalised best
    assert hyps[0].tokens == [Y]
    assert hyps[0].coverage_penalty == pytest.approx(0.2 * (sum(map(math.log, cov)) + 2 * floor), rel=1e-6)
    assert all(math.isfinite(h.score) for h in hyps) and hyps[0].score > hyps[1].score


def test_coverage_penalty_is_refused_when_any_ensemble_member_has_no_attention():
    plain, none = tiny_model(0, VOCAB), tiny_model(1, VOCAB, attention="none")
    for models in ([plain, none], [none, plain]):
        translator = Translator(models, None, None, Config(), torch.device("cpu"))
        assert translator.decode_config(coverage_penalty=0.0).coverage_penalty == 0.0
        member = 1 + models.index(none)
        with pytest.raises(UserError, match=f"ensemble member {member} of 2: .*model.attention is none"):
            translator.decode_config(coverage_penalty=0.2)
    alone = Translator([none], None, None, Config(), torch.device("cpu"))
    with pytest.raises(UserError, match="^config key 'decode.coverage_penalty' needs attention weights"):
        alone.decode_config(coverage_penalty=0.2)
    both = Translator([plain, copy.deepcopy(plain)], None, None, Config(), torch.device("cpu"))
    assert both.decode_config(coverage_penalty=0.2).coverage_penalty == 0.2


def test_coverage_penalty_zero_changes_nothing():
    model = tiny_model(2, VOCAB)
    src, lengths = source_tensor(random_ids(6, VOCAB, 1, 8, seed=60))
    a = beam_search(model, src, lengths, 4, 1.0, n_best=3, return_attention=True)
    b = decode(
        model, src, lengths, DecodeConfig(beam_size=4, n_best=3, coverage_penalty=0.0), return_attention=True
    )
    for x, y in zip(a, b):
        assert [(h.tokens, h.score, h.coverage_penalty) for h in x] == [(h.tokens, h.score, 0.0) for h in y]
