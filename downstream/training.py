"""The one training loop of the adapters: seeded minibatch AdamW on an nnx module's parameters.

Segmentation decoders, report decoders and fine-tuned encoders all train through `fit`, so
there is a single jitted step (`jax.jit` over the `nnx.split` state) and one progress bar.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from downstream.encoders import batched

LossFn = Callable[[nnx.Module, dict[str, jax.Array]], jax.Array]


def minibatches(arrays: dict[str, np.ndarray], batch_size: int, steps: int,
                seed: int) -> Iterator[dict[str, np.ndarray]]:
    """`steps` batches of `batch_size` rows, reshuffled (seeded) every pass over the data.

    Batches never straddle passes, so with fewer rows than `batch_size` each batch holds the
    whole (reshuffled) set; shapes stay static and the step compiles once.
    """
    n = len(next(iter(arrays.values())))
    size = min(batch_size, n)
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(n), 0
    for _ in range(steps):
        if pos + size > n:
            order, pos = rng.permutation(n), 0
        rows = order[pos:pos + size]
        pos += size
        yield {k: v[rows] for k, v in arrays.items()}


def fit(module: nnx.Module, loss_fn: LossFn, arrays: dict[str, np.ndarray], *, steps: int,
        batch_size: int, learning_rate: float, seed: int, weight_decay: float = 1e-4,
        desc: str = "fit") -> list[float]:
    """Trains `module` in place on `loss_fn(module, batch)`; returns the loss of every step.

    Only `nnx.Param`s train; other state (if any) is held fixed. Warmup-free cosine decay.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    tx = optax.adamw(optax.cosine_decay_schedule(learning_rate, max(steps, 1)),
                     weight_decay=weight_decay)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch):
        def loss_of(p):
            return loss_fn(nnx.merge(graphdef, p, rest), batch)
        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    bar = tqdm(minibatches(arrays, batch_size, steps, seed), total=steps, desc=desc,
               unit="step", leave=False)
    for batch in bar:
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    nnx.update(module, params)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"{desc}: the loss became non-finite during training")
    return losses


def predictor(module: nnx.Module, apply_fn: Callable[..., jax.Array],
              batch_size: int) -> Callable[..., np.ndarray]:
    """A numpy function of arrays: `apply_fn(module, *batch)` over fixed-size batches, jitted once
    (reuse it across eval splits; the module's current parameters are captured now)."""
    graphdef, state = nnx.split(module)
    fn = functools.partial(jax.jit(lambda state, *xs: apply_fn(nnx.merge(graphdef, state), *xs)),
                           state)
    return lambda *inputs: batched(fn, list(inputs), batch_size)
