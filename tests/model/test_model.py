"""Seq2Seq: padding invariance, hoisted forward == stepped decode, embedding sharing, word dropout."""

from __future__ import annotations

import collections
import itertools

import pytest
import torch
from conftest import random_ids, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

from seq2seq.config.schema import ModelConfig
from seq2seq.constants import BOS, EOS, PAD, UNK
from seq2seq.data.batches import pad, source_tensor
from seq2seq.model.network import DecoderState, Seq2Seq, build_model, count_parameters, run_positions

VOCAB = 40
ATOL = 1e-5


def model_for(kind: str = "additive", seed: int = 0, **overrides) -> Seq2Seq:
    if kind == "dot":  # dot attention needs dec_hidden == 2 * enc_hidden
        overrides.setdefault("dec_hidden", 2 * overrides.get("enc_hidden", 12))
    return tiny_model(seed, VOCAB, attention=kind, **overrides)


def stepped_logprobs(model: Seq2Seq, src, lengths, tgt_in) -> torch.Tensor:
    """(B, T, V) log-probs from T calls of decode_step with teacher forcing."""
    state = model.encode(src, lengths)
    out = []
    for t in range(tgt_in.size(1)):
        logp, state, _ = model.decode_step(tgt_in[:, t], state)
        out.append(logp)
    return torch.stack(out, dim=1)


# ---- padding invariance ------------------------------------------------------------------------


@pytest.mark.parametrize("kind,enc_layers", [("additive", 2), ("dot", 1), ("general", 2)])
def test_encoder_and_decoder_are_padding_invariant(kind, enc_layers):
    model = model_for(kind, seed=1, enc_layers=enc_layers)
    short_src, short_tgt = [5, 9, 17], [7, 8, 30, 11]
    srcs = [random_ids(1, VOCAB, 8, 8, seed=2)[0], short_src, random_ids(1, VOCAB, 6, 6, seed=3)[0]]
    tgts = [random_ids(1, VOCAB, 9, 9, seed=4)[0], short_tgt, random_ids(1, VOCAB, 2, 2, seed=5)[0]]
    n, T = len(short_src) + 1, len(short_tgt) + 1

    with torch.no_grad():
        src1, len1 = source_tensor([short_src])
        tgt1 = pad([short_tgt], prefix=[BOS])
        alone = model.encode(src1, len1)
        alone_scores = torch.log_softmax(model(src1, len1, tgt1), dim=-1)

        src, lengths = source_tensor(srcs)
        tgt_in = pad(tgts, prefix=[BOS])
        assert src.size(1) > n and tgt_in.size(1) > T  # the short sentence really is padded
        batch = model.encode(src, lengths)
        batch_scores = torch.log_softmax(model(src, lengths, tgt_in), dim=-1)
        batch_stepped = stepped_logprobs(model, src, lengths, tgt_in)

    assert torch.allclose(batch.memory[1, :n], alone.memory[0], atol=ATOL)
    assert (batch.memory[1, n:] == 0).all(), "encoder outputs are zero at padding"
    assert torch.equal(batch.mask[1], torch.arange(src.size(1)) < n)
    assert torch.allclose(batch.keys[1, :n], alone.keys[0], atol=ATOL)
    assert torch.allclose(batch.h[:, 1], alone.h[:, 0], atol=ATOL)
    assert torch.allclose(batch.c[:, 1], alone.c[:, 0], atol=ATOL)
    assert torch.allclose(batch_scores[1, :T], alone_scores[0], atol=ATOL)
    assert torch.allclose(batch_stepped[1, :T], alone_scores[0], atol=ATOL)


