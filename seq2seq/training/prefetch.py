"""The next training step's batches, prepared in a background thread while this step runs.

Collating token ids into padded tensors (and pinning them, on CUDA) is host work that would
otherwise sit between two steps while the GPU waits. The batch order is fixed in advance (a pure
function of seed and epoch: :func:`seq2seq.data.batches.make_batches`), so the loop names the next step's
batches before it runs this one; the only random draws are those of subword sampling, seeded per batch
(:mod:`seq2seq.data.sampling`), and the results are those of preparing every step in turn (the resume
tests check it bit for bit).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable, Optional


class Ahead:
    """``fn(*args)`` one call ahead, in one background thread."""

    def __init__(self, fn: Callable[..., Any]):
        self._fn = fn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="next-batch")
        self._pending: Optional[tuple[Hashable, Future]] = None

    def get(self, key: Hashable, args: tuple, next_key: Optional[Hashable] = None, next_args: tuple = ()):
        """``fn(*args)``: the background result when ``key`` is what was prepared, else computed now;
        then starts ``fn(*next_args)`` under ``next_key`` (None: nothing comes next)."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == key:
            result = pending[1].result()  # re-raises what the thread raised
        else:
            if pending is not None:
                pending[1].cancel()
            result = self._fn(*args)
        if next_key is not None:
            self._pending = (next_key, self._pool.submit(self._fn, *next_args))
        return result

    def close(self) -> None:
        self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)
