"""Greedy and beam search: plain functions over ``model.encode`` / ``model.decode_step``.

Any object with those two methods works (a :class:`~seq2seq.model.network.Seq2Seq`, an ensemble), as
long as its state has ``select(index)`` (every row: when sentences leave the batch) and, for beam
search, ``reorder(index)`` (the recurrent rows only: beams move within their sentence, so the
source-side tensors are selected only when the active set shrinks). Each sentence is decoded
independently of the others in its batch: the output does not depend on the batch size or on the
batch's other sentences (sampling excepted: its random draws follow the batch order). :class:`Rules`
(a minimum length, no repeated n-grams) mask the log-probabilities of every step the same way in all
searches.

Beam search's coverage penalty (GNMT, Wu et al. 2016; ``decode.coverage_penalty`` beta, 0 = off) adds
beta * sum over the real source positions i of log(min(sum_t a_{t,i}, 1)) to the length-normalised score
of each finished hypothesis (a_{t,i}: the attention weights of its steps, the EOS step included); it
only re-ranks what finishes. Greedy search and sampling ignore it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from seq2seq.config.schema import DecodeConfig
from seq2seq.constants import BOS, EOS, PAD
from seq2seq.decode.constraints import NO_RULES, Rules, argmax, draw


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids without BOS/EOS
    logprob: float  # sum of token log-probabilities (EOS included when it was produced)
    score: float  # logprob / length penalty (+ coverage penalty), used for ranking
    attention: Optional[torch.Tensor] = field(default=None, repr=False)  # (len(tokens) [+1], S)
    eos: bool = True  # ended with EOS (False: cut at the length limit)
    coverage_penalty: float = 0.0  # beam search's beta * sum_i log(min(coverage_i, 1)) <= 0, in the score

    def rescore(self, alpha: float) -> float:
        """The score under length penalty ``alpha``: the length counts EOS when it was produced; the
        coverage penalty stays as decoded."""
        return self.logprob / length_penalty(len(self.tokens) + self.eos, alpha) + self.coverage_penalty


def _finished(tokens: list[int], logprob: float, alpha: float, attention, eos: bool, cp: float) -> Hypothesis:
    hyp = Hypothesis(tokens, logprob, 0.0, attention, eos, cp)
    hyp.score = hyp.rescore(alpha)
    return hyp


def _step(model, prev: torch.Tensor, state, rules: Rules = NO_RULES, t: int = 0, tokens=None):
    """One decoder step whose log-probs (B, V) can never pick PAD or BOS, nor what ``rules`` forbid at
    output position ``t`` after ``tokens`` (B, t)."""
    logp, state, attn = model.decode_step(prev, state)
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    rules.apply(logp, t, tokens)
    return logp, state, attn


def max_lengths(lengths: torch.Tensor, ratio: float, offset: int) -> list[int]:
    """Largest output length per sentence: int(ratio * source length) + offset, at least 1."""
    return [max(1, int(ratio * n) + offset) for n in lengths.tolist()]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha; alpha = 0 ranks by raw log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy(
    model,
    src: torch.Tensor,
    lengths: torch.Tensor,
    max_len_ratio: float = 2.0,
    max_len_offset: int = 10,
    return_attention: bool = False,
    rules: Rules = NO_RULES,
    pick: Callable = argmax,
) -> list[Hypothesis]:
    """Argmax decoding (or what ``pick`` chooses: :func:`draw` samples). src (B, S), lengths (B,).
    Finished sentences leave the active batch."""
    B = src.size(0)
    state = model.encode(src, lengths)
    limits = max_lengths(lengths, max_len_ratio, max_len_offset)
    prev = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    active = list(range(B))  # original index of each active row
    out_tokens: list[list[int]] = [[] for _ in range(B)]
    out_logp = [0.0] * B
    out_eos = [False] * B
    out_attn: list[list[torch.Tensor]] = [[] for _ in range(B)]
    t = 0
    while active:
        history = None
        if rules.no_repeat_ngram:  # every active row has t pieces
            history = torch.tensor([out_tokens[b] for b in active], dtype=torch.long, device=src.device)
            history = history.view(len(active), t)
        logp, state, attn = _step(model, prev, state, rules, t, history)  # (A, V), (A, S)
        best_logp, best = pick(logp)  # (A,)
        toks, lps = best.tolist(), best_logp.tolist()
        keep = []
        for row, b in enumerate(active):
            out_logp[b] += lps[row]
            if return_attention:
                out_attn[b].append(attn[row].float().cpu())
            if toks[row] == EOS:
                out_eos[b] = True
            else:
                out_tokens[b].append(toks[row])
                if t + 1 < limits[b]:
                    keep.append(row)
        t += 1
        if len(keep) < len(active):
            index = torch.tensor(keep, dtype=torch.long, device=src.device)
            state, prev = state.select(index), best.index_select(0, index)
            active = [active[r] for r in keep]
        else:
            prev = best
    hyps = []
    for b in range(B):
        attn_b = torch.stack(out_attn[b]) if return_attention else None
        hyps.append(Hypothesis(out_tokens[b], out_logp[b], out_logp[b], attn_b, out_eos[b]))
    return hyps


@dataclass
class _Beams:
    """Beam search's running state: A active sentences x K beams, row a*K + k."""

    state: object  # the model's decoder state, (A*K) rows
    scores: torch.Tensor  # (A, K) cumulative log-prob
    tokens: torch.Tensor  # (A*K, t) output ids so far
    prev: torch.Tensor  # (A*K,) last ids
    attn: Optional[torch.Tensor]  # (A*K, t, S) attention history, when asked for
    active: list[int]  # original index of each active sentence
    finished: list[list[Hypothesis]]  # per original sentence
    # (A*K, S) attention summed over each beam's steps, 1 at source padding (log 1 = 0); None: beta = 0
    coverage: Optional[torch.Tensor] = None
    beta: float = 0.0  # coverage penalty weight

    def coverage_penalties(self, rows: list[int]) -> list[float]:
        """beta * sum_i log(min(coverage_i, 1)) of beam rows ``rows`` (0.0 each without the penalty). A
        source position that got no attention at all (underflow) counts as the smallest normal float's
        log, about -87, not -inf: such hypotheses still rank by their other terms."""
        if self.coverage is None or not rows:
            return [0.0] * len(rows)
        index = torch.tensor(rows, dtype=torch.long, device=self.coverage.device)
        cov = self.coverage.index_select(0, index)  # (N, S)
        cov = cov.clamp(min=torch.finfo(cov.dtype).tiny, max=1.0)
        return (self.beta * cov.log().sum(1)).tolist()