def test_encoder_final_state_is_last_real_step_of_each_direction():
    """Packed GRU: the forward direction ends at the last real token, the backward one at position 0."""
    model = model_for(seed=2, enc_layers=2)
    He = model.cfg.enc_hidden
    src, lengths = source_tensor(random_ids(6, VOCAB, 1, 9, seed=7))
    with torch.no_grad():
        memory, final = model.encoder(src, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(final[b, :He], memory[b, n - 1, :He], atol=1e-6)
        assert torch.allclose(final[b, He:], memory[b, 0, He:], atol=1e-6)


# ---- hoisted forward == stepping decode_step ---------------------------------------------------


@pytest.mark.parametrize(
    "kind,input_feeding,dec_layers,tie",
    list(itertools.product(["additive", "dot", "general"], [True, False], [1, 2], [True, False])),
)
def test_forward_equals_stepped_decode(kind, input_feeding, dec_layers, tie):
    model = model_for(kind, seed=3, input_feeding=input_feeding, dec_layers=dec_layers, tie_embeddings=tie)
    srcs, tgts = random_ids(5, VOCAB, 1, 8, seed=11), random_ids(5, VOCAB, 1, 7, seed=12)
    src, lengths = source_tensor(srcs)
    tgt_in = pad(tgts, prefix=[BOS])
    with torch.no_grad():
        hoisted = model(src, lengths, tgt_in)
        stepped = stepped_logprobs(model, src, lengths, tgt_in)
    assert hoisted.dtype == torch.float32 and hoisted.shape == (5, tgt_in.size(1), VOCAB)
    assert torch.allclose(torch.log_softmax(hoisted, dim=-1), stepped, atol=ATOL)


def test_forward_and_stepped_decode_give_the_same_gradients():
    model = model_for("general", seed=4, dec_layers=2)
    srcs, tgts = random_ids(4, VOCAB, 2, 6, seed=13), random_ids(4, VOCAB, 2, 6, seed=14)
    src, lengths = source_tensor(srcs)
    tgt_in, tgt_out = pad(tgts, prefix=[BOS]), pad(tgts, suffix=[EOS])

    def grads(scores):
        loss = torch.nn.functional.nll_loss(scores.reshape(-1, VOCAB), tgt_out.reshape(-1), ignore_index=PAD)
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    g1 = grads(torch.log_softmax(model(src, lengths, tgt_in), dim=-1))
    g2 = grads(stepped_logprobs(model, src, lengths, tgt_in))
    assert g1.keys() == g2.keys()
    for name in g1:
        assert torch.allclose(g1[name], g2[name], atol=1e-5), name


def test_decode_step_outputs():
    model = model_for(seed=5)
    src, lengths = source_tensor(random_ids(3, VOCAB, 2, 6, seed=15))
    with torch.no_grad():
        state = model.encode(src, lengths)
        logp, new_state, attn = model.decode_step(torch.full((3,), BOS), state)
    assert logp.shape == (3, VOCAB) and logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(1), torch.ones(3), atol=1e-5)
    assert attn.shape == (3, src.size(1))
    assert torch.allclose(attn.sum(1), torch.ones(3), atol=1e-6)
    assert (attn[~state.mask] == 0).all()
    assert torch.equal(new_state.feed, new_state.feed) and not torch.equal(new_state.h, state.h)
    assert new_state.memory is state.memory and new_state.keys is state.keys


@pytest.mark.parametrize("dec_layers,input_feeding", [(1, True), (2, True), (2, False)])
def test_decode_step_follows_the_luong_attentional_formula(dec_layers, input_feeding):
    """feed = tanh(W [context; top-layer h]), context = attention-weighted memory, logp from feed."""
    model = model_for(
        "general", seed=13, dec_layers=dec_layers, input_feeding=input_feeding, tie_embeddings=False
    )
    src, lengths = source_tensor(random_ids(3, VOCAB, 2, 6, seed=20))
    with torch.no_grad():
        state = model.encode(src, lengths)
        _, state, _ = model.decode_step(torch.full((3,), BOS), state)
        logp, new, weights = model.decode_step(torch.tensor([5, 6, 7]), state)
        context = (weights.unsqueeze(2) * state.memory).sum(1)
        feed = torch.tanh(model.decoder.combine(torch.cat([context, new.h[-1]], dim=1)))
        expected = torch.log_softmax(model.decoder.output(feed), dim=-1)
    assert torch.allclose(new.feed, feed, atol=1e-6)
    assert torch.allclose(logp, expected, atol=1e-5)


