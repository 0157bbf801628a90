"""Attention: normalized weights, exact zeros at padding, padding-independent context, score formulas."""

from __future__ import annotations

import pytest
import torch

from seq2seq.model.attention import Attention

KINDS = ["additive", "dot", "general"]
Q_DIM, M_DIM, A_DIM = 8, 6, 5


def make(kind: str, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    query_dim = M_DIM if kind == "dot" else Q_DIM  # dot needs query_dim == memory_dim
    return Attention(kind, query_dim, M_DIM, A_DIM).eval()


def inputs(att: Attention, lengths: list[int], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    B, S = len(lengths), max(lengths)
    qdim = M_DIM if att.kind == "dot" else Q_DIM
    query = torch.randn(B, qdim, generator=g)
    memory = torch.randn(B, S, M_DIM, generator=g)
    mask = torch.arange(S).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, S)
    return query, memory, mask


def reference_scores(att: Attention, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The documented score formulas, written out independently of Attention.forward."""
    if att.kind == "additive":  # v . tanh(W_k k + W_q q)
        hidden = torch.tanh(
            memory @ att.key_proj.weight.T
            + (query @ att.query_proj.weight.T + att.query_proj.bias).unsqueeze(1)
        )
        return (hidden @ att.v.weight.T).squeeze(2)
    if att.kind == "general":  # q . (W k)
        return torch.einsum("bq,bsq->bs", query, memory @ att.key_proj.weight.T)
    return torch.einsum("bm,bsm->bs", query, memory)  # dot: q . k


LENGTHS = [5, 1, 3, 5, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_weights_sum_to_one_and_are_exactly_zero_at_padding(kind):
    att = make(kind)
    query, memory, mask = inputs(att, LENGTHS)
    with torch.no_grad():
        context, weights = att(query, att.project_keys(memory), memory, mask)
    assert weights.shape == mask.shape and context.shape == (len(LENGTHS), M_DIM)
    assert torch.allclose(weights.sum(dim=1), torch.ones(len(LENGTHS)), atol=1e-6)
    assert (weights[~mask] == 0).all(), "padded positions must get weight exactly 0"
    assert (weights[mask] > 0).all()
    assert torch.isfinite(context).all()
    # a one-token source puts all weight on that token
    assert weights[1, 0].item() == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_context_ignores_memory_at_padded_positions(kind):
    att = make(kind)
    query, memory, mask = inputs(att, LENGTHS)
    garbage = memory.clone()
    g = torch.Generator().manual_seed(99)
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), M_DIM, generator=g)
    with torch.no_grad():
        ctx1, w1 = att(query, att.project_keys(memory), memory, mask)
        ctx2, w2 = att(query, att.project_keys(garbage), garbage, mask)
    assert torch.equal(w1, w2)
    assert torch.allclose(ctx1, ctx2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_padding_stays_at_zero_when_every_real_score_is_hugely_negative(kind):
    """Masking must be exact (-inf), not a large finite constant that real scores can fall below."""
    att = make(kind, seed=2)
    query, memory, mask = inputs(att, LENGTHS, seed=3)
    direction = query if kind == "dot" else query @ att.key_proj.weight  # score = direction . memory
    memory = -1e5 * direction.unsqueeze(1) / direction.norm(dim=1, keepdim=True).unsqueeze(1) ** 2
    memory = memory.expand(-1, max(LENGTHS), -1).clone()  # every real score is -1e5
    with torch.no_grad():
        scores_probe = reference_scores(att, query, memory)
        context, weights = att(query, att.project_keys(memory), memory, mask)
    assert (scores_probe < -1e4).all()
    assert (weights[~mask] == 0).all()
    assert torch.allclose(weights.sum(1), torch.ones(len(LENGTHS)), atol=1e-5)
    assert torch.isfinite(context).all()


@pytest.mark.parametrize("kind", KINDS)
def test_scores_and_context_match_the_formulas(kind):
    att = make(kind, seed=3)
    query, memory, mask = inputs(att, LENGTHS, seed=4)
    with torch.no_grad():
        context, weights = att(query, att.project_keys(memory), memory, mask)
        expected_w = torch.softmax(
            reference_scores(att, query, memory).masked_fill(~mask, float("-inf")), dim=1
        )
    assert torch.allclose(weights, expected_w, atol=1e-6)
    expected_ctx = (expected_w.unsqueeze(2) * memory).sum(dim=1)
    assert torch.allclose(context, expected_ctx, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_rows_are_independent_of_the_rest_of_the_batch(kind):
    att = make(kind, seed=5)
    query, memory, mask = inputs(att, LENGTHS, seed=6)
    with torch.no_grad():
        ctx, w = att(query, att.project_keys(memory), memory, mask)
        for b, n in enumerate(LENGTHS):  # alone, without any padding
            mem_b = memory[b : b + 1, :n]
            ctx_b, w_b = att(query[b : b + 1], att.project_keys(mem_b), mem_b, mask[b : b + 1, :n])
            assert torch.allclose(ctx_b[0], ctx[b], atol=1e-6)
            assert torch.allclose(w_b[0], w[b, :n], atol=1e-6)


def test_project_keys_shapes():
    memory = torch.randn(2, 4, M_DIM)
    assert make("additive").project_keys(memory).shape == (2, 4, A_DIM)
    assert make("general").project_keys(memory).shape == (2, 4, Q_DIM)
    dot = make("dot")
    assert dot.project_keys(memory) is memory  # no parameters, keys are the memory itself
    assert sum(p.numel() for p in dot.parameters()) == 0


def test_bad_configurations_raise():
    with pytest.raises(ValueError, match="query_dim == memory_dim"):
        Attention("dot", 7, 6, 5)
    with pytest.raises(ValueError, match="unknown attention"):
        Attention("cosine", 6, 6, 5)
