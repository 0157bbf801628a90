"""Greedy and beam search: beam 1 == greedy, batch invariance, n-best, length limits and penalty, ensembles."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from conftest import random_ids, tiny_model

from seq2seq.config.schema import DecodeConfig
from seq2seq.constants import BOS, EOS, PAD
from seq2seq.data.batches import source_tensor
from seq2seq.decode.constraints import Rules
from seq2seq.decode.search import (
    Hypothesis,
    beam_search,
    greedy,
    length_penalty,
    max_lengths,
    top_candidates,
)
from seq2seq.decode.translator import Ensemble, EnsembleState, decode_ids

VOCAB = 40


def tensors(seqs):
    return source_tensor(seqs)


def key(h: Hypothesis):
    return tuple(h.tokens)


def assert_same_hyps(a: list[Hypothesis], b: list[Hypothesis], tol: float = 1e-4):
    assert [key(h) for h in a] == [key(h) for h in b]
    assert not any(EOS in h.tokens for h in a + b), "EOS ends a hypothesis, it is never part of it"
    for x, y in zip(a, b):
        assert x.logprob == pytest.approx(y.logprob, abs=tol)
        assert x.score == pytest.approx(y.score, abs=tol)


def eos_prone_model(seed: int, seqs, ratio: float = 2.0, offset: int = 10, **overrides):
    """A random tiny model whose EOS bias is tuned (by bisection, deterministically) so that greedy ends
    about half of ``seqs`` with EOS and the rest at the length limit: random weights alone almost never
    produce EOS, which would leave the EOS paths of the searches untested."""
    model = tiny_model(seed, VOCAB, **overrides)
    src, lengths = tensors(seqs)
    limits = max_lengths(lengths, ratio, offset)
    base = model.decoder.output.bias[EOS].item()
    lo, hi = -2.0, 4.0
    for _ in range(30):
        mid = (lo + hi) / 2
        with torch.no_grad():
            model.decoder.output.bias[EOS] = base + mid
        hyps = greedy(model, src, lengths, ratio, offset)
        frac = sum(len(h.tokens) < n for h, n in zip(hyps, limits)) / len(hyps)
        if frac < 0.35:
            lo = mid
        elif frac > 0.65:
            hi = mid
        else:
            return model
    raise AssertionError("could not tune the EOS bias")


def ended_with_eos(h: Hypothesis) -> bool:
    """With return_attention, a hypothesis closed by EOS has one attention row more than tokens."""
    assert h.attention is not None
    assert h.attention.size(0) in (len(h.tokens), len(h.tokens) + 1)
    return h.attention.size(0) == len(h.tokens) + 1


# ---- helpers -----------------------------------------------------------------------------------


def test_max_lengths_formula():
    lengths = torch.tensor([1, 2, 5, 10])
    assert max_lengths(lengths, 2.0, 10) == [12, 14, 20, 30]
    assert max_lengths(lengths, 1.5, 0) == [1, 3, 7, 15]  # int() truncates; at least 1
    assert max_lengths(lengths, 0.1, 0) == [1, 1, 1, 1]


def test_length_penalty_formula():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(1, 1.0) == pytest.approx(1.0)
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(13, 0.5) == pytest.approx(3.0**0.5)
    assert length_penalty(20, 0.6) > length_penalty(10, 0.6) > 1.0


# ---- beam 1 == greedy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed,overrides",
    [
        (0, {}),
        (1, dict(attention="general", dec_layers=2)),
        (2, dict(attention="dot", dec_hidden=24, input_feeding=False, tie_embeddings=False)),
        (3, dict(enc_layers=1)),
    ],
)
def test_beam_size_one_is_greedy(seed, overrides):
    seqs = random_ids(24, VOCAB, 1, 9, seed=100 + seed)
    model = eos_prone_model(seed, seqs, 1.5, 3, **overrides)
    src, lengths = tensors(seqs)
    g = greedy(model, src, lengths, max_len_ratio=1.5, max_len_offset=3)
    b = beam_search(model, src, lengths, beam_size=1, alpha=0.0, max_len_ratio=1.5, max_len_offset=3)
    assert len(g) == len(b) == len(seqs)
    assert all(len(nb) == 1 for nb in b)
    for gh, (bh,) in zip(g, b):
        assert gh.tokens == bh.tokens
        assert bh.logprob == pytest.approx(gh.logprob, abs=1e-4)
        assert bh.score == pytest.approx(gh.logprob, abs=1e-4)  # alpha = 0: the raw log-probability
    # the comparison is not vacuous: some sentences stop at EOS, some at the length limit
    limits = max_lengths(lengths, 1.5, 3)
    assert any(len(h.tokens) < n for h, n in zip(g, limits))
    assert any(len(h.tokens) == n for h, n in zip(g, limits))


def test_greedy_picks_the_argmax_at_every_step():
    model = tiny_model(4, VOCAB)
    seqs = random_ids(6, VOCAB, 2, 7, seed=5)
    src, lengths = tensors(seqs)
    hyps = greedy(model, src, lengths, return_attention=True)
    for b, h in enumerate(hyps):
        with torch.no_grad():
            state = model.encode(src[b : b + 1, : lengths[b]], lengths[b : b + 1])
            prev, total, toks = torch.tensor([2]), 0.0, []
            for _ in range(h.attention.size(0)):
                logp, state, _ = model.decode_step(prev, state)
                lp, tok = logp[0].max(0)
                total += lp.item()
                if tok.item() == EOS:
                    break
                toks.append(tok.item())
                prev = tok.view(1)
        assert toks == h.tokens
        assert total == pytest.approx(h.logprob, abs=1e-4)
        assert torch.allclose(h.attention.sum(1), torch.ones(h.attention.size(0)), atol=1e-5)
        assert (h.attention[:, lengths[b] :] == 0).all()


# ---- batch invariance --------------------------------------------------------------------------


@pytest.mark.parametrize("seed,n_best", [(0, 1), (1, 5), (2, 3)])
def test_beam_search_is_batch_invariant(seed, n_best):
    seqs = random_ids(14, VOCAB, 1, 9, seed=200 + seed)
    model = eos_prone_model(
        seed, seqs, 1.5, 4, attention=["additive", "general", "additive"][seed], dec_layers=1 + seed % 2
    )
    kw = dict(beam_size=5, alpha=1.0, max_len_ratio=1.5, max_len_offset=4, n_best=n_best)

    alone = [beam_search(model, *tensors([s]), **kw)[0] for s in seqs]
    for hyps in alone:
        assert 1 <= len(hyps) <= n_best

    src, lengths = tensors(seqs)
    assert_all = beam_search(model, src, lengths, **kw)
    for a, b in zip(alone, assert_all):
        assert_same_hyps(a, b)

    rng = random.Random(seed)
    for size in (2, 5):
        order = list(range(len(seqs)))
        rng.shuffle(order)
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            out = beam_search(model, *tensors([seqs[i] for i in idx]), **kw)
            for i, hyps in zip(idx, out):
                assert_same_hyps(alone[i], hyps)


def test_greedy_is_batch_invariant():
    seqs = random_ids(12, VOCAB, 1, 9, seed=300)
    model = eos_prone_model(5, seqs, dec_layers=2)
    alone = [greedy(model, *tensors([s]))[0] for s in seqs]
    together = greedy(model, *tensors(seqs))
    for a, b in zip(alone, together):
        assert_same_hyps([a], [b])


def test_decode_ids_keeps_input_order_for_any_batch_size():
    seqs = random_ids(11, VOCAB, 1, 9, seed=301)
    model = eos_prone_model(6, seqs)
    ref = decode_ids(model, seqs, DecodeConfig(beam_size=4, n_best=2, batch_size=1), torch.device("cpu"))
    for bs in (3, 64):
        out = decode_ids(model, seqs, DecodeConfig(beam_size=4, n_best=2, batch_size=bs), torch.device("cpu"))
        for a, b in zip(ref, out):
            assert_same_hyps(a, b)
    greedy_out = decode_ids(
        model, seqs, DecodeConfig(beam_size=1, n_best=1, batch_size=4), torch.device("cpu")
    )
    direct = greedy(model, *tensors(seqs))
    for (a,), b in zip(greedy_out, direct):
        assert a.tokens == b.tokens


# ---- n-best ------------------------------------------------------------------------------------


@pytest.mark.parametrize("beam,n_best,alpha", [(5, 5, 3.0), (5, 2, 0.6), (3, 1, 1.0), (4, 4, 0.0)])
def test_n_best_lists_are_sorted_and_bounded(beam, n_best, alpha):
    seqs = random_ids(12, VOCAB, 1, 9, seed=400)
    model = eos_prone_model(7, seqs, attention="general")
    out = beam_search(model, *tensors(seqs), beam_size=beam, alpha=alpha, n_best=n_best)
    assert len(out) == len(seqs)
    for hyps in out:
        assert 1 <= len(hyps) <= n_best
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({key(h) for h in hyps}) == len(hyps), "n-best entries are distinct"
        assert not any(EOS in h.tokens for h in hyps)
    # a larger n-best list extends the smaller one
    top1 = beam_search(model, *tensors(seqs), beam_size=beam, alpha=alpha, n_best=1)
    for one, many in zip(top1, out):
        assert key(one[0]) == key(many[0])


def test_beam_finds_at_least_as_good_a_hypothesis_as_greedy():
    """Not guaranteed in general, but the best finished logprob among K beams of a tiny model should be
    no worse than greedy's on most sentences; with alpha = 0 and all beams kept we check the mean."""
    seqs = random_ids(20, VOCAB, 1, 9, seed=401)
    model = eos_prone_model(8, seqs)
    src, lengths = tensors(seqs)
    g = greedy(model, src, lengths)
    b = beam_search(model, src, lengths, beam_size=5, alpha=0.0)
    better_or_equal = sum(bh[0].logprob >= gh.logprob - 1e-5 for gh, bh in zip(g, b))
    assert better_or_equal >= 0.8 * len(seqs)


