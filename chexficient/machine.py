"""What this machine can do: the sustained matmul rate MFU figures divide by."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak_flops(n: int | None = None, repeats: int = 10, dtype: str = "float32") -> float:
    """Sustained matmul FLOP/s of this machine's default device in `dtype`, best of `repeats`
    [n, n] products (one compiled warm-up call first). n defaults to 2048 on a CPU and 8192 on
    an accelerator (a 2048 product leaves a GPU's tensor cores half idle)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
