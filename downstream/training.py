"""The one training loop of the adapters: seeded minibatch AdamW on an nnx module's parameters.

Segmentation decoders, report decoders and fine-tuned encoders all train through `fit`, so
there is a single jitted step (`jax.jit` over the `nnx.split` state) and one progress bar.
The step and `predictor`'s function are jitted once at module level with the graph, the loss
and the optimiser settings as static arguments: fits of same-shaped modules with the same
(module-level) loss function, such as one decoder per label draw, compile once.
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


def _adamw(learning_rate: float, steps: int, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(optax.cosine_decay_schedule(learning_rate, steps), weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnames=("graphdef", "loss_fn", "optimiser"))
def _train_step(params, rest, opt_state, batch, *, graphdef, loss_fn: LossFn,
                optimiser: tuple[float, int, float]):
    def loss_of(p):
        return loss_fn(nnx.merge(graphdef, p, rest), batch)
    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = _adamw(*optimiser).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("graphdef", "apply_fn"))
def _apply(state, *inputs, graphdef, apply_fn: Callable[..., jax.Array]) -> jax.Array:
    return apply_fn(nnx.merge(graphdef, state), *inputs)


def fit(module: nnx.Module, loss_fn: LossFn, arrays: dict[str, np.ndarray], *, steps: int,
        batch_size: int, learning_rate: float, seed: int, weight_decay: float = 1e-4,
        desc: str = "fit") -> list[float]:
    """Trains `module` in place on `loss_fn(module, batch)`; returns the loss of every step.

    Only `nnx.Param`s train; other state (if any) is held fixed. Warmup-free cosine decay.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    optimiser = (float(learning_rate), max(int(steps), 1), float(weight_decay))
    opt_state = _adamw(*optimiser).init(params)
    step = functools.partial(_train_step, graphdef=graphdef, loss_fn=loss_fn, optimiser=optimiser)
    losses = []
    bar = tqdm(minibatches(arrays, batch_size, steps, seed), total=steps, desc=desc,
               unit="step", leave=False, disable=None)  # a passing bar: terminals only
    for batch in bar:
        params, opt_state, loss = step(params, rest, opt_state, batch)
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
    fn = functools.partial(_apply, state, graphdef=graphdef, apply_fn=apply_fn)
    return lambda *inputs: batched(fn, list(inputs), batch_size)