# ---- embeddings --------------------------------------------------------------------------------


def test_tie_embeddings_ties_output_to_target_embedding():
    tied = model_for(seed=6, tie_embeddings=True)
    assert tied.decoder.output.weight is tied.decoder.embed.weight
    untied = model_for(seed=6, tie_embeddings=False)
    assert untied.decoder.output.weight is not untied.decoder.embed.weight
    assert untied.decoder.pre_output is None


@pytest.mark.parametrize("tie", [True, False])
def test_share_embeddings_ties_encoder_and_decoder_embeddings(tie):
    model = model_for(seed=7, share_embeddings=True, tie_embeddings=tie)
    assert model.encoder.embed.weight is model.decoder.embed.weight
    if tie:
        assert model.decoder.output.weight is model.encoder.embed.weight
    separate = model_for(seed=7, share_embeddings=False, tie_embeddings=tie)
    assert count_parameters(separate) - count_parameters(model) == VOCAB * model.cfg.emb_dim
    # one tensor: an update through the encoder is seen by the decoder
    with torch.no_grad():
        model.encoder.embed.weight[5].fill_(0.25)
    assert (model.decoder.embed.weight[5] == 0.25).all()
    # the shared tensor survives a state_dict round trip
    clone = build_model(model.cfg, VOCAB, VOCAB)
    clone.load_state_dict(model.state_dict())
    assert clone.encoder.embed.weight is clone.decoder.embed.weight
    assert torch.equal(clone.decoder.embed.weight, model.encoder.embed.weight)


def test_share_embeddings_needs_one_vocabulary():
    cfg = ModelConfig(emb_dim=8, enc_hidden=4, dec_hidden=6, attn_dim=4, share_embeddings=True)
    with pytest.raises(ValueError, match="joint vocabulary"):
        build_model(cfg, 30, 31)


def test_padding_embedding_is_zero():
    model = model_for(seed=8)
    assert (model.encoder.embed.weight[PAD] == 0).all()
    assert (model.decoder.embed.weight[PAD] == 0).all()


# ---- word dropout ------------------------------------------------------------------------------


def _capture_encoder_ids(model: Seq2Seq) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.encoder.embed.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    return seen


def test_word_dropout_is_inactive_in_eval_mode():
    src, lengths = source_tensor(random_ids(6, VOCAB, 1, 9, seed=16))
    with_wd = model_for(seed=9, word_dropout=0.5, dropout=0.0)
    without = model_for(seed=9, word_dropout=0.0, dropout=0.0)
    for a, b in zip(with_wd.state_dict().values(), without.state_dict().values()):
        assert torch.equal(a, b)  # word dropout has no parameters: same seed, same weights
    seen = _capture_encoder_ids(with_wd)
    with torch.no_grad():
        s1, s2, s0 = with_wd.encode(src, lengths), with_wd.encode(src, lengths), without.encode(src, lengths)
    for x in (s2, s0):
        assert torch.equal(s1.memory, x.memory) and torch.equal(s1.h, x.h) and torch.equal(s1.c, x.c)
    assert all(torch.equal(ids, src) for ids in seen)


def test_word_dropout_replaces_source_tokens_with_unk_in_training():
    src, lengths = source_tensor(random_ids(16, VOCAB, 4, 9, seed=17))
    real = src != PAD
    model = model_for(seed=10, word_dropout=0.99, dropout=0.0).train()
    seen = _capture_encoder_ids(model)
    torch.manual_seed(0)
    with torch.no_grad():
        state = model.encode(src, lengths)
    (ids,) = seen
    assert torch.equal(ids[~real], src[~real]), "padding is never dropped"
    assert torch.equal(state.mask, real), "the mask still follows the real source tokens"
    words = real & (src != EOS)
    assert torch.equal(ids[src == EOS], src[src == EOS]), "the source EOS is never dropped"
    assert (ids[words] == UNK).float().mean() > 0.9
    assert ((ids != src) <= (ids == UNK)).all(), "a dropped token becomes UNK, nothing else changes"

    # the encoder outputs change in training mode with word dropout, but not with word_dropout = 0
    plain = model_for(seed=10, word_dropout=0.0, dropout=0.0).train()
    with torch.no_grad():
        plain_state = plain.encode(src, lengths)
        eval_state = model.eval().encode(src, lengths)
    assert torch.equal(plain_state.memory, eval_state.memory)
    assert not torch.allclose(state.memory, eval_state.memory)


