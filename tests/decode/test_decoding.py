"""Decoding controls, each against a hand-checked case: a minimum length, no repeated n-grams, sampling
(temperature, top-k). The hand-checked model ignores its input: its output layer has zero weights, so
every step's log-probabilities are log_softmax(bias) for a bias set here."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch
from conftest import random_ids, tiny_model

from seq2seq.config.schema import DecodeConfig
from seq2seq.constants import BOS, EOS, PAD
from seq2seq.data.batches import source_tensor
from seq2seq.decode.constraints import Rules, draw
from seq2seq.decode.search import beam_search, decode, greedy, max_lengths, sample

V = 12
A, B, C, D, E = 4, 5, 6, 7, 8  # the pieces with a real bias, most likely first


def constant_model(bias: dict[int, float]):
    """Every step's scores are ``bias`` (default -10 for ids not given), whatever the input."""
    model = tiny_model(0, V, tie_embeddings=False)
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        b = torch.full((V,), -10.0)
        for i, v in bias.items():
            b[i] = v
        model.decoder.output.bias.copy_(b)
    return model, [bias.get(i, -10.0) for i in range(V)]


def log_softmax(scores: list[float], i: int) -> float:
    """By hand: scores[i] - log sum exp(scores) (PAD and BOS count in the normalization)."""
    return scores[i] - math.log(sum(math.exp(s) for s in scores))


ONE = source_tensor([[A, B]])  # a source of 2 pieces (+ EOS): limit int(ratio * 3) + offset


# ---- minimum length ----------------------------------------------------------------------------


def test_min_len_holds_off_eos():
    model, bias = constant_model({EOS: 5.0, A: 2.0, B: 1.0})
    plain = greedy(model, *ONE)[0]
    assert plain.tokens == [] and plain.logprob == pytest.approx(log_softmax(bias, EOS), abs=1e-5)
    for search in ("greedy", "beam"):
        if search == "greedy":
            h = greedy(model, *ONE, rules=Rules(min_len=3))[0]
        else:
            h = beam_search(model, *ONE, beam_size=3, alpha=0.0, rules=Rules(min_len=3))[0][0]
        # EOS is forbidden for 3 steps; A is then best, and EOS (the most likely piece) ends it
        assert h.tokens == [A, A, A] and h.eos
        expected = 3 * log_softmax(bias, A) + log_softmax(bias, EOS)
        assert h.logprob == pytest.approx(expected, abs=1e-4)
    for hyps in beam_search(model, *ONE, beam_size=4, n_best=4, rules=Rules(min_len=3)):
        assert all(len(h.tokens) >= 3 for h in hyps)


def test_min_len_above_the_length_limit_stops_at_the_limit():
    model, _ = constant_model({EOS: 5.0, A: 2.0})
    (h,) = greedy(model, *ONE, 1.0, 1, rules=Rules(min_len=50))  # limit int(1.0 * 3) + 1 = 4
    assert h.tokens == [A] * 4 and not h.eos


# ---- no repeated n-grams -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, [A] * 7),  # off: the most likely piece every time
        (1, [A, B, C, D, E]),  # every piece once; then EOS (-5) beats what is left (-10)
        (2, [A, A, B, A, C, A, D]),  # (A, A) seen: not A after A again; then (A, B), (A, C), ...
        (3, [A, A, A, B, A, A, C]),  # (A, A, A) and then (A, A, B) seen: after A A comes C
    ],
)
def test_no_repeat_ngram_by_hand(n, expected):
    model, _ = constant_model({A: 3.0, B: 2.0, C: 1.0, D: 0.5, E: 0.2, EOS: -5.0})
    args = (*ONE, 1.0, 4)  # limit int(1.0 * 3) + 4 = 7 pieces
    assert greedy(model, *args, rules=Rules(no_repeat_ngram=n))[0].tokens == expected
    beam1 = beam_search(model, *args[:2], 1, 0.0, *args[2:], rules=Rules(no_repeat_ngram=n))[0][0]
    assert beam1.tokens == expected  # beam 1 is greedy under the same rules


