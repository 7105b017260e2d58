"""The MFU a train step could reach if everything but its matmuls took no time.

Reads every dot in the compiled step's optimised HLO (the matmuls of the linear layers, of
attention and of the loss, forward and backward, after XLA's rewrites), runs each distinct
shape alone in a jitted `lax.dot_general` on this machine, and sums their times. That sum is
the step's floor on this CPU with these kernels, so the step's FLOPs over it, over the matmul
peak measured in the same process, is the highest MFU the step can show: the ceiling against
which `train_throughput.py`'s MFU reads. Prints the step's measured MFU, the ceiling, the
dots' share of the step's FLOPs, and the --top shapes by time with their own fraction of the
peak. Like `train_throughput.py`, the script restarts itself with huge pages for malloc.

    python benchmarks/matmul_ceiling.py [--preset tiny] [--batch 64] [--stem conv] [--pool map]
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import time

import jax
import jax.numpy as jnp

from chexficient import allocator
from chexficient.machine import matmul_peak_flops
from pretrain import standalone
from pretrain.flops import compiled_flops
from train_throughput import build_step

DEFINITION = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\](?:\{([\d,]*))?")
DOT = re.compile(r"= \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)")
DIMS = re.compile(r"(lhs_batch|lhs_contracting|rhs_batch|rhs_contracting)_dims=\{([\d,]*)\}")

Dot = collections.namedtuple("Dot", "lhs rhs lhs_batch lhs_contract rhs_batch rhs_contract")
"""A dot as the step runs it: operand shapes in memory order (XLA's layout applied: a
column-major [M, K] operand is a row-major [K, M] one) and dimension numbers on them."""


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def hlo_dots(hlo: str) -> collections.Counter:
    """Every dot of an optimised HLO module as a `Dot` -> its count."""
    arrays = {}  # name -> (logical shape, dims from major to minor)
    for name, dims, layout in DEFINITION.findall(hlo):
        shape = _ints(dims)
        minor_to_major = _ints(layout) if layout else tuple(reversed(range(len(shape))))
        arrays[name] = shape, tuple(reversed(minor_to_major))
    dots: collections.Counter = collections.Counter()
    for line in hlo.splitlines():
        match = DOT.search(line)
        if not match:
            continue
        dims = {k: _ints(v) for k, v in DIMS.findall(match.group(4))}
        (lhs, lhs_order), (rhs, rhs_order) = arrays[match.group(2)], arrays[match.group(3)]
        dots[Dot(tuple(lhs[d] for d in lhs_order), tuple(rhs[d] for d in rhs_order),
                 tuple(lhs_order.index(d) for d in dims.get("lhs_batch", ())),
                 tuple(lhs_order.index(d) for d in dims.get("lhs_contracting", ())),
                 tuple(rhs_order.index(d) for d in dims.get("rhs_batch", ())),
                 tuple(rhs_order.index(d) for d in dims.get("rhs_contracting", ())))] += 1
    return dots


def dot_flops(dot: Dot) -> float:
    """2 x the output's elements x the contracted size."""
    contract = math.prod(dot.lhs[d] for d in dot.lhs_contract)
    batch = math.prod(dot.lhs[d] for d in dot.lhs_batch)
    free_lhs = math.prod(s for d, s in enumerate(dot.lhs)
                         if d not in dot.lhs_contract and d not in dot.lhs_batch)
    free_rhs = math.prod(s for d, s in enumerate(dot.rhs)
                         if d not in dot.rhs_contract and d not in dot.rhs_batch)
    return 2.0 * batch * free_lhs * free_rhs * contract


def seconds_alone(dot: Dot, min_seconds: float = 0.1, repeats: int = 5) -> float:
    """The fastest of `repeats` timings of the dot run alone, jitted, on float32 operands (the
    machine's noise only ever adds time, and a ceiling should not count it)."""
    numbers = ((dot.lhs_contract, dot.rhs_contract), (dot.lhs_batch, dot.rhs_batch))
    fn = jax.jit(lambda a, b: jax.lax.dot_general(a, b, numbers))
    a = jax.random.normal(jax.random.key(0), dot.lhs, jnp.float32)
    b = jax.random.normal(jax.random.key(1), dot.rhs, jnp.float32)
    fn(a, b).block_until_ready()
    reps = max(1, int(min_seconds / max(mean_seconds(fn, (a, b), 1), 1e-6)))
    return min(mean_seconds(fn, (a, b), reps) for _ in range(repeats))


def mean_seconds(fn, args: tuple, calls: int) -> float:
    """Mean seconds of `calls` calls of `fn(*args)`, waiting for the last result."""
    start = time.perf_counter()
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--stem", default="conv", choices=("patch", "conv"))
    parser.add_argument("--pool", default="map", choices=("cls", "mean", "map"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    allocator.reexec_with_huge_pages()
    step, state, config = build_step(args.preset, args.batch, "float32", args.stem, args.pool)
    batch = standalone.random_batch(config)
    compiled = step.lower(state, batch).compile()
    flops = compiled_flops(compiled)
    dots = hlo_dots(compiled.as_text())
    step_s, _ = standalone.seconds_per_call(compiled, state, batch, args.steps)
    peak = matmul_peak_flops()
    alone = {dot: seconds_alone(dot) for dot in dots}
    matmul_s = sum(alone[dot] * n for dot, n in dots.items())
    dot_total = sum(dot_flops(dot) * n for dot, n in dots.items())
    print(f"peak {peak / 1e9:.1f} GFLOP/s; step {1e3 * step_s:.1f} ms, {flops / 1e9:.2f} GFLOP "
          f"(XLA), MFU {flops / step_s / peak:.3f}")
    print(f"{sum(dots.values())} dots ({len(dots)} shapes), {dot_total / 1e9:.2f} GFLOP "
          f"({dot_total / flops:.3f} of the step's); alone they take {1e3 * matmul_s:.1f} ms, "
          f"{dot_total / matmul_s / peak:.3f} of the peak: MFU ceiling {flops / matmul_s / peak:.3f}; "
          f"the step's time outside them {1e3 * (step_s - matmul_s):.1f} ms "
          f"({(step_s - matmul_s) / step_s:.3f})")
    for dot, n in sorted(dots.items(), key=lambda d: -alone[d[0]] * d[1])[:args.top]:
        rate = dot_flops(dot) / alone[dot]
        print(f"  {n:3d} x {dot.lhs} . {dot.rhs} contract {dot.lhs_contract}x{dot.rhs_contract} "
              f"batch {dot.lhs_batch}: {1e3 * alone[dot] * n:6.2f} ms, {rate / peak:.2f} of peak")
    print(f"mfu={flops / step_s / peak:.4f} ceiling={flops / matmul_s / peak:.4f}")


if __name__ == "__main__":
    main()
