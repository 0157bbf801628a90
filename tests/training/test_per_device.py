"""train.batch_tokens is per device: each rank takes whole batches of its own, and N ranks see exactly the
batches one process accumulates with accum_steps=N (the end-to-end check with 2 gloo processes:
tests/training/test_distributed.py; one optimizer step in 2 gloo processes: tests/training/test_gloo.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import random_ids

from seq2seq.training.loop import global_batch
from seq2seq.training.step import TrainData, rank_shares


class _Seqs(list):
    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self])


def _data(n: int = 20):
    return TrainData(_Seqs(random_ids(n, seed=1)), _Seqs(random_ids(n, seed=2)), [], [], [], [])


def _rows(shares) -> list[tuple[int, float]]:
    return [(batch.src.size(0), weight) for batch, weight in shares]


@pytest.mark.parametrize(
    "world,sizes,expected",
    [
        (1, [3, 4], [[(3, 1.0), (4, 1.0)]]),  # one process: its accum_steps batches, as before
        (2, [3, 4], [[(3, 1.0)], [(4, 1.0)]]),  # each rank a whole batch of its own
        (2, [3, 4, 5, 6], [[(3, 1.0), (4, 1.0)], [(5, 1.0), (6, 1.0)]]),  # accum_steps 2 on each rank
        (2, [3, 4, 5], [[(3, 1.0), (4, 1.0)], [(5, 1.0), (3, 0.0)]]),  # an epoch's end: a zero-weight copy
        (3, [3], [[(3, 1.0)], [(3, 0.0)], [(3, 0.0)]]),  # every rank joins DDP's all-reduce
    ],
)
def test_each_rank_takes_whole_batches_of_its_own(world, sizes, expected):
    data, start, micro = _data(), 0, []
    for size in sizes:
        micro.append(list(range(start, start + size)))
        start += size
    tokens = sum(len(data.train_tgt[i]) + 1 for idx in micro for i in idx)
    got = []
    for rank in range(world):
        shares, total = rank_shares(micro, data, SimpleNamespace(world=world, rank=rank))
        assert total == tokens  # the global step's target tokens, on every rank
        got.append(_rows(shares))
    assert got == expected


def test_the_log_line_spells_out_the_global_batch():
    assert global_batch(25000, 8, 2) == (
        "global batch 400,000 tokens = 25,000 per device x 8 devices x 2 accumulation steps"
    )
    assert (
        global_batch(4096, 1, 1)
        == "global batch 4,096 tokens = 4,096 per device x 1 device x 1 accumulation step"
    )
