"""How a process that runs the networks on the CPU treats freed memory (glibc only; elsewhere nothing changes).

A 3-D network's activations are hundreds of MB each. glibc serves blocks that large with ``mmap`` and hands
them back to the system on ``free``, so every window of every pass maps, zero-fills and page-faults the same
memory again: on 2 cores that kernel work was half of a forward pass (0.89 s -> 0.45 s per 128^3 window, and
a default-ensemble case 53 s -> 29 s end to end, same labels, peak memory +15 %;
``Testing/Benchmarks/segment_benchmark.py``). :func:`keep_freed_memory` keeps freed blocks in the process
for reuse; :func:`release_memory` gives them back when a long-lived process (a batch worker) is done with a
case. ``TUMORSEG_KEEP_FREED_MEMORY=0`` in the environment keeps glibc's defaults (less memory held, slower).
"""

from __future__ import annotations

import ctypes
import gc
import os

__all__ = ["keep_freed_memory", "release_memory"]

# mallopt parameters from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2 ** 31 - 1  # largest value mallopt takes (an int): free memory goes back only by release_memory
_kept = False


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, Windows, musl)
        return None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse, for the rest of this process.

    Meant for processes that run inference or training (``tumorseg`` commands, batch workers), not for an
    interactive application that should shrink after a big job. Returns whether the allocator was changed
    (``False`` off glibc or when ``TUMORSEG_KEEP_FREED_MEMORY=0``). Idempotent.
    """
    global _kept
    if _kept:
        return True
    libc = _libc()
    if libc is None or os.environ.get("TUMORSEG_KEEP_FREED_MEMORY", "1") == "0":
        return False
    _kept = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _kept


def release_memory() -> None:
    """Collect garbage and give freed memory back to the system (a batch worker between cases: without it
    glibc keeps the largest case's memory, 608 -> 695 MB median over 100 cases, peaks 954 MB; with it
    639 MB after every one of 12 cases in a row)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