@torch.no_grad()
def beam_search(
    model,
    src: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int = 5,
    alpha: float = 1.0,
    max_len_ratio: float = 2.0,
    max_len_offset: int = 10,
    n_best: int = 1,
    return_attention: bool = False,
    rules: Rules = NO_RULES,
    coverage_penalty: float = 0.0,
) -> list[list[Hypothesis]]:
    """Batched beam search over sentences x beams; returns the ``n_best`` hypotheses per sentence.

    Each step scores all K x V continuations of a sentence's K beams at once (top-2K over the
    flattened scores). Candidates ending in EOS among the top K are finished; the best K others
    continue. A sentence stops when it has K finished hypotheses or reaches its maximum length
    (its live beams are then finished as they are), and leaves the active batch. With K = 1 this
    is exactly :func:`greedy`. ``coverage_penalty`` beta > 0 adds GNMT's coverage penalty to the scores
    of finished hypotheses (see the module's docstring).
    """
    B, K, device = src.size(0), beam_size, src.device
    state = model.encode(src, lengths)
    limits = max_lengths(lengths, max_len_ratio, max_len_offset)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    beams = _Beams(
        state=state.select(torch.arange(B, device=device).repeat_interleave(K)),
        scores=scores,
        tokens=torch.empty(B * K, 0, dtype=torch.long, device=device),
        prev=torch.full((B * K,), BOS, dtype=torch.long, device=device),
        attn=torch.empty(B * K, 0, src.size(1), device=device) if return_attention else None,
        active=list(range(B)),
        finished=[[] for _ in range(B)],
        coverage=(src == PAD).float().repeat_interleave(K, dim=0) if coverage_penalty > 0 else None,
        beta=coverage_penalty,
    )
    t = 0
    while beams.active:
        _advance(model, beams, K, alpha, rules, t)
        t += 1
        _finish_and_shrink(beams, K, alpha, [limits[b] <= t for b in beams.active])
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in beams.finished]


