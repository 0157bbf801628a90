"""Token-bucketed batches and their padded tensors."""

from __future__ import annotations

import random

import pytest
import torch

from seq2seq.constants import BOS, EOS, PAD
from seq2seq.data.batches import Batch, collate, make_batches, pad, source_tensor


def _lengths(n: int, seed: int = 0, lo: int = 1, hi: int = 40) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)], [rng.randint(lo, hi) for _ in range(n)]


def _cost(batch: list[int], src: list[int], tgt: list[int]) -> int:
    return len(batch) * max(max(src[i], tgt[i]) + 1 for i in batch)


@pytest.mark.parametrize("seed, batch_tokens", [(0, 200), (1, 64), (2, 1000), (3, 41)])
def test_every_index_exactly_once(seed, batch_tokens):
    src, tgt = _lengths(500, seed)
    batches = make_batches(src, tgt, batch_tokens, seed=seed, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(500))
    assert all(b for b in batches)


@pytest.mark.parametrize("batch_tokens", [41, 100, 333, 2000])
def test_respects_batch_tokens(batch_tokens):
    src, tgt = _lengths(400, seed=4)
    for batch in make_batches(src, tgt, batch_tokens, seed=1, epoch=2):
        assert _cost(batch, src, tgt) <= batch_tokens


def test_oversized_sentence_gets_its_own_batch():
    src = [3, 50, 2, 4, 60]
    tgt = [2, 10, 3, 3, 70]
    batches = make_batches(src, tgt, batch_tokens=20, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        if _cost(b, src, tgt) > 20:
            assert len(b) == 1 and b[0] in (1, 4)
    assert [1] in batches and [4] in batches


def test_batches_are_full_not_split_needlessly():
    # 10 sentences of equal size 4 (3 tokens + 1): exactly 5 fit into 20 tokens
    batches = make_batches([3] * 10, [3] * 10, batch_tokens=20, seed=0)
    assert sorted(len(b) for b in batches) == [5, 5]


def test_deterministic_for_seed_and_epoch():
    src, tgt = _lengths(300, seed=5)
    a = make_batches(src, tgt, 150, seed=7, epoch=3)
    b = make_batches(list(src), list(tgt), 150, seed=7, epoch=3)
    assert a == b


def test_differs_across_epochs_and_seeds():
    src, tgt = _lengths(300, seed=5)
    e0 = make_batches(src, tgt, 150, seed=7, epoch=0)
    e1 = make_batches(src, tgt, 150, seed=7, epoch=1)
    s8 = make_batches(src, tgt, 150, seed=8, epoch=0)
    assert e0 != e1
    assert e0 != s8
    # still a partition of the same indices
    assert sorted(i for b in e1 for i in b) == sorted(i for b in e0 for i in b)


def test_batches_group_similar_lengths():
    src, tgt = _lengths(600, seed=6, hi=60)
    batches = make_batches(src, tgt, 400, seed=0)
    padded = sum(_cost(b, src, tgt) for b in batches)
    real = sum(max(s, t) + 1 for s, t in zip(src, tgt))
    # length sorting keeps padding small compared to a random grouping
    assert padded < 1.5 * real


def test_no_shuffle_is_sorted_by_target_length():
    src, tgt = _lengths(100, seed=2)
    batches = make_batches(src, tgt, 120, shuffle=False)
    flat = [i for b in batches for i in b]
    keys = [(tgt[i], src[i]) for i in flat]
    assert keys == sorted(keys)
    assert make_batches(src, tgt, 120, seed=1, epoch=5, shuffle=False) == batches


def test_empty_input():
    assert make_batches([], [], 100) == []


def test_pad():
    out = pad([[5, 6], [7], []], prefix=[BOS], suffix=[EOS])
    assert out.dtype == torch.long
    assert out.tolist() == [[BOS, 5, 6, EOS], [BOS, 7, EOS, PAD], [BOS, EOS, PAD, PAD]]
    assert pad([[4, 5, 6], [9]]).tolist() == [[4, 5, 6], [9, PAD, PAD]]


def test_source_tensor():
    ids, lengths = source_tensor([[4, 5], [6, 7, 8]])
    assert ids.tolist() == [[4, 5, EOS, PAD], [6, 7, 8, EOS]]
    assert lengths.tolist() == [3, 4]


def test_collate_shapes_and_padding():
    g = torch.Generator().manual_seed(0)
    src = [torch.randint(4, 50, (k,), generator=g).tolist() for k in (5, 1, 8, 3)]
    tgt = [torch.randint(4, 50, (k,), generator=g).tolist() for k in (2, 6, 4, 1)]
    batch = collate(src, tgt)
    assert isinstance(batch, Batch)
    assert batch.src.shape == (4, 9)  # longest source 8 + EOS
    assert batch.tgt_in.shape == batch.tgt_out.shape == (4, 7)  # longest target 6 + BOS/EOS
    assert batch.lengths.tolist() == [6, 2, 9, 4]
    assert batch.ntokens == sum(len(t) + 1 for t in tgt) == 17
    assert batch.ntokens == int((batch.tgt_out != PAD).sum())
    for i, (s, t) in enumerate(zip(src, tgt)):
        row = batch.src[i].tolist()
        assert row[: len(s)] == s and row[len(s)] == EOS and all(x == PAD for x in row[len(s) + 1 :])
        assert row.index(EOS) == batch.lengths[i] - 1
        tin = batch.tgt_in[i].tolist()
        assert tin[0] == BOS and tin[1 : len(t) + 1] == t and all(x == PAD for x in tin[len(t) + 1 :])
        tout = batch.tgt_out[i].tolist()
        assert tout[: len(t)] == t and tout[len(t)] == EOS and all(x == PAD for x in tout[len(t) + 1 :])
        # teacher forcing: the output is the input shifted left by one
        assert tout[: len(t) + 1] == tin[1 : len(t) + 1] + [EOS]
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long


def test_batch_to_cpu_keeps_values():
    batch = collate([[4, 5]], [[6]])
    moved = batch.to(torch.device("cpu"))
    assert torch.equal(moved.src, batch.src) and torch.equal(moved.tgt_out, batch.tgt_out)
    assert moved.ntokens == batch.ntokens == 2


def test_collate_of_made_batches_stays_within_budget():
    g = torch.Generator().manual_seed(1)
    n = 200
    src = [
        torch.randint(4, 30, (int(k),), generator=g).tolist() for k in torch.randint(1, 25, (n,), generator=g)
    ]
    tgt = [
        torch.randint(4, 30, (int(k),), generator=g).tolist() for k in torch.randint(1, 25, (n,), generator=g)
    ]
    budget = 160
    for idx in make_batches([len(s) for s in src], [len(t) for t in tgt], budget, seed=3):
        b = collate([src[i] for i in idx], [tgt[i] for i in idx])
        assert b.src.numel() <= budget and b.tgt_out.numel() <= budget
