"""Keep freed memory inside the process (glibc's ``mallopt``), so a training step's large tensors reuse
pages instead of faulting fresh ones in.

Why: a CPU training step allocates and frees tensors of a few MB many times (the output layer's
score blocks of ~16 MB, the decoder loop's buffers, gradients). glibc serves a block above its mmap
threshold with a fresh ``mmap`` and unmaps it on free (and trims the heap's top above its trim
threshold), so the next tensor of that size is page-faulted in and zeroed by the kernel again: on a
2-core AVX2 EPYC ~4 ms to fill a 16 MB score block that should take well under 1. Raising both
thresholds keeps blocks up to 32 MB (glibc's largest mmap threshold on 64-bit) in the heap and the
heap's freed top in the process: the process's resident memory stays at its peak instead of
shrinking between steps. ``benchmarks/README.md`` has the figures.

A no-op (returns False) where the C library is not glibc (macOS, musl): nothing else depends on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap top


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True where it took effect."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