def _advance(model, beams: _Beams, K: int, alpha: float, rules: Rules, t: int) -> None:
    """One step: score every continuation, finish the top-K candidates that end in EOS, and continue
    with the K best others (in rank order)."""
    A, device = len(beams.active), beams.prev.device
    logp, state, attn = _step(model, beams.prev, beams.state, rules, t, beams.tokens)  # (A*K, V), (A*K, S)
    V = logp.size(1)
    if beams.attn is not None:
        beams.attn = torch.cat([beams.attn, attn.float().unsqueeze(1)], dim=1)  # (A*K, t+1, S)
    if beams.coverage is not None:
        beams.coverage = beams.coverage + attn.float()  # (A*K, S)
    cand = (beams.scores.unsqueeze(2) + logp.view(A, K, V)).view(A, K * V)
    top_scores, top_idx = cand.topk(min(2 * K, K * V), dim=1)  # (A, 2K), best first
    top_beam, top_tok = top_idx // V, top_idx % V
    is_eos = top_tok == EOS
    cont = ~is_eos & ((~is_eos).cumsum(1) <= K)  # the K best non-EOS candidates continue
    positions = torch.arange(top_idx.size(1), device=device)
    pick = ((~cont).long() * (2 * K) + positions).argsort(dim=1)[:, :K]  # (A, K)
    _finish_eos(beams, K, alpha, is_eos[:, :K], top_scores[:, :K], top_beam[:, :K])
    rows = (torch.arange(A, device=device).unsqueeze(1) * K + top_beam.gather(1, pick)).view(-1)  # (A*K,)
    new_tok = top_tok.gather(1, pick)
    beams.tokens = torch.cat([beams.tokens.index_select(0, rows), new_tok.view(-1, 1)], dim=1)
    if beams.attn is not None:
        beams.attn = beams.attn.index_select(0, rows)
    if beams.coverage is not None:
        beams.coverage = beams.coverage.index_select(0, rows)
    beams.state, beams.scores, beams.prev = state.reorder(rows), top_scores.gather(1, pick), new_tok.view(-1)


def _finish_eos(beams: _Beams, K: int, alpha: float, is_eos, eos_scores, eos_beams) -> None:
    """Candidates among the top K that end in EOS become finished hypotheses (their sentence's first K).
    One host transfer per step; only the finished rows' histories come to the host."""
    eos_cpu = is_eos.tolist()
    if not any(any(r) for r in eos_cpu):
        return
    eos_scores, eos_beams = eos_scores.tolist(), eos_beams.tolist()
    ends = [
        (b, a * K + eos_beams[a][j], eos_scores[a][j])
        for a, b in enumerate(beams.active)
        for j in range(K)
        if eos_cpu[a][j] and eos_scores[a][j] > float("-inf")
    ]
    needed = sorted({row for _, row, _ in ends})
    index = torch.tensor(needed, dtype=torch.long, device=beams.prev.device)
    history = dict(zip(needed, beams.tokens.index_select(0, index).tolist()))
    penalty = dict(zip(needed, beams.coverage_penalties(needed)))
    for b, row, lp in ends:
        if len(beams.finished[b]) < K:
            h_attn = beams.attn[row].cpu() if beams.attn is not None else None
            beams.finished[b].append(_finished(history[row], lp, alpha, h_attn, True, penalty[row]))