# ---- length limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("ratio,offset", [(2.0, 10), (0.5, 1), (1.0, 0)])
def test_outputs_respect_max_lengths(ratio, offset):
    seqs = random_ids(16, VOCAB, 1, 9, seed=500)
    model = eos_prone_model(9, seqs, ratio, offset)
    src, lengths = tensors(seqs)
    limits = max_lengths(lengths, ratio, offset)
    for h, n in zip(greedy(model, src, lengths, ratio, offset), limits):
        assert len(h.tokens) <= n
    for hyps, n in zip(beam_search(model, src, lengths, 4, 1.0, ratio, offset, n_best=4), limits):
        assert all(len(h.tokens) <= n for h in hyps)


def test_without_eos_every_output_has_exactly_the_maximum_length():
    model = tiny_model(10, VOCAB)
    with torch.no_grad():
        model.decoder.output.bias[EOS] = -1e4  # EOS is never chosen
    seqs = random_ids(10, VOCAB, 1, 9, seed=501)
    src, lengths = tensors(seqs)
    limits = max_lengths(lengths, 1.5, 2)
    g = greedy(model, src, lengths, 1.5, 2, return_attention=True)
    assert [len(h.tokens) for h in g] == limits
    assert all(not ended_with_eos(h) for h in g)
    b = beam_search(model, src, lengths, 3, 1.0, 1.5, 2, n_best=3, return_attention=True)
    for hyps, n in zip(b, limits):
        assert len(hyps) == 3
        for h in hyps:
            assert len(h.tokens) == n and not ended_with_eos(h)
            assert h.score == pytest.approx(h.logprob / length_penalty(n, 1.0), rel=1e-6)