def test_word_dropout_rate_is_roughly_respected():
    src, lengths = source_tensor(random_ids(64, VOCAB, 8, 9, seed=18))
    model = model_for(seed=11, word_dropout=0.3, dropout=0.0).train()
    seen = _capture_encoder_ids(model)
    torch.manual_seed(1)
    with torch.no_grad():
        model.encode(src, lengths)
    real = (src != PAD) & (src != UNK) & (src != EOS)
    rate = (seen[0][real] == UNK).float().mean().item()
    assert 0.22 < rate < 0.38


# ---- DecoderState.select -----------------------------------------------------------------------


def test_decoder_state_select_reorders_and_expands_rows():
    model = model_for(seed=12, dec_layers=2)
    src, lengths = source_tensor(random_ids(3, VOCAB, 1, 7, seed=19))
    with torch.no_grad():
        state = model.encode(src, lengths)
        _, state, _ = model.decode_step(torch.tensor([BOS, BOS, BOS]), state)  # non-zero feed
    index = torch.tensor([2, 0, 0, 1])
    sel = state.select(index)
    assert isinstance(sel, DecoderState)
    for i, j in enumerate(index.tolist()):
        assert torch.equal(sel.h[:, i], state.h[:, j]) and torch.equal(sel.c[:, i], state.c[:, j])
        assert torch.equal(sel.feed[i], state.feed[j])
        assert torch.equal(sel.memory[i], state.memory[j]) and torch.equal(sel.keys[i], state.keys[j])
        assert torch.equal(sel.mask[i], state.mask[j])
    assert sel.h.shape == (2, 4, model.cfg.dec_hidden)
    # a decoder step on the selected state equals the selected rows of a step on the full state
    prev = torch.tensor([7, 8, 9])
    with torch.no_grad():
        full_logp, full_next, _ = model.decode_step(prev, state)
        sel_logp, sel_next, _ = model.decode_step(prev.index_select(0, index), sel)
    assert torch.allclose(sel_logp, full_logp.index_select(0, index), atol=1e-6)
    assert torch.allclose(sel_next.h, full_next.h.index_select(1, index), atol=1e-6)


# ---- the teacher-forced eager loop launches per position only what depends on the position -------