def ngrams(tokens: list[int], n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_holds_in_every_hypothesis(n):
    seqs = random_ids(12, 40, 2, 9, seed=900 + n)
    model = tiny_model(20 + n, 40)
    with torch.no_grad():
        model.decoder.output.bias[EOS] -= 3.0  # long outputs, where repeats would appear
    src, lengths = source_tensor(seqs)
    rules = Rules(no_repeat_ngram=n)
    repeated_without = 0
    for h in greedy(model, src, lengths):
        repeated_without += len(set(ngrams(h.tokens, n))) < len(ngrams(h.tokens, n))
    assert repeated_without, "the case is not vacuous: without the rule, outputs repeat n-grams"
    hyps = [[h] for h in greedy(model, src, lengths, rules=rules)]
    hyps += beam_search(model, src, lengths, beam_size=4, n_best=4, rules=rules)
    for hs in hyps:
        for h in hs:
            grams = ngrams(h.tokens, n)
            assert len(set(grams)) == len(grams), h.tokens


# ---- sampling ----------------------------------------------------------------------------------


def first_pieces(model, cfg: DecodeConfig, rows: int = 4000, seed: int = 0) -> Counter:
    """The one-piece samples of ``rows`` copies of a source (length limit 1)."""
    src, lengths = source_tensor([[A, B]] * rows)
    g = torch.Generator().manual_seed(seed)
    out = decode(model, src, lengths, cfg, generator=g)
    assert all(len(hs) == 1 and len(hs[0].tokens) == 1 for hs in out)
    return Counter(hs[0].tokens[0] for hs in out)


SAMPLE = DecodeConfig(sampling=True, beam_size=1, max_len_ratio=0.1, max_len_offset=1)  # one piece


@pytest.mark.parametrize(
    "temperature, topk, p_a",
    [
        (1.0, 2, math.e / (math.e + 1)),  # top-2 of bias 2, 1: p(A) = e^2 / (e^2 + e^1)
        (2.0, 2, math.exp(0.5) / (math.exp(0.5) + 1)),  # temperature 2 halves the gap: e^1 / (e^1 + e^0.5)
        (1.0, 0, math.exp(2) / (math.exp(2) + math.e + 1 + 7 * math.exp(-10))),  # every id but PAD and BOS
    ],
)
def test_sampling_frequencies_follow_temperature_and_topk(temperature, topk, p_a):
    model, _ = constant_model({A: 2.0, B: 1.0, C: 0.0})
    counts = first_pieces(model, dataclasses.replace(SAMPLE, temperature=temperature, topk=topk))
    assert set(counts) <= {A, B} if topk == 2 else not set(counts) & {PAD, BOS}
    assert counts[A] / 4000 == pytest.approx(p_a, abs=0.03)  # 4000 draws: standard error below 0.008


def test_sampling_with_top1_is_greedy_and_scores_are_the_models():
    model, bias = constant_model({A: 2.0, B: 1.0, C: 0.0})
    assert first_pieces(model, dataclasses.replace(SAMPLE, topk=1), rows=50) == Counter({A: 50})
    src, lengths = source_tensor([[A, B]] * 30)
    cfg = dataclasses.replace(SAMPLE, temperature=3.0)
    for (h,) in decode(model, src, lengths, cfg, generator=torch.Generator().manual_seed(1)):
        # the log-probability is the model's (before temperature)
        assert h.logprob == pytest.approx(log_softmax(bias, h.tokens[0]), abs=1e-5) and not h.eos


def test_sampling_is_seeded_and_gives_n_best_samples_with_the_rules():
    model, _ = constant_model({EOS: 1.0, A: 1.0, B: 1.0, C: 1.0})
    src, lengths = source_tensor([[A, B], [C]])
    cfg = DecodeConfig(sampling=True, beam_size=1, n_best=5, min_len=2, no_repeat_ngram=1)

    def run(seed):
        out = sample(model, src, lengths, cfg, generator=torch.Generator().manual_seed(seed))
        return [[h.tokens for h in hs] for hs in out]

    assert run(3) == run(3) and run(3) != run(4)
    out = sample(model, src, lengths, cfg, generator=torch.Generator().manual_seed(3))
    limits = max_lengths(lengths, cfg.max_len_ratio, cfg.max_len_offset)
    for hs, limit in zip(out, limits):
        assert len(hs) == 5 and [h.score for h in hs] == sorted((h.score for h in hs), reverse=True)
        for h in hs:
            assert 2 <= len(h.tokens) <= limit and len(set(h.tokens)) == len(h.tokens)


def test_draw_never_picks_a_masked_piece():
    logp = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0, 3.0]] * 500), dim=1)
    logp[:, 3] = float("-inf")
    _, tok = draw(logp, temperature=5.0, topk=2, generator=torch.Generator().manual_seed(0))
    assert set(tok.tolist()) == {1, 2}
