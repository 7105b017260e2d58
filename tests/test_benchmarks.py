"""The parts of benchmarks/ that the performance docs' reasoning rests on."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_matmul_ceiling_reads_every_dot_of_a_compiled_step_with_its_shapes():
    """A dense layer's forward and backward compile to three dots (output, input gradient,
    weight gradient over the 64 rows): all are found, with their shapes and FLOPs, and each
    one timed alone runs."""
    import matmul_ceiling

    x, w = jnp.ones((64, 32)), jnp.ones((32, 16))
    grads = jax.jit(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w)), argnums=(0, 1)))
    dots = matmul_ceiling.hlo_dots(grads.lower(w, x).compile().as_text())
    assert sum(dots.values()) == 3
    assert sum(matmul_ceiling.dot_flops(d) * n for d, n in dots.items()) == 3 * 2 * 64 * 32 * 16
    contracted = sorted(d.lhs[d.lhs_contract[0]] for d in dots)
    assert contracted == [16, 32, 64]  # input gradient, output, weight gradient
    assert all(matmul_ceiling.seconds_alone(d, min_seconds=0.01, repeats=2) > 0 for d in dots)
