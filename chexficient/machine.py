"""What this machine can do: the sustained float32 matmul rate MFU figures divide by."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Sustained float32 matmul FLOP/s of this machine's default device, best of `repeats`
    [n, n] products (one compiled warm-up call first)."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
