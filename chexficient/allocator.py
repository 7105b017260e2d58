"""Opt-in glibc malloc settings that stop a CPU train step from re-faulting its scratch memory.

XLA's CPU client mallocs each step's temporaries in one block (423 MB for the `tiny` preset at
batch 128) on a worker thread. glibc serves a block that large with a fresh mmap and unmaps it
on free, so the kernel zero-fills ~100k pages again on every step: a third of the step's CPU
time goes to the kernel. One arena, no mmap and no trimming keep freed blocks for reuse: the
step alone runs 1.3x faster (benchmarks/train_throughput.py --keep_freed_memory). Opt-in
(`chexficient --keep_freed_memory`): whole `tiny` runs gained nothing (the quickstart took the
same time) and single arms ran up to 20% slower, every thread then sharing one malloc arena.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt parameters from glibc's malloc.h.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))  # -1: never trim
# The same settings for a child process, through its environment.
GLIBC_TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                  f"glibc.malloc.trim_threshold={2**64 - 1}")


def keep_freed_memory() -> bool:
    """Applies SETTINGS to this process; False where libc is not glibc (nothing changes).

    Call it before JAX runs anything: threads that already own an arena keep it.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
