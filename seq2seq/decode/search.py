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
    Finished sentences leave the active batch. A step moves one small tensor to the host (each row's
    pick and its log-prob), and its attention weights when asked for."""
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
        # the step's one host transfer (two with attention); ids are exact in float32 (below 2^24)
        lps, toks = torch.stack([best_logp, best.to(best_logp.dtype)]).tolist()
        step_attn = attn.float().cpu() if return_attention else None  # (A, S)
        keep = []
        for row, b in enumerate(active):
            out_logp[b] += lps[row]
            if step_attn is not None:
                out_attn[b].append(step_attn[row])
            if toks[row] == EOS:
                out_eos[b] = True
            else:
                out_tokens[b].append(int(toks[row]))
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


# A hypothesis's output ids, as beam search keeps them on the host: (last id, the node before) or None
# for none yet. A step extends every live row by one node, however long its history is.
Node = Optional[tuple[int, "Node"]]


def _ids(node: Node) -> list[int]:
    """The output ids of ``node``, first to last."""
    out = []
    while node is not None:
        out.append(node[0])
        node = node[1]
    return out[::-1]


def top_candidates(scores: torch.Tensor, logp: torch.Tensor, k: int):
    """The ``k`` best continuations of each sentence's beams, best first: scores (A, K) cumulative
    log-probs, logp (A*K, V) -> values (A, k), beam (A, k), id (A, k): one top-k over all K*V sums.

    ``logp`` becomes the sums (added in place: a fresh (A, K*V) tensor of a few MB costs more to
    page in than to fill). One flat top-k, not two stages (each row's top k, then the sentence's top k
    of those K*k): the values would be the same, but torch.topk orders equal values as its algorithm
    happens to, and a tie (equal sums, common in a small model) would break another way."""
    A, K = scores.shape
    V = logp.size(1)
    sums = logp.view(A, K, V).add_(scores.unsqueeze(2)).view(A, K * V)
    top, where = sums.topk(min(k, K * V), dim=1)
    return top, where // V, where % V


@dataclass
class _Beams:
    """Beam search's running state: A active sentences x K beams, row a*K + k."""

    state: object  # the model's decoder state, (A*K) rows
    scores: torch.Tensor  # (A, K) cumulative log-prob
    prev: torch.Tensor  # (A*K,) last ids
    history: list[Node]  # (A*K) output ids so far, on the host
    live: list[list[float]]  # (A, K) the scores, on the host
    tokens: Optional[torch.Tensor]  # (A*K, t) output ids so far, only for rules that read them
    attn: Optional[torch.Tensor]  # (A*K, t, S) attention history, when asked for
    active: list[int]  # original index of each active sentence
    finished: list[list[Hypothesis]]  # per original sentence
    # (A*K, S) attention summed over each beam's steps, 1 at source padding (log 1 = 0); None: beta = 0
    coverage: Optional[torch.Tensor] = None
    beta: float = 0.0  # coverage penalty weight

    def select_rows(self, rows: torch.Tensor) -> None:
        """Rows ``rows`` (N,) of the per-row histories kept on the device (ids, attention, coverage)."""
        if self.tokens is not None:
            self.tokens = self.tokens.index_select(0, rows)
        if self.attn is not None:
            self.attn = self.attn.index_select(0, rows)
        if self.coverage is not None:
            self.coverage = self.coverage.index_select(0, rows)

    def finish(self, ends: list[tuple[int, int, float]], alpha: float, eos: bool) -> None:
        """Finished hypotheses from rows: ``ends`` (original sentence, row, log-prob). One host transfer for
        the coverage penalties and one for the attention, and only when those are kept."""
        rows = [row for _, row, _ in ends]
        index = torch.tensor(rows, dtype=torch.long, device=self.prev.device) if rows else None
        penalty = [0.0] * len(rows)
        if self.coverage is not None and rows:
            cov = self.coverage.index_select(0, index)  # (N, S)
            # a position that got no attention at all (underflow) counts as the smallest normal float's
            # log, about -87, not -inf: such hypotheses still rank by their other terms
            cov = cov.clamp(min=torch.finfo(cov.dtype).tiny, max=1.0)
            penalty = (self.beta * cov.log().sum(1)).tolist()
        attn = self.attn.index_select(0, index).cpu() if self.attn is not None and rows else None
        for i, (b, row, lp) in enumerate(ends):
            h_attn = attn[i] if attn is not None else None
            self.finished[b].append(_finished(_ids(self.history[row]), lp, alpha, h_attn, eos, penalty[i]))


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

    Each step scores all K x V continuations of a sentence's K beams at once (the top 2K of them, see
    :func:`top_candidates`). Candidates ending in EOS among the top K are finished; the best K others
    continue. A sentence stops when it has K finished hypotheses or reaches its maximum length
    (its live beams are then finished as they are), and leaves the active batch. With K = 1 this
    is exactly :func:`greedy`. ``coverage_penalty`` beta > 0 adds GNMT's coverage penalty to the scores
    of finished hypotheses (see the module's docstring).

    A step moves one small tensor to the host (the top candidates: what finished, which beam each
    continuing row comes from, its id and score); the output ids so far stay there. Only a step where
    hypotheses finish moves more, and only what was asked for: their coverage penalties and attention.
    """
    B, K, device = src.size(0), beam_size, src.device
    state = model.encode(src, lengths)
    limits = max_lengths(lengths, max_len_ratio, max_len_offset)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0
    beams = _Beams(
        state=state.select(torch.arange(B, device=device).repeat_interleave(K)),
        scores=scores,
        prev=torch.full((B * K,), BOS, dtype=torch.long, device=device),
        history=[None] * (B * K),
        live=[[0.0] + [float("-inf")] * (K - 1) for _ in range(B)],
        tokens=torch.empty(B * K, 0, dtype=torch.long, device=device) if rules.no_repeat_ngram else None,
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
    if beams.attn is not None:
        beams.attn = torch.cat([beams.attn, attn.float().unsqueeze(1)], dim=1)  # (A*K, t+1, S)
    if beams.coverage is not None:
        beams.coverage = beams.coverage + attn.float()  # (A*K, S)
    top_scores, top_beam, top_tok = top_candidates(beams.scores, logp, 2 * K)  # (A, 2K) each, best first
    is_eos = top_tok == EOS
    cont = ~is_eos & ((~is_eos).cumsum(1) <= K)  # the K best non-EOS candidates continue
    positions = torch.arange(top_tok.size(1), device=device)
    pick = ((~cont).long() * (2 * K) + positions).argsort(dim=1)[:, :K]  # (A, K)
    ended = top_scores[:, :K].masked_fill(~is_eos[:, :K], float("-inf"))  # (A, K): -inf where none ended
    new_scores, new_beam, new_tok = (
        top_scores.gather(1, pick),
        top_beam.gather(1, pick),
        top_tok.gather(1, pick),
    )
    # the step's one host transfer; ids and beams are exact in the scores' float type (below 2^24)
    parts = (ended, top_beam[:, :K], new_scores, new_beam, new_tok)
    report = torch.cat([x.to(top_scores.dtype) for x in parts], dim=1).tolist()  # A x 5K
    rows = (torch.arange(A, device=device).unsqueeze(1) * K + new_beam).view(-1)  # (A*K,)
    ends = []  # the candidates that ended, up to a sentence's first K finished hypotheses
    for a, (b, r) in enumerate(zip(beams.active, report)):
        room = K - len(beams.finished[b])
        ends += [(b, a * K + int(r[K + j]), r[j]) for j in range(K) if r[j] > float("-inf")][:room]
    if ends:
        beams.finish(ends, alpha, True)
    history = beams.history
    beams.history = [
        (int(r[4 * K + k]), history[a * K + int(r[3 * K + k])])
        for a, r in enumerate(report)
        for k in range(K)
    ]
    beams.live = [r[2 * K : 3 * K] for r in report]
    beams.select_rows(rows)
    if beams.tokens is not None:
        beams.tokens = torch.cat([beams.tokens, new_tok.view(-1, 1)], dim=1)
    beams.state, beams.scores, beams.prev = state.reorder(rows), new_scores, new_tok.view(-1)


def _finish_and_shrink(beams: _Beams, K: int, alpha: float, at_limit: list[bool]) -> None:
    """Sentences with K finished hypotheses leave the batch; so do those at their length limit, whose
    live beams finish as they are."""
    keep, ends = [], []
    for a, b in enumerate(beams.active):
        if len(beams.finished[b]) >= K:
            continue
        if at_limit[a]:  # out of length: the live beams finish as they are
            ends += [(b, a * K + k, lp) for k, lp in enumerate(beams.live[a]) if lp > float("-inf")]
            continue
        keep.append(a)
    if ends:
        beams.finish(ends, alpha, False)
    if len(keep) < len(beams.active):
        device = beams.prev.device
        index = torch.tensor(keep, dtype=torch.long, device=device)
        rows = (index.unsqueeze(1) * K + torch.arange(K, device=device)).view(-1)
        beams.state, beams.prev = beams.state.select(rows), beams.prev.index_select(0, rows)
        beams.scores = beams.scores.index_select(0, index)
        beams.select_rows(rows)
        beams.history = [beams.history[a * K + k] for a in keep for k in range(K)]
        beams.live = [beams.live[a] for a in keep]
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
