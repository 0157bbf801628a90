"""Token-based, length-bucketed batches of id sequences.

Batches are a pure function of (lengths, batch_tokens, seed, epoch): a resumed run rebuilds an
epoch's batches and continues at the saved position. With several corpora of other weights
(``data.sources``), :func:`epoch_pairs` first draws the epoch's pairs, as a pure function of the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seq2seq.constants import BOS, EOS, PAD


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids, each row ending with EOS, PAD after
    lengths: torch.Tensor  # (B,) source lengths (with EOS), on the CPU
    tgt_in: torch.Tensor  # (B, T) BOS + target ids, PAD after
    tgt_out: torch.Tensor  # (B, T) target ids + EOS, PAD after
    ntokens: int  # real target tokens (EOS included)

    def to(self, device: torch.device) -> "Batch":
        nb = device.type == "cuda"
        return Batch(
            self.src.to(device, non_blocking=nb),
            self.lengths,
            self.tgt_in.to(device, non_blocking=nb),
            self.tgt_out.to(device, non_blocking=nb),
            self.ntokens,
        )

    def pin_memory(self) -> "Batch":
        return Batch(
            self.src.pin_memory(),
            self.lengths,
            self.tgt_in.pin_memory(),
            self.tgt_out.pin_memory(),
            self.ntokens,
        )


def pad(seqs: list[list[int]], prefix: list[int] = (), suffix: list[int] = ()) -> torch.Tensor:
    """(N, max_len) tensor of prefix + seq + suffix, right-padded with PAD."""
    width = max(len(s) for s in seqs) + len(prefix) + len(suffix)
    out = torch.full((len(seqs), width), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        row = list(prefix) + list(s) + list(suffix)
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def source_tensor(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids -> (B, S) ids with EOS appended, (B,) lengths."""
    return pad(seqs, suffix=[EOS]), torch.tensor([len(s) + 1 for s in seqs], dtype=torch.long)


def collate(src: list[list[int]], tgt: list[list[int]]) -> Batch:
    s, lengths = source_tensor(src)
    return Batch(s, lengths, pad(tgt, prefix=[BOS]), pad(tgt, suffix=[EOS]), sum(len(t) + 1 for t in tgt))


def make_batches(
    src_lens, tgt_lens, batch_tokens: int, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> list[list[int]]:
    """Index lists whose padded size (sentences x longest side + 1) stays within ``batch_tokens``.

    Sentences are shuffled, then sorted by length (ties keep the shuffled order) so that a batch
    holds similar lengths and little padding; the batch order is shuffled again. Lengths may be
    lists or numpy arrays; sorting is done in numpy, so millions of pairs cost seconds.
    """
    src = np.asarray(src_lens, dtype=np.int64)
    tgt = np.asarray(tgt_lens, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(src)) if shuffle else np.arange(len(src))
    order = order[np.argsort(tgt[order] * (int(src.max(initial=0)) + 1) + src[order], kind="stable")]
    sizes = (np.maximum(src, tgt)[order] + 1).tolist()
    bounds, start, longest = [], 0, 0
    for pos, size in enumerate(sizes):
        if pos > start and max(longest, size) * (pos - start + 1) > batch_tokens:
            bounds.append((start, pos))
            start, longest = pos, 0
        longest = max(longest, size)
    if start < len(sizes):
        bounds.append((start, len(sizes)))
    if shuffle:
        bounds = [bounds[i] for i in rng.permutation(len(bounds))]
    return [order[a:b].tolist() for a, b in bounds]


def _drawn(n: int, weight: float) -> tuple[int, int]:
    """(times every pair is taken, pairs drawn once more) of a corpus of ``n`` pairs and ``weight``."""
    whole = int(np.floor(weight))
    return whole, int(np.floor((weight - whole) * n + 0.5))


def epoch_size(shares: list[tuple[int, float]]) -> int:
    """The pairs of one epoch of :func:`epoch_pairs`: the sum of round(weight x pairs)."""
    return sum(whole * n + extra for n, w in shares for whole, extra in [_drawn(n, w)])


def epoch_pairs(shares: list[tuple[int, float]], seed: int, epoch: int) -> np.ndarray:
    """The pair indices of one epoch over corpora laid out one after the other: ``shares`` holds each
    corpus's (pairs, weight). A corpus of ``n`` pairs and weight ``w`` gives round(w x n) of them:
    every pair floor(w) times, then round((w - floor(w)) x n) different pairs drawn without replacement
    from the generator of (seed, epoch, corpus). In corpus order; :func:`make_batches` shuffles."""
    out, start = [], 0
    for i, (n, weight) in enumerate(shares):
        whole, extra = _drawn(n, weight)
        pairs = np.arange(start, start + n, dtype=np.int64)
        out.append(np.tile(pairs, whole))
        if extra:
            rng = np.random.default_rng([seed, epoch, i])
            out.append(np.sort(rng.choice(pairs, size=extra, replace=False)))
        start += n
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def epoch_batches(
    src_lens, tgt_lens, batch_tokens: int, seed: int, epoch: int, shares: list[tuple[int, float]] = ()
) -> list[list[int]]:
    """The batches (pair indices) of one training epoch: :func:`make_batches` over every pair once, or,
    with ``shares`` of which a weight is not 1, over the pairs :func:`epoch_pairs` draws (a pair drawn
    twice is in the epoch twice)."""
    if all(weight == 1 for _, weight in shares):
        return make_batches(src_lens, tgt_lens, batch_tokens, seed, epoch)
    chosen = epoch_pairs(shares, seed, epoch)
    src, tgt = np.asarray(src_lens)[chosen], np.asarray(tgt_lens)[chosen]
    return [chosen[b].tolist() for b in map(np.asarray, make_batches(src, tgt, batch_tokens, seed, epoch))]
