"""Transparent huge pages for XLA's per-step scratch memory on CPU, set by re-executing once.

XLA's CPU client mallocs each step's temporaries in one block (423 MB for the `tiny` preset at
batch 128) on a worker thread. glibc serves a block that large with a fresh mmap and unmaps it
on free, so the kernel faults in and zero-fills ~100k 4 KiB pages again on every step: a third
of the step's CPU time. glibc's `glibc.malloc.hugetlb=1` tunable (glibc >= 2.35) makes malloc
ask for transparent huge pages on its mmaps: 2 MiB pages, ~500 faults a step. The `tiny` train
step runs ~1.45x faster and whole `tiny` runs ~1.3x, at the same peak memory
(benchmarks/train_throughput.py). Tunables are read only when a process starts, so the
`chexficient` command re-executes itself once with the setting; child processes (grain
workers) inherit it. A kernel with huge pages off (`never`) ignores it. Opt out by starting
with `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` (any value given there is kept).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"


def with_huge_pages(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with `glibc.malloc.hugetlb=1` added to its GLIBC_TUNABLES (other tunables kept)."""
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    return {**env, "GLIBC_TUNABLES": ":".join(tunables + [f"{TUNABLE}=1"])}


def supported() -> bool:
    """glibc >= 2.35 on Linux: the versions that read the tunable."""
    if platform.system() != "Linux":
        return False
    libc, version = platform.libc_ver()
    return libc == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)


def reexec_with_huge_pages() -> None:
    """Replaces this process by the same command with the tunable set.

    Does nothing where glibc would not read it, or where GLIBC_TUNABLES already names it (this
    process is the re-executed one, or the user chose a value). Call it before any work.
    """
    if not supported() or TUNABLE in os.environ.get("GLIBC_TUNABLES", ""):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, with_huge_pages(os.environ))