class Kernels(TorchDispatchMode):
    """Counts the operators that launch a kernel on a GPU (views and detach launch none)."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket is not torch.ops.aten.detach:
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def step_kernels(model: Seq2Seq, T: int) -> tuple[collections.Counter, collections.Counter]:
    """Kernels of a training forward and of its backward over 4 sentences of T target positions, through
    the eager per-position loop (the one CUDA runs: the CPU's one-node loop is not asked for)."""
    ids = random_ids(4, VOCAB, 6, 6, seed=1)
    src, lengths = source_tensor(ids)
    tgt = torch.tensor(random_ids(4, VOCAB, T, T, seed=2))
    eager = lambda *args: run_positions(model.decoder.recur_step, *args)  # noqa: E731
    model.zero_grad(set_to_none=True)  # each count's backward creates the gradients
    with Kernels() as forward:
        loss = model(src, lengths, tgt, loop=eager).logsumexp(-1).sum()
    with Kernels() as backward:
        loss.backward()
    return forward.ops, backward.ops


def per_position(model: Seq2Seq) -> tuple[dict, dict]:
    """The kernels each target position adds, forward and backward: counted at 8 and at 16 positions."""
    (f8, b8), (f16, b16) = step_kernels(model, 8), step_kernels(model, 16)
    grow = lambda a, b: {k: (b[k] - a[k]) / 8 for k in a | b if b[k] != a[k]}  # noqa: E731
    return grow(f8, f16), grow(b8, b16)


SHARED = {  # what every position shares: drawn, cast, stacked or zero-filled once per batch, if at all
    "random_", "bernoulli_", "empty", "ge", "_to_copy", "stack", "select_backward", "zeros", "zeros_like",
    "zero_", "fill_", "new_zeros", "copy_", "clone", "div_", "mul_", "t", "transpose", "contiguous",
}  # fmt: skip


def test_each_position_of_the_eager_loop_launches_only_its_own_arithmetic():
    """The wmt14 recipe's decoder shape (2 LSTM layers, additive attention, input feeding, dropout) in
    fp32: per position exactly the step's own arithmetic, no dropout mask drawn, no weight concatenated,
    no bias summed, no state stacked (and, in backward, no (L, B, H) zero-filled gradient per layer)."""
    model = tiny_model(seed=1, vocab=VOCAB, dec_layers=2, dropout=0.3).train()
    forward, backward = per_position(model)
    assert forward == {
        "mul": 8,  # LSTM 3 x 2 layers, dropout masks applied 2
        "sigmoid": 6,
        "tanh": 6,  # LSTM 2 x 2, attention 1, attentional vector 1
        "add": 4,  # layer 0's hoisted gates + its recurrence, c 2, keys + query
        "cat": 3,  # [feed; h], layer 1's [x; h], [context; h]
        "mm": 3,  # layer 0's recurrence, the attention's v, the combine layer
        "addmm": 2,  # layer 1, the attention's query
        "_unsafe_view": 1,
        "_softmax": 1,
        "masked_fill": 1,
        "bitwise_not": 1,  # ~mask: the attention's interface takes the mask of real tokens
        "bmm": 1,
    }, forward
    assert backward == {
        "add": 15,
        "mul": 14,
        "mm": 10,
        "tanh_backward": 6,
        "sigmoid_backward": 6,
        "sum": 3,
        "cat": 2,
        "bmm": 2,
        "_softmax_backward_data": 1,
        "masked_fill": 1,
    }, backward


@pytest.mark.parametrize(
    "overrides",
    [
        {"dec_cell": "gru", "dec_layers": 3},
        {"dec_cell": "rnn", "dec_layers": 2, "input_feeding": False},
        {"dec_layers": 1, "coverage": True},
        {"dec_layers": 2, "attention": "general"},
    ],
)
def test_no_decoder_launches_a_shared_kernel_at_every_position(overrides):
    model = tiny_model(seed=2, vocab=VOCAB, dropout=0.2, **overrides).train()
    forward, backward = per_position(model)
    assert not SHARED & (forward.keys() | backward.keys()), (forward, backward)


@pytest.mark.parametrize("dec_layers", [1, 3])
def test_masks_drawn_at_once_are_the_masks_each_position_would_draw(dec_layers):
    """Decoder.position_masks draws every position's dropout masks in one call, in the order the positions
    drew them one by one (CPU, B * H a multiple of 4): the same seed gives the same outputs."""
    model = tiny_model(seed=4, vocab=VOCAB, dec_layers=dec_layers, dropout=0.3).train()
    dec, B, T = model.decoder, 4, 7
    src, lengths = source_tensor(random_ids(B, VOCAB, 2, 6, seed=5))
    tgt = torch.tensor(random_ids(B, VOCAB, T, T, seed=6))
    outputs = []
    for at_once in (True, False):

        def loop(gates_x, w_rec, state, upper, drop, at_once=at_once):
            torch.manual_seed(7)  # after the encoder's and the embeddings' masks
            drop = dec.position_masks(T, B, tgt.device) if at_once else None  # None: drawn at each position
            return run_positions(dec.recur_step, gates_x, w_rec, state, upper, drop)

        torch.manual_seed(0)
        outputs.append(model(src, lengths, tgt, loop=loop))
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], model.eval()(src, lengths, tgt))  # dropout did drop