def test_certain_eos_gives_empty_outputs():
    model = tiny_model(11, VOCAB)
    with torch.no_grad():
        model.decoder.output.bias[EOS] = 1e4
    src, lengths = tensors(random_ids(5, VOCAB, 1, 9, seed=502))
    for h in greedy(model, src, lengths):
        assert h.tokens == [] and h.logprob == pytest.approx(0.0, abs=1e-4)
    for (h,) in beam_search(model, src, lengths, beam_size=4):
        assert h.tokens == [] and h.logprob == pytest.approx(0.0, abs=1e-4)
    # all hypotheses: the empty one at step 1, then the K - 1 best one-token ones at step 2 (of the K that
    # end there by EOS), and the sentence stops there with exactly K finished hypotheses
    for hyps in beam_search(model, src, lengths, beam_size=4, n_best=8, return_attention=True):
        assert len(hyps) == 4
        assert all(ended_with_eos(h) for h in hyps)
        assert [len(h.tokens) for h in hyps] == [0, 1, 1, 1]


# ---- length penalty ----------------------------------------------------------------------------


def test_length_penalty_alpha_zero_ranks_by_logprob_and_alpha_follows_gnmt():
    seqs = random_ids(16, VOCAB, 1, 9, seed=600)
    model = eos_prone_model(12, seqs, attention="general")
    src, lengths = tensors(seqs)
    K, ALPHA = 5, 3.0
    # n_best = 2K returns every finished hypothesis (at most K - 1 by EOS plus K live ones at the limit)
    plain = beam_search(model, src, lengths, K, alpha=0.0, n_best=2 * K, return_attention=True)
    long = beam_search(model, src, lengths, K, alpha=ALPHA, n_best=2 * K, return_attention=True)
    saw_eos = saw_limit = moved = 0
    for p_hyps, l_hyps in zip(plain, long):
        for h in p_hyps:
            assert h.score == h.logprob
        for h in l_hyps:
            eos = ended_with_eos(h)
            saw_eos += eos
            saw_limit += not eos
            L = len(h.tokens) + (1 if eos else 0)  # EOS counts toward the length
            assert h.score == pytest.approx(h.logprob / ((5.0 + L) / 6.0) ** ALPHA, rel=1e-6)
        for hyps in (p_hyps, l_hyps):
            assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
            assert sum(ended_with_eos(h) for h in hyps) <= K, "a sentence stops at K hypotheses ended by EOS"
            assert len(hyps) <= 2 * K - 1
            assert not any(EOS in h.tokens for h in hyps)
        # alpha changes only the ranking, not the search: the same finished hypotheses
        assert sorted((key(h), round(h.logprob, 4)) for h in p_hyps) == sorted(
            (key(h), round(h.logprob, 4)) for h in l_hyps
        )
        assert p_hyps[0].logprob == max(h.logprob for h in p_hyps)
        # a length penalty can only move the winner to a hypothesis at least as long
        assert len(l_hyps[0].tokens) >= len(p_hyps[0].tokens)
        moved += len(l_hyps[0].tokens) > len(p_hyps[0].tokens)
    assert saw_eos and saw_limit and moved


