"""Request batching: the lines of concurrent requests merged into decoding batches.

Every request becomes a :class:`Job` (its encoded lines, decoding settings, a future). One dispatcher
task on the event loop builds a batch when the oldest waiting job has waited ``max_wait_ms`` or enough
lines wait to fill ``max_batch_tokens`` source pieces, and hands it to a single worker thread (the
event loop keeps answering while the model decodes); the results go back to each job's future.

Fairness: a batch takes the lines of the jobs that share the least recently served job's decoding
settings, one line from each in turn, so a request of hundreds of lines is decoded over several
batches while smaller requests ride along. A line is decoded whole (translate cuts a line longer than
the model's training limit into parts itself), so every line's result is exactly what ``seq2seq
translate`` gives: beam search decodes each sentence independently of its batch.

Beam search decodes each sentence independently of its batch (the same tokens in any batch), but the
floating-point sums behind scores and attention weights depend on the batch's shape (matrix kernels
block by batch size; padding changes reductions' lengths): a score printed to 4 decimals can differ
in its last digit from the one ``seq2seq translate`` prints, as translate's own figures differ between
two ``--batch-size`` values. A request with ``"exact": true`` is decoded alone and whole, in the
batches ``seq2seq translate`` makes of the same lines: byte for byte its output.

Sampling draws its random numbers in batch order from one generator seeded with
``decode.sampling_seed`` (translate's rule), so a sampling request is decoded alone and whole, with a
fresh generator: the same samples as ``seq2seq translate`` of the same lines.

A job whose client went away is cancelled: its lines not yet decoded leave the queue. Too many
pending lines refuse new work (:class:`Overloaded`, a 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from seq2seq.config import DecodeConfig
from seq2seq.serve.metrics import Metrics
from seq2seq.translator import LONG_LINE_PARTS, Translation, Translator


class Overloaded(Exception):
    """More lines are pending than the server takes."""


_ids = itertools.count()


@dataclass(eq=False)
class Job:
    ids: list[list[int]]  # encoded lines
    dc: DecodeConfig
    attention: bool
    future: asyncio.Future
    alone: bool = False  # decoded by itself and whole (sampling, or a request asking for exactness)
    results: list = field(default_factory=list)  # per line: list[Translation] once decoded
    next: int = 0  # first line not yet handed to a batch
    done: int = 0  # lines decoded
    turn: float = 0.0  # when it arrived or was last served: the least recent goes first
    arrived: float = 0.0
    cancelled: bool = False

    def __post_init__(self):
        self.results = [None] * len(self.ids)
        self.alone = self.alone or self.dc.sampling
        self.key = ("alone", next(_ids)) if self.alone else (dataclasses.astuple(self.dc), self.attention)


class Batcher:
    def __init__(self, max_batch_tokens: int, max_wait_ms: float, max_pending: int, metrics: Metrics):
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.max_pending, self.metrics = max_pending, metrics
        self.translator: Optional[Translator] = None
        self.jobs: list[Job] = []  # jobs with lines not yet handed to a batch
        self.pending = 0  # lines of unfinished jobs
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="seq2seq-decode")
        self._cut = 1 << 30

    def start(self, translator: Translator) -> None:
        """Begin dispatching (on the running event loop) with ``translator``."""
        self.translator = translator
        self._cut = LONG_LINE_PARTS * translator.cfg.train.max_len
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    def cost(self, ids: list[int]) -> int:
        """Source pieces a line puts into a batch (translate decodes at most the first LONG_LINE_PARTS x
        train.max_len of them)."""
        return max(1, min(len(ids), self._cut))

    async def translate(
        self, ids: list[list[int]], dc: DecodeConfig, attention: bool, alone: bool = False
    ) -> list[list[Translation]]:
        """The n-best lists of ``ids`` (one per line), decoded in the batches this batcher builds;
        ``alone``: in batches of their own, as ``seq2seq translate`` of just these lines decodes them.
        Raises :class:`Overloaded` when the lines do not fit in the pending limit; cancelling the
        awaiting task drops the job's remaining lines."""
        if self.pending and self.pending + len(ids) > self.max_pending:
            raise Overloaded(f"{self.pending} lines pending, at most {self.max_pending}")
        if not ids:
            return []
        now = time.monotonic()
        job = Job(
            ids, dc, attention, asyncio.get_running_loop().create_future(), alone, turn=now, arrived=now
        )
        self.jobs.append(job)
        self._count(len(ids))
        self._wake.set()
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def cancel(self, job: Job) -> None:
        if job.cancelled or job.future.done():
            return
        job.cancelled = True
        if job in self.jobs:
            self.jobs.remove(job)
        dropped = len(job.ids) - job.done
        self._count(-dropped)
        self.metrics.dropped.inc(dropped)
        job.future.cancel()

    def _count(self, n: int) -> None:
        self.pending += n
        self.metrics.queue.set(self.pending)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            oldest = min(self.jobs, key=lambda j: j.turn)
            wait = oldest.arrived + self.max_wait - time.monotonic()
            if wait > 0 and not self._full(oldest.key):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue  # look again: more lines, or the wait is over
            picks = self._take()
            if not picks:
                continue
            job0 = picks[0][0]
            ids = [job.ids[i] for job, i in picks]
            self.metrics.batch_sentences.observe(len(ids))
            self.metrics.batch_tokens.observe(sum(self.cost(x) for x in ids))
            try:
                found = await loop.run_in_executor(self._pool, self._decode, ids, job0.dc, job0.attention)
            except Exception as e:  # a bug, or out of memory: the requests in this batch fail, not the server
                for job in {job for job, _ in picks}:
                    if not job.future.done():
                        job.future.set_exception(e)
                        self._count(-(len(job.ids) - job.done))
                        if job in self.jobs:
                            self.jobs.remove(job)
                continue
            for (job, i), ts in zip(picks, found):
                if job.cancelled:
                    continue
                job.results[i] = ts
                job.done += 1
                self._count(-1)
                if job.done == len(job.ids):
                    job.future.set_result(job.results)
            self.metrics.sentences.inc(len(ids))

    def _full(self, key) -> bool:
        budget = self.max_batch_tokens
        for job in self.jobs:
            if job.key == key:
                for ids in job.ids[job.next :]:
                    budget -= self.cost(ids)
                    if budget <= 0:
                        return True
        return False

    def _take(self) -> list[tuple[Job, int]]:
        """(job, line) pairs of the next batch: the least recently served job's settings, one line of
        each such job in turn until the token budget is spent (at least one line)."""
        first = min(self.jobs, key=lambda j: j.turn)
        if first.alone:  # by itself and whole: the batches (and sampling's draws) of translate
            picks = [(first, i) for i in range(len(first.ids))]
            first.next = len(first.ids)
            self.jobs.remove(first)
            return picks
        same = sorted((j for j in self.jobs if j.key == first.key), key=lambda j: j.turn)
        picks: list[tuple[Job, int]] = []
        budget = self.max_batch_tokens
        while same:
            for job in list(same):
                cost = self.cost(job.ids[job.next])
                if picks and cost > budget:
                    same = []
                    break
                picks.append((job, job.next))
                job.next += 1
                budget -= cost
                if job.next == len(job.ids):
                    same.remove(job)
                    self.jobs.remove(job)
        now = time.monotonic()
        for job in {job for job, _ in picks}:
            job.turn = now
        return picks

    def _decode(self, ids: list[list[int]], dc: DecodeConfig, attention: bool) -> list[list[Translation]]:
        t = self.translator
        if dc.sampling:  # a fresh generator seeded with decode.sampling_seed, as a translate run starts with
            t = Translator(t.models, t.src_tok, t.tgt_tok, t.cfg, t.device)
            t.warn = self.translator.warn
        return t.translations(ids, dc, attention)
