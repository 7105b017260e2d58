"""The trainer's jitted steps and train state outside its loop, on one device.

For benchmarks (steps timed on batches already in memory: `benchmarks/train_throughput.py`,
`benchmarks/run_throughput.py`) and estimates (steps compiled on abstract inputs, nothing
run: the quickstart's preflight). The step functions, the state layout and the schedule's
plan are the trainer's own (`pretrain.steps`, `pretrain.schedule`); `config` must name the
text vocabulary (`model.text.vocab_size`, as `pretrain.train.resolve` fills it in).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from chexficient.findings import NUM_FINDINGS
from chexficient.models import build_model
from pretrain import optimizer, schedule, steps
from pretrain.flops import compiled_flops


@dataclasses.dataclass
class Standalone:
    """Jitted steps by phase name (`full`, `subset` and, when curating, `curate`), the train
    state at step 0 (shapes only when abstract) and the schedule's plan. Each step is given
    `steps.step_input(phase, state)`, as the trainer gives it."""

    steps: dict[str, Callable]
    state: dict
    plan: schedule.Plan


def build(config: ml_collections.ConfigDict, pool_size: int, *, abstract: bool = False
          ) -> Standalone:
    """The steps and initial state a run of `config` on a pool of `pool_size` records trains
    with; `abstract` builds shapes only (no parameters in memory), for lowering."""
    make_model = lambda: build_model(config.model, nnx.Rngs(config.seed))  # noqa: E731
    graphdef, params = nnx.split(nnx.eval_shape(make_model) if abstract else make_model(),
                                 nnx.Param)
    tx = optimizer.make_optimizer(config.optim, params)
    plan = schedule.make(config, pool_size=pool_size, batch_size=config.batch_size,
                         embed_dim=config.model.embed_dim)
    init = functools.partial(steps.initial_state, tx=tx, plan=plan, seed=config.seed,
                             total_steps=plan.initial_total_steps())
    state = jax.eval_shape(init, params) if abstract else jax.jit(init)(params)
    fns = steps.build_steps(config, graphdef, tx, plan.curator)
    full = jax.jit(fns.full, donate_argnums=0)
    jitted = {"full": full, "subset": full}
    if plan.curator is not None:
        jitted["curate"] = jax.jit(fns.curate, donate_argnums=0)
    return Standalone(jitted, state, plan)


def abstract_batch(config: ml_collections.ConfigDict, rows: int = 0
                   ) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one training batch of `config` (of `rows` rows; 0: `batch_size`)."""
    return steps.abstract_batch(rows or config.batch_size, config.data.image_size,
                                config.data.text_len)


def random_batch(config: ml_collections.ConfigDict, seed: int = 0, rows: int = 0
                 ) -> dict[str, jax.Array]:
    """One batch of `config` in memory (of `rows` rows; 0: `batch_size`): random images, token
    ids of random lengths (padded), their masks, record indices and labels."""
    rng = np.random.default_rng(seed)
    batch, size, length = rows or config.batch_size, config.data.image_size, config.data.text_len
    lengths = rng.integers(length // 2, length, size=batch)
    mask = np.arange(length)[None, :] < lengths[:, None]
    tokens = rng.integers(3, config.model.text.vocab_size, (batch, length)) * mask
    return {"image": jnp.asarray(rng.standard_normal((batch, size, size, 1)), jnp.float32),
            "tokens": jnp.asarray(tokens, jnp.int32), "text_mask": jnp.asarray(mask),
            "index": jnp.arange(batch, dtype=jnp.int32),
            "labels": jnp.asarray(rng.integers(-2, 2, (batch, NUM_FINDINGS)), jnp.int8)}


def step_flops(config: ml_collections.ConfigDict, pool_size: int, phase: str = "full") -> float:
    """XLA's FLOP count of one call of the `phase` step, compiled on abstract inputs."""
    built = build(config, pool_size, abstract=True)
    lowered = built.steps[phase].lower(built.state,
                                       abstract_batch(config, built.plan.phase_batch(phase)))
    return compiled_flops(lowered.compile())


def seconds_per_call(compiled: Callable, state: dict, batch: dict, calls: int,
                     warmup: int = 3) -> tuple[float, dict]:
    """Mean seconds of `calls` calls of a compiled step on one batch after `warmup` calls,
    and the state after them (the step donates it)."""
    for _ in range(warmup):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / calls, state