def test_rescoring_the_full_n_best_list_equals_decoding_with_that_alpha():
    """What tune-decode relies on: decode once, re-rank every finished hypothesis for any alpha."""
    seqs = random_ids(16, VOCAB, 1, 9, seed=614)
    limits = dict(max_len_ratio=1.0, max_len_offset=2)  # tight: many hypotheses are cut at the limit
    model = eos_prone_model(14, seqs, ratio=1.0, offset=2)
    src, lengths = tensors(seqs)
    K = 4
    pool = beam_search(model, src, lengths, K, alpha=0.0, n_best=2 * K, **limits)  # every finished hypothesis
    assert any(not h.eos for hyps in pool for h in hyps) and any(h.eos for hyps in pool for h in hyps)
    for alpha in (0.6, 1.5, 3.0):
        decoded = beam_search(
            model, src, lengths, K, alpha=alpha, n_best=2 * K, return_attention=True, **limits
        )
        for hyps, real in zip(pool, decoded):
            assert all(h.eos == ended_with_eos(h) for h in real)
            assert all(h.rescore(alpha) == pytest.approx(h.score, rel=1e-9) for h in real)
            assert key(max(hyps, key=lambda h: h.rescore(alpha))) == key(real[0])


# ---- ensembles ---------------------------------------------------------------------------------


def test_ensemble_of_one_model_equals_the_model():
    seqs = random_ids(10, VOCAB, 1, 9, seed=700)
    model = eos_prone_model(13, seqs, dec_layers=2)
    src, lengths = tensors(seqs)
    ens = Ensemble([model])
    assert isinstance(ens.encode(src, lengths), EnsembleState)
    for a, b in zip(greedy(model, src, lengths), greedy(ens, src, lengths)):
        assert a.tokens == b.tokens and a.logprob == b.logprob
    single = beam_search(model, src, lengths, beam_size=4, n_best=3)
    for a, b in zip(single, beam_search(ens, src, lengths, beam_size=4, n_best=3)):
        assert [key(h) for h in a] == [key(h) for h in b]
        assert [h.score for h in a] == [h.score for h in b]


