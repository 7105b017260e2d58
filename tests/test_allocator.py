"""chexficient/allocator.py: with its malloc settings, repeated XLA CPU executions stop
page-faulting their scratch memory (measured in fresh processes: the settings are per process)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys

import pytest

from chexficient import allocator

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

SCRIPT = """
import resource, sys
from chexficient import allocator
tuned = sys.argv[1] == "tuned" and allocator.keep_freed_memory()
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
print(tuned, sorted(faults[2:])[5])  # the median call once compiled and warm
"""


@functools.cache
def _faults_per_call(mode: str, glibc_tunables: str = "") -> tuple[bool, float]:
    """(settings applied, median page faults of one call) in a fresh process."""
    env = dict(os.environ, GLIBC_TUNABLES=glibc_tunables) if glibc_tunables else None
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True,
                         text=True, env=env).stdout.split()
    return out[0] == "True", float(out[1])


def test_keep_freed_memory_stops_per_step_page_faults():
    applied, tuned = _faults_per_call("tuned")
    _, default = _faults_per_call("default")
    assert applied
    assert default > 10_000, "glibc's defaults should re-fault the scratch block on every call"
    assert tuned < default / 20


def test_glibc_tunables_give_a_child_process_the_same_settings():
    _, default = _faults_per_call("default")
    _, child = _faults_per_call("default", allocator.GLIBC_TUNABLES)
    assert default > 10_000 and child < default / 20
