"""Subword regularization: the training pairs segmented afresh each epoch by SentencePiece sampling
(unigram: sampling among the segmentations, Kudo 2018; bpe: BPE-dropout, Provilkov et al. 2020).

Batches are still formed from the unsampled lengths (:mod:`seq2seq.data.token_ids`); the sampled ids of a
batch are made when it is collated, from the kept pairs' text lines (memory-mapped: nothing per epoch is
held in memory). Only the training pairs are ever sampled: dev, test and decoding use the best
segmentation.

SentencePiece draws from one generator per thread, seeded once, when the thread first samples, from
the process-wide seed. So each batch is sampled in a fresh thread started right after setting that
seed to a hash of (train.seed, epoch, the batch's sentence indices), under a lock: the ids of a batch
are a pure function of those, whichever thread asks and whatever was sampled before, and a resumed
run samples exactly what the uninterrupted one did.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Optional, Sequence

import numpy as np
import sentencepiece as spm

from seq2seq.config.schema import SpmConfig
from seq2seq.data.token_ids import IdSeqs, TextLines
from seq2seq.data.tokenizer import Tokenizer

_SEEDING = threading.Lock()  # the process-wide seed holds from set_random_generator_seed to the first draw


def batch_seed(seed: int, epoch: int, indices: Sequence[int]) -> int:
    """The 32-bit SentencePiece seed of one batch: a hash of (seed, epoch, its sentence indices)."""
    h = hashlib.blake2b(np.asarray([seed, epoch], dtype=np.int64).tobytes(), digest_size=4)
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return int.from_bytes(h.digest(), "little")


class SampledPairs:
    """The training pairs' ids, sampled per batch and epoch; a sampled side longer than ``max_len``
    (train.max_len, which filtered the pairs) falls back to that side's unsampled ids."""

    def __init__(
        self,
        text: tuple[TextLines, TextLines],
        ids: tuple[IdSeqs, IdSeqs],
        toks: tuple[Tokenizer, Tokenizer],
        sc: SpmConfig,
        seed: int,
        max_len: Optional[int] = None,
    ):
        if len(text[0]) != len(ids[0]) or len(text[1]) != len(ids[1]):
            raise ValueError("the training text and ids hold different numbers of pairs")
        self.text, self.ids, self.toks = text, ids, toks
        self.seed, self.max_len = seed, max_len
        self.alpha, self.nbest_size = sc.alpha, sc.nbest_size

    def __len__(self) -> int:
        return len(self.ids[0])

    def batch(self, indices: Sequence[int], epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        """(source ids, target ids) of the pairs ``indices`` as sampled at ``epoch``."""
        result: dict = {}

        def work() -> None:
            try:
                result["ids"] = self._sample(indices)
            except BaseException as e:  # raised again in the calling thread
                result["error"] = e

        worker = threading.Thread(target=work, name="spm-sampling")
        with _SEEDING:
            spm.set_random_generator_seed(batch_seed(self.seed, epoch, indices))
            worker.start()  # a fresh thread: its generator is seeded from the value just set
            worker.join()
        if "error" in result:
            raise result["error"]
        return result["ids"]

    def _sample(self, indices: Sequence[int]) -> tuple[list[list[int]], list[list[int]]]:
        sides = []
        for text, ids, tok in zip(self.text, self.ids, self.toks):
            seqs = []
            for i in indices:  # one line per call: a list would be sampled on SentencePiece's own threads
                sampled = tok.sample(text[i], self.alpha, self.nbest_size)
                seqs.append(ids[i] if self.max_len and len(sampled) > self.max_len else sampled)
            sides.append(seqs)
        return sides[0], sides[1]
