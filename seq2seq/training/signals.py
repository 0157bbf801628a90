"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (what Slurm, Kubernetes and torchrun send) at a step
boundary, with every process stopping after the same step.

A signal only sets a flag: the step in progress finishes. After each step all ranks agree on the
flag with one tiny all-reduce on the CPU (:meth:`seq2seq.training.distributed.Dist.max`; gloo, also beside
NCCL, so no GPU sync), so they stop together even when the signal reached them at different steps or
reached only one of them; rank 0 then saves ``last.pt`` once and every rank exits the same way:

- SIGINT: ``KeyboardInterrupt``; the CLI prints ``interrupted`` and exits with 130 (128 + 2).
- SIGTERM: exit status 143 (128 + 15), the status a shell and a scheduler expect of a process that
  ended on SIGTERM.

Both resume exactly with ``seq2seq train`` on the same run directory.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Set by the first SIGINT or SIGTERM; ``signum`` says which (0: none)."""

    def __init__(self) -> None:
        self.signum = 0

    def set(self, signum: int, _frame=None) -> None:
        self.signum = max(self.signum, int(signum))  # SIGTERM outranks SIGINT

    def is_set(self) -> bool:
        return self.signum != 0


@contextlib.contextmanager
def stop_flag():
    """SIGINT and SIGTERM set a :class:`StopFlag` instead of raising mid-step (main thread only, where
    Python delivers signals); the previous handlers come back on exit."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag.set) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def agreed(flag, dist) -> int:
    """The signal all ranks stop for after this step (0: go on): the largest any rank has seen."""
    return dist.max(int(flag.signum) if flag.is_set() else 0)


def describe(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"


def exit_for(signum: int) -> NoReturn:
    """Leave the run as the module's docstring says for ``signum``."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(EXIT_STATUS.get(signum, 128 + signum))