def test_ensemble_of_two_identical_models_equals_one_model():
    seqs = random_ids(10, VOCAB, 1, 9, seed=701)
    model = eos_prone_model(14, seqs, attention="general")
    ens = Ensemble([model, copy.deepcopy(model)])
    src, lengths = tensors(seqs)
    single = beam_search(model, src, lengths, beam_size=5, n_best=5, return_attention=True)
    double = beam_search(ens, src, lengths, beam_size=5, n_best=5, return_attention=True)
    for a, b in zip(single, double):
        assert_same_hyps(a, b, tol=1e-5)
        for x, y in zip(a, b):
            assert torch.allclose(x.attention, y.attention, atol=1e-6)


def test_ensemble_averages_log_probabilities():
    m1, m2 = tiny_model(15, VOCAB), tiny_model(16, VOCAB, attention="general")
    ens = Ensemble([m1, m2])
    src, lengths = tensors(random_ids(4, VOCAB, 1, 9, seed=702))
    prev = torch.tensor([2, 2, 2, 2])
    with torch.no_grad():
        state = ens.encode(src, lengths)
        logp, new_state, attn = ens.decode_step(prev, state)
        l1, _, a1 = m1.decode_step(prev, m1.encode(src, lengths))
        l2, _, a2 = m2.decode_step(prev, m2.encode(src, lengths))
    assert torch.allclose(logp, (l1 + l2) / 2, atol=1e-6)
    assert torch.allclose(attn, (a1 + a2) / 2, atol=1e-6)
    sel = new_state.select(torch.tensor([3, 1]))
    assert isinstance(sel, EnsembleState) and len(sel.states) == 2
    assert torch.equal(sel.states[1].h, new_state.states[1].h.index_select(1, torch.tensor([3, 1])))


# ---- source-side tensors are selected only when sentences leave ---------------------------------