def _finish_and_shrink(beams: _Beams, K: int, alpha: float, at_limit: list[bool]) -> None:
    """Sentences with K finished hypotheses leave the batch; so do those at their length limit, whose
    live beams finish as they are."""
    keep, live_scores, live_tokens = [], None, None
    for a, b in enumerate(beams.active):
        if len(beams.finished[b]) >= K:
            continue
        if at_limit[a]:  # out of length: the live beams finish as they are
            live_scores = live_scores if live_scores is not None else beams.scores.tolist()
            live_tokens = live_tokens if live_tokens is not None else beams.tokens.tolist()
            penalty = beams.coverage_penalties([a * K + k for k in range(K)])
            for k in range(K):
                lp = live_scores[a][k]
                if lp > float("-inf"):
                    h_attn = beams.attn[a * K + k].cpu() if beams.attn is not None else None
                    hyp = _finished(live_tokens[a * K + k], lp, alpha, h_attn, False, penalty[k])
                    beams.finished[b].append(hyp)
            continue
        keep.append(a)
    if len(keep) < len(beams.active):
        device = beams.prev.device
        index = torch.tensor(keep, dtype=torch.long, device=device)
        rows = (index.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
        beams.state, beams.prev = beams.state.select(rows), beams.prev.index_select(0, rows)
        beams.tokens, beams.scores = beams.tokens.index_select(0, rows), beams.scores.index_select(0, index)
        if beams.attn is not None:
            beams.attn = beams.attn.index_select(0, rows)
        if beams.coverage is not None:
            beams.coverage = beams.coverage.index_select(0, rows)
        beams.active = [beams.active[a] for a in keep]


def decode(
    model,
    src: torch.Tensor,
    lengths: torch.Tensor,
    cfg: DecodeConfig,
    return_attention: bool = False,
    generator: Optional[torch.Generator] = None,
) -> list[list[Hypothesis]]:
    """The ``cfg.n_best`` best hypotheses per sentence: :func:`greedy` for beam 1 / 1-best, else
    :func:`beam_search` (which equals greedy at beam 1; the only one with ``cfg.coverage_penalty``);
    with ``cfg.sampling``, :func:`sample`.
    src (B, S), lengths (B,)."""
    if cfg.sampling:
        return sample(model, src, lengths, cfg, return_attention, generator)
    if cfg.beam_size == 1 and cfg.n_best == 1:
        hyps = greedy(
            model,
            src,
            lengths,
            max_len_ratio=cfg.max_len_ratio,
            max_len_offset=cfg.max_len_offset,
            return_attention=return_attention,
            rules=Rules.of(cfg),
        )
        return [[h] for h in hyps]
    return beam_search(
        model,
        src,
        lengths,
        beam_size=cfg.beam_size,
        alpha=cfg.length_penalty,
        max_len_ratio=cfg.max_len_ratio,
        max_len_offset=cfg.max_len_offset,
        n_best=cfg.n_best,
        return_attention=return_attention,
        rules=Rules.of(cfg),
        coverage_penalty=cfg.coverage_penalty,
    )


def sample(
    model,
    src: torch.Tensor,
    lengths: torch.Tensor,
    cfg: DecodeConfig,
    return_attention: bool = False,
    generator: Optional[torch.Generator] = None,
) -> list[list[Hypothesis]]:
    """``cfg.n_best`` independent samples per sentence (``cfg.temperature``, ``cfg.topk``, and the
    length limits and rules of the other searches), most likely first. src (B, S), lengths (B,)."""
    n = cfg.n_best
    rows = torch.arange(src.size(0), device=src.device).repeat_interleave(n)  # sentence b: rows b*n ...
    pick = functools.partial(draw, temperature=cfg.temperature, topk=cfg.topk, generator=generator)
    hyps = greedy(
        model,
        src.index_select(0, rows),
        lengths.index_select(0, rows.to(lengths.device)),
        cfg.max_len_ratio,
        cfg.max_len_offset,
        return_attention,
        Rules.of(cfg),
        pick,
    )
    return [sorted(hyps[b * n : (b + 1) * n], key=lambda h: -h.score) for b in range(src.size(0))]
