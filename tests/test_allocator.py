"""chexficient/allocator.py: huge pages for malloc stop repeated XLA CPU executions from
page-faulting their scratch memory, and a process restarts itself once to get them (measured
in fresh processes: glibc reads its tunables only at start)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest

from chexficient import allocator

pytestmark = pytest.mark.skipif(not allocator.supported(), reason="glibc >= 2.35 only")

FAULTS = """
import resource
import jax, jax.numpy as jnp
def loss(ws, x):  # an 8-layer MLP: its gradient keeps ~130 MB of activations
    for w in ws:
        x = jnp.tanh(x @ w)
    return x.sum()
f = jax.jit(jax.grad(loss))
x, w = jnp.ones((8192, 512)), [jnp.full((512, 512), 1e-3)] * 8
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(w, x))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults[2:])[5])  # the median call once compiled and warm
"""

REEXEC = """
import os, sys
print("start", flush=True)
from chexficient import allocator
allocator.reexec_with_huge_pages()
print(os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


def _env(tunables: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    return env if tunables is None else {**env, "GLIBC_TUNABLES": tunables}


@functools.cache
def _faults_per_call(tunables: str | None) -> float:
    out = subprocess.run([sys.executable, "-c", FAULTS], check=True, capture_output=True,
                         text=True, env=_env(tunables))
    return float(out.stdout.split()[-1])


def _huge_pages_available() -> bool:
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    return os.path.exists(path) and "[never]" not in open(path).read()


@pytest.mark.skipif(not _huge_pages_available(), reason="the kernel has huge pages off")
def test_huge_pages_stop_per_step_page_faults():
    default = _faults_per_call(None)
    huge = _faults_per_call(allocator.with_huge_pages(_env(None))["GLIBC_TUNABLES"])
    assert default > 10_000, "glibc's defaults should re-fault the scratch block on every call"
    # 512 pages per huge page at best; a fragmented host backs only part of the block with
    # huge pages (17x measured on a busy CI machine), so the bar is an order of magnitude.
    assert huge < default / 8


@pytest.mark.parametrize("given, expected", [
    (None, "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # the user's choice stands
])
def test_process_restarts_itself_once_with_the_tunable_and_its_arguments(given, expected):
    out = subprocess.run([sys.executable, "-c", REEXEC, "a", "--b=c"], check=True,
                         capture_output=True, text=True, env=_env(given)).stdout.splitlines()
    starts = 1 if given and "hugetlb" in given else 2
    assert out == ["start"] * starts + [f"{expected} ['a', '--b=c']"]