class SourceWatch:
    """The model, recording at every decoder step the rows and the tensor objects of memory/keys/mask."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def encode(self, src, lengths):
        return self.model.encode(src, lengths)

    def decode_step(self, prev, state):
        self.seen.append((state.memory.size(0), (state.memory, state.keys, state.mask)))
        return self.model.decode_step(prev, state)


def test_beam_search_selects_memory_keys_and_mask_only_when_the_active_set_shrinks():
    seqs = random_ids(8, VOCAB, 1, 9, seed=710)
    model = eos_prone_model(17, seqs)  # sentences finish at different steps
    watch = SourceWatch(model)
    src, lengths = tensors(seqs)
    plain = beam_search(model, src, lengths, beam_size=4, n_best=2)
    watched = beam_search(watch, src, lengths, beam_size=4, n_best=2)
    for a, b in zip(plain, watched):
        assert_same_hyps(a, b, tol=0.0)
    steps = list(zip(watch.seen, watch.seen[1:]))
    same_rows = [(before, after) for (n0, before), (n1, after) in steps if n0 == n1]
    shrinks = [(before, after) for (n0, before), (n1, after) in steps if n1 < n0]
    assert len(same_rows) > 5 and shrinks, "beams moved at many steps, and sentences left"
    for before, after in same_rows:  # beams moved within their sentences: nothing was selected
        assert all(x is y for x, y in zip(before, after))
    for before, after in shrinks:
        assert all(x is not y for x, y in zip(before, after))


def test_reorder_moves_the_recurrent_rows_only():
    model = tiny_model(18, VOCAB)
    src, lengths = tensors(random_ids(2, VOCAB, 3, 6, seed=711))
    state = model.encode(src, lengths).select(torch.tensor([0, 0, 1, 1]))  # 2 beams per sentence
    index = torch.tensor([1, 1, 3, 2])
    moved, selected = state.reorder(index), state.select(index)
    for name in ("h", "c", "feed", "memory", "keys", "mask"):
        assert torch.equal(getattr(moved, name), getattr(selected, name)), name
    assert moved.memory is state.memory and moved.keys is state.keys and moved.mask is state.mask
    ens = Ensemble([model, model]).encode(src, lengths).select(torch.tensor([0, 0, 1, 1]))
    moved = ens.reorder(index)
    assert isinstance(moved, EnsembleState)
    assert all(
        m.memory is s.memory and torch.equal(m.h, s.h[:, index]) for m, s in zip(moved.states, ens.states)
    )


# ---- host transfers and rows per step -----------------------------------------------------------

HOST_TRANSFERS = ("tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__float__")


class StepWatch:
    """The model, recording at every decoder step its rows and, given a ``monkeypatch``, the host
    transfers (a tensor's ``tolist``, ``item``, ``cpu``, ``bool()``, ...: each a device sync on a GPU)
    since the step before."""

    def __init__(self, model, monkeypatch=None):
        self.model, self.rows, self.transfers, self.count = model, [], [], 0
        for name in HOST_TRANSFERS if monkeypatch is not None else ():
            monkeypatch.setattr(torch.Tensor, name, self.counting(getattr(torch.Tensor, name)))

    def counting(self, method):
        def counted(tensor, *args, **kwargs):
            self.count += 1
            return method(tensor, *args, **kwargs)

        return counted

    def encode(self, src, lengths):
        return self.model.encode(src, lengths)

    def decode_step(self, prev, state):
        self.transfers.append(self.count)  # the first: encoding and the length limits, once per batch
        self.rows.append(prev.size(0))
        self.count = 0
        return self.model.decode_step(prev, state)

    def per_step(self) -> list[int]:
        """Host transfers of each step, from its decoder call to the next one (or the search's end)."""
        return self.transfers[1:] + [self.count]


@pytest.mark.parametrize(
    "attention,beta,no_repeat,most",
    [(False, 0.0, 0, 1), (False, 0.4, 3, 2), (True, 0.4, 0, 3)],
)
def test_a_beam_step_moves_one_small_tensor_to_the_host(monkeypatch, attention, beta, no_repeat, most):
    """One transfer per step, whatever finishes; a step where hypotheses finish adds one for their
    coverage penalties and one for their attention, each only when kept."""
    seqs = random_ids(9, VOCAB, 1, 9, seed=720)
    model = eos_prone_model(19, seqs, coverage=beta > 0)
    src, lengths = tensors(seqs)
    kw = dict(beam_size=4, n_best=2, return_attention=attention, coverage_penalty=beta)
    kw["rules"] = Rules(no_repeat_ngram=no_repeat)
    plain = beam_search(model, src, lengths, **kw)
    watch = StepWatch(model, monkeypatch)
    watched = beam_search(watch, src, lengths, **kw)
    monkeypatch.undo()
    for a, b in zip(plain, watched):
        assert_same_hyps(a, b, tol=0.0)
    steps = watch.per_step()
    assert len(steps) > 5 and min(steps) == 1
    assert max(steps) == most  # hypotheses finished at some step (eos_prone_model)


@pytest.mark.parametrize("attention,most", [(False, 1), (True, 2)])
def test_a_greedy_step_moves_one_small_tensor_to_the_host(monkeypatch, attention, most):
    seqs = random_ids(9, VOCAB, 1, 9, seed=721)
    model = eos_prone_model(20, seqs)
    watch = StepWatch(model, monkeypatch)
    greedy(watch, *tensors(seqs), return_attention=attention)
    monkeypatch.undo()
    assert set(watch.per_step()) == {most}


def search(model, seqs, beam: int):
    src, lengths = tensors(seqs)
    return beam_search(model, src, lengths, beam_size=beam) if beam > 1 else greedy(model, src, lengths)


@pytest.mark.parametrize("beam", [1, 4])
def test_rows_shrink_as_sentences_finish(beam):
    """At step t the batch holds ``beam`` rows for each sentence that, decoded alone, takes more than t
    steps: a finished sentence leaves at once, its rows with it."""
    seqs = random_ids(10, VOCAB, 1, 9, seed=722)
    model = eos_prone_model(21, seqs)
    alone = []
    for s in seqs:
        watch = StepWatch(model)
        search(watch, [s], beam)
        assert set(watch.rows) == {beam}
        alone.append(len(watch.rows))
    watch = StepWatch(model)
    search(watch, seqs, beam)
    expected = [beam * sum(n > t for n in alone) for t in range(max(alone))]
    assert watch.rows == expected
    assert len(set(expected)) > 3, "sentences left at several steps"


def test_top_candidates_are_the_top_k_of_all_sums():
    """The same values, beams and ids as a top-k over a fresh (A, K*V) tensor of the sums, -inf included."""
    g = torch.Generator().manual_seed(723)
    A, K, V = 6, 4, 30
    scores = torch.randn(A, K, generator=g)
    scores[:, 1:] = torch.where(torch.arange(A).unsqueeze(1) < 2, float("-inf"), scores[:, 1:])  # first step
    logp = torch.log_softmax(torch.randn(A * K, V, generator=g), dim=1)
    logp[:, 0] = float("-inf")
    top, where = (scores.unsqueeze(2) + logp.view(A, K, V)).view(A, K * V).topk(2 * K, dim=1)
    values, beam, ids = top_candidates(scores, logp.clone(), 2 * K)
    assert torch.equal(values, top)
    assert torch.equal(beam * V + ids, where)
    assert (beam[:2] == 0).all(), "beams at -inf continue nothing"


def reference_beam(
    model, seq: list[int], K: int, alpha: float, ratio: float, offset: int
) -> list[Hypothesis]:
    """Beam search for one sentence as plainly as it can be written: lists on the host, the K beams'
    histories copied at every step, a top-2K over a fresh tensor of all K*V sums."""
    src, lengths = tensors([seq])
    limit = max_lengths(lengths, ratio, offset)[0]
    state = model.encode(src, lengths).select(torch.zeros(K, dtype=torch.long))
    scores, hist, prev, finished = [0.0] + [float("-inf")] * (K - 1), [[] for _ in range(K)], [BOS] * K, []
    for _ in range(limit):
        with torch.no_grad():
            logp, state, _ = model.decode_step(torch.tensor(prev), state)
        logp[:, PAD] = logp[:, BOS] = float("-inf")
        V = logp.size(1)
        sums = (torch.tensor(scores).unsqueeze(1) + logp).view(1, K * V)
        top, where = (x[0].tolist() for x in sums.topk(2 * K, dim=1))
        for score, w in zip(top[:K], where[:K]):
            if w % V == EOS and score > float("-inf") and len(finished) < K:
                finished.append((hist[w // V], score, True))
        cont = [(s, w) for s, w in zip(top, where) if w % V != EOS][:K]
        scores, prev = [s for s, _ in cont], [w % V for _, w in cont]
        hist = [hist[w // V] + [w % V] for _, w in cont]
        state = state.select(torch.tensor([w // V for _, w in cont]))
        if len(finished) >= K:
            break
    else:
        finished += [(h, s, False) for h, s in zip(hist, scores) if s > float("-inf")]
    hyps = [Hypothesis(h, s, s / length_penalty(len(h) + eos, alpha), None, eos) for h, s, eos in finished]
    return sorted(hyps, key=lambda h: -h.score)


@pytest.mark.parametrize("seed,beam,alpha", [(0, 5, 1.0), (1, 3, 0.6), (2, 6, 0.0)])
def test_beam_search_equals_a_plain_reference_bit_for_bit(seed, beam, alpha):
    """Sentence by sentence (the model's matmuls round differently for other row counts: across batch
    compositions the searches agree to 1e-4, test_beam_search_is_batch_invariant)."""
    seqs = random_ids(12, VOCAB, 1, 9, seed=730 + seed)
    model = eos_prone_model(22 + seed, seqs, 1.5, 3, dec_layers=1 + seed % 2)
    ends = set()
    for s in seqs:
        (hyps,) = beam_search(model, *tensors([s]), beam, alpha, 1.5, 3, n_best=beam)
        ref = reference_beam(model, s, beam, alpha, 1.5, 3)[:beam]
        assert [(h.tokens, h.logprob, h.score, h.eos) for h in hyps] == [
            (h.tokens, h.logprob, h.score, h.eos) for h in ref
        ]
        ends |= {h.eos for h in hyps}
    assert ends == {True, False}, "hypotheses ended with EOS and at the length limit"
