"""seq2seq.training.cpumem: with glibc, freed tensors' memory stays in the process for the next ones."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import sys, torch
from seq2seq.training.cpumem import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
base = rss_mib()
blocks = [torch.empty(1 << 20).fill_(1.0) for _ in range(64)]  # 64 tensors of 4 MiB
peak = rss_mib()
del blocks
print(kept, peak - base, rss_mib() - base)
"""


def probe(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    kept, grown, kept_mib = out.stdout.split()
    return kept, int(grown), int(kept_mib)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt, /proc"
)
def test_freed_memory_stays_in_the_process_for_the_next_tensors():
    kept, grown, after_free = probe("keep")
    assert kept == "True" and grown >= 250
    assert after_free >= grown - 16, "256 MiB freed: the heap keeps it (no page faults to reuse it)"
    _, grown, after_free = probe("plain")
    assert grown >= 250 and after_free < grown / 2, "glibc's default gives it back (what cpumem changes)"


def test_it_never_fails_where_it_cannot_apply(monkeypatch):
    import ctypes

    from seq2seq.training import cpumem

    def no_libc(*_args, **_kwargs):
        raise OSError("no C library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert cpumem.keep_freed_memory() is False
