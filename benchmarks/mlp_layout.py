"""Would storing activations features-major speed up the train step's matmuls on a CPU?

XLA's CPU backend gives YNNPACK only dots that contract the left operand's last dimension, so
with activations stored tokens-major ([tokens, width], as the model does) every weight
gradient (`x^T dy`, contracting the tokens) runs on Eigen at 0.4-0.8 of the matmul peak
(`matmul_ceiling.py`). Stored features-major ([width, tokens]), with a backward written so that
both gradients contract their left operand's last dimension, the weight and input gradients
go to YNNPACK with no copy; the forward product then contracts the kernel's first dimension
and stays on Eigen. This times one transformer MLP sub-block (standardise, fc1, tanh-GELU,
fc2, residual), forward and backward, both ways on the same values (the
script checks the gradients agree), alternating the two --repeats times, and prints the dots
left on Eigen and the milliseconds of each. The sub-block's gain did not carry over to whole
train steps written that way (docs/performance.md, "Why the steps stop short of MFU 0.8").
Like the `chexficient` command, it restarts itself with huge pages for malloc.

    python benchmarks/mlp_layout.py [--tokens 4096] [--width 128] [--repeats 8]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp

from chexficient import allocator
from matmul_ceiling import mean_seconds


def standardize(x: jax.Array, axis: int) -> jax.Array:
    centred = x - x.mean(axis, keepdims=True)
    return centred * jax.lax.rsqrt((centred * centred).mean(axis, keepdims=True) + 1e-6)


def mlp_tokens_major(p: dict, x: jax.Array) -> jax.Array:
    """x [tokens, width], kernels [in, out]: the model's layout."""
    h = jax.nn.gelu(standardize(x, -1) @ p["w1"] + p["b1"], approximate=True)
    return x + h @ p["w2"] + p["b2"]


@jax.custom_vjp
def features_major_dense(kernel: jax.Array, x_t: jax.Array) -> jax.Array:
    """kernel [in, out] (as stored) and x_t [in, tokens] -> [out, tokens]."""
    return kernel.T @ x_t


def _dense_fwd(kernel, x_t):
    return kernel.T @ x_t, (kernel, x_t)


def _dense_bwd(residuals, g):
    # Both gradients contract their left operand's last dimension, YNNPACK's form, with no
    # copy: x_t [in, tokens] by g [out, tokens] over the tokens, the kernel by g over `out`.
    kernel, x_t = residuals
    return jax.lax.dot_general(x_t, g, (((1,), (1,)), ((), ()))), kernel @ g


features_major_dense.defvjp(_dense_fwd, _dense_bwd)


def mlp_features_major(p: dict, x_t: jax.Array) -> jax.Array:
    """x_t [width, tokens], the same kernels [in, out]."""
    h_t = jax.nn.gelu(features_major_dense(p["w1"], standardize(x_t, 0)) + p["b1"][:, None],
                      approximate=True)
    return x_t + features_major_dense(p["w2"], h_t) + p["b2"][:, None]


def eigen_dots(compiled) -> int:
    """Dots of a compiled program that contract their left operand's first dimension."""
    return sum(" dot(" in line and "lhs_contracting_dims={0}" in line
               for line in compiled.as_text().splitlines())


def milliseconds(fn, args, calls: int = 20) -> float:
    """Mean milliseconds of `calls` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    return 1e3 * mean_seconds(fn, args, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096, help="batch x tokens per example")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    allocator.reexec_with_huge_pages()
    keys = jax.random.split(jax.random.key(0), 4)
    width, hidden = args.width, 4 * args.width
    params = {"w1": 0.05 * jax.random.normal(keys[0], (width, hidden)), "b1": jnp.zeros(hidden),
              "w2": 0.05 * jax.random.normal(keys[1], (hidden, width)), "b2": jnp.zeros(width)}
    x = jax.random.normal(keys[2], (args.tokens, width))
    g = jax.random.normal(keys[3], (args.tokens, width))
    ways = {
        "tokens-major": (jax.jit(jax.grad(lambda p, x: jnp.sum(mlp_tokens_major(p, x) * g),
                                          argnums=(0, 1))), x),
        "features-major": (jax.jit(jax.grad(lambda p, x_t: jnp.sum(mlp_features_major(p, x_t)
                                                                   * g.T), argnums=(0, 1))),
                           x.T.copy()),
    }
    (grads_a, dx_a), (grads_b, dx_b) = (fn(params, a) for fn, a in ways.values())
    for k in params:
        assert jnp.allclose(grads_a[k], grads_b[k], rtol=1e-3, atol=1e-3), k
    assert jnp.allclose(dx_a, dx_b.T, rtol=1e-3, atol=1e-4)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(args.repeats):
        for name in list(ways)[::-1] if repeat % 2 else list(ways):
            fn, a = ways[name]
            times[name].append(milliseconds(fn, (params, a)))
    flops = 3 * 2 * 2 * args.tokens * width * hidden  # two dense layers, forward and backward
    for name, (fn, a) in ways.items():
        best = min(times[name])
        print(f"{name}: {eigen_dots(fn.lower(params, a).compile())} dots on Eigen, "
              f"{best:.2f} ms (median {statistics.median(times[name]):.2f}), "
              f"{flops / best / 1e6:.0f} GFLOP/s")
    ratio = min(times["tokens-major"]) / min(times["features-major"])
    print(f"features-major speedup: {ratio:.3f}x")


if __name__ == "__main__":
    main()
