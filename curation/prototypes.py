"""Prototypes of the joint embedding space: k-means warm-up, Sinkhorn assignment, EMA.

CheXficient's prototype life cycle, on device: the joint embeddings of the first W
batches fill a buffer; when it is full, k-means (fixed seed) sets K unit prototypes.
From then on, every update assigns the kept pairs to prototypes with a balanced
Sinkhorn-Knopp plan hardened to one-hot and moves each prototype by an EMA toward the
mean of its members, then re-normalises it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from curation.base import finite_rows, l2_normalize


@dataclasses.dataclass(frozen=True)
class PrototypeConfig:
    """Hyper-parameters of the prototypes; defaults are the paper's."""

    num_prototypes: int = 6
    warmup_batches: int = 10
    ema_decay: float = 0.9
    sinkhorn_iterations: int = 3
    sinkhorn_epsilon: float = 0.5
    kmeans_iterations: int = 20
    kmeans_seed: int = 0

    def __post_init__(self):
        if self.num_prototypes < 1 or self.warmup_batches < 0 or not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"invalid prototype config {self}")
        if self.sinkhorn_epsilon <= 0:
            raise ValueError(f"sinkhorn_epsilon must be > 0, got {self.sinkhorn_epsilon}")


class PrototypeState(NamedTuple):
    """Pytree state of the prototypes (checkpointed with the train state)."""

    prototypes: jax.Array   # float32 [K, D], unit rows once initialised
    buffer: jax.Array       # float32 [W * B, D] warm-up embeddings (NaN: skipped), zeroed once used
    filled: jax.Array       # int32: warm-up batches stored so far
    initialized: jax.Array  # bool: k-means has run
    step: jax.Array         # int32: updates applied
    drift: jax.Array        # float32: mean prototype movement of the last update
    occupancy: jax.Array    # float32 [K]: members per prototype in the last update


def squared_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
    """[N, K] squared Euclidean distances, clipped at 0 against round-off."""
    d = (jnp.sum(x * x, -1)[:, None] + jnp.sum(centers * centers, -1)[None, :]
         - 2.0 * x @ centers.T)
    return jnp.maximum(d, 0.0)


def assign(prototypes: jax.Array, joint: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nearest prototype of every pair and the Euclidean distance to it."""
    d = squared_distances(joint, prototypes)
    cluster = jnp.argmin(d, axis=-1).astype(jnp.int32)
    return cluster, jnp.sqrt(jnp.min(d, axis=-1))


@functools.partial(jax.jit, static_argnums=(1, 2))
def kmeans(x: jax.Array, k: int, iterations: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding then Lloyd iterations; returns L2-normalised centroids [k, D].

    An empty cluster keeps its previous centroid. Rows with a NaN or inf (the warm-up
    buffer's skipped pairs) are left out; with none left the centroids are 0.
    """
    valid = finite_rows(x)
    x = jnp.where(valid[:, None], x, 0.0)
    keys = jax.random.split(key, k)
    first = jax.random.randint(keys[0], (), 0, x.shape[0])
    first = x[jnp.where(valid[first], first, jnp.argmax(valid))]
    centers = jnp.zeros((k, x.shape[1]), jnp.float32).at[0].set(first)
    nearest = squared_distances(x, first[None])[:, 0]

    def seed(j, carry):  # a loop, not k unrolled draws: the curate step compiles faster
        centers, nearest = carry
        logits = jnp.where(valid, jnp.log(nearest + 1e-12), -jnp.inf)
        pick = x[jax.random.categorical(keys[j], logits)]
        return centers.at[j].set(pick), jnp.minimum(nearest, squared_distances(x, pick[None])[:, 0])

    centers, nearest = jax.lax.fori_loop(1, k, seed, (centers, nearest))

    def lloyd(_, centers):
        onehot = jax.nn.one_hot(jnp.argmin(squared_distances(x, centers), -1), k)
        onehot = jnp.where(valid[:, None], onehot, 0.0)
        counts = onehot.sum(0)
        means = (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, means, centers)

    centers = jax.lax.fori_loop(0, iterations, lloyd, centers)
    return l2_normalize(centers)


def sinkhorn(scores: jax.Array, mask: jax.Array, iterations: int, epsilon: float) -> jax.Array:
    """Balanced soft assignment of the masked rows of `scores` [B, K] (similarities).

    Sinkhorn-Knopp on exp(scores / epsilon): alternately give every prototype 1/K of
    the mass and every member 1/n; returns the plan scaled so member rows sum to 1
    (non-members are 0).
    """
    k = scores.shape[1]
    n = jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32)
    logits = scores / epsilon
    logits = logits - jnp.max(jnp.where(mask[:, None], logits, -jnp.inf))
    q = jnp.where(mask[:, None], jnp.exp(logits), 0.0)
    q = q / jnp.maximum(jnp.sum(q), 1e-30)

    def safe_div(a, b):
        return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)

    for _ in range(iterations):
        q = safe_div(q, jnp.sum(q, axis=0, keepdims=True)) / k
        q = safe_div(q, jnp.sum(q, axis=1, keepdims=True)) / n
    return q * n


def hard_assignment(plan: jax.Array, mask: jax.Array) -> jax.Array:
    """One-hot [B, K] of each member's most likely prototype (zero rows for non-members)."""
    onehot = jax.nn.one_hot(jnp.argmax(plan, axis=-1), plan.shape[1])
    return jnp.where(mask[:, None], onehot, 0.0)


def ema_update(prototypes: jax.Array, joint: jax.Array, onehot: jax.Array, decay: float) -> jax.Array:
    """p_k <- normalise(decay * p_k + (1 - decay) * mean of k's members); memberless p_k stay."""
    counts = onehot.sum(0)
    means = (onehot.T @ joint) / jnp.maximum(counts, 1.0)[:, None]
    moved = decay * prototypes + (1.0 - decay) * means
    return l2_normalize(jnp.where(counts[:, None] > 0, moved, prototypes))


def init_state(config: PrototypeConfig, joint: jax.Array) -> PrototypeState:
    """Empty warm-up buffer sized for W batches like `joint` (every update must get batches of
    its size); with W = 0, k-means on `joint` now."""
    batch, dim = joint.shape
    k = config.num_prototypes
    initialized = config.warmup_batches == 0
    prototypes = (kmeans(joint, k, config.kmeans_iterations, jax.random.key(config.kmeans_seed))
                  if initialized else jnp.zeros((k, dim), jnp.float32))
    return PrototypeState(
        prototypes=prototypes,
        buffer=jnp.zeros((config.warmup_batches * batch, dim), jnp.float32),
        filled=jnp.zeros((), jnp.int32),
        initialized=jnp.asarray(initialized),
        step=jnp.zeros((), jnp.int32),
        drift=jnp.zeros((), jnp.float32),
        occupancy=jnp.zeros((k,), jnp.float32))


def check_buffer(config: PrototypeConfig, buffer: jax.Array, batch: int) -> None:
    """Raises unless the warm-up buffer holds `warmup_batches` batches of `batch` rows: a batch
    of another size would be cut or zero-padded into k-means without a word (at trace time)."""
    if config.warmup_batches and buffer.shape[0] != config.warmup_batches * batch:
        sized = buffer.shape[0] // config.warmup_batches
        raise ValueError(
            f"prototype update got a batch of {batch} rows, but the warm-up buffer was sized by "
            f"init for {config.warmup_batches} batches of {sized}: init the curator state with "
            "a batch of the size every update gets")


def update_state(config: PrototypeConfig, state: PrototypeState, joint: jax.Array,
                 keep: jax.Array) -> PrototypeState:
    """One prototype step: buffer the batch during warm-up (k-means once full), else
    Sinkhorn-assign the kept pairs and move the prototypes by EMA. `joint` must have the
    rows of the batch `init_state` sized the buffer for (raises otherwise)."""
    check_buffer(config, state.buffer, joint.shape[0])
    finite = finite_rows(joint)

    def warmup(state: PrototypeState) -> PrototypeState:
        rows = state.filled * joint.shape[0] + jnp.arange(joint.shape[0])
        # a scatter, not dynamic_update_slice: that one rejects a state and a batch placed
        # on different meshes under explicit sharding. Non-finite pairs go in as NaN rows,
        # which k-means leaves out.
        buffer = state.buffer.at[rows].set(jnp.where(finite[:, None], joint, jnp.nan)
                                           .astype(jnp.float32))
        filled = state.filled + 1

        def run_kmeans(buffer):
            key = jax.random.key(config.kmeans_seed)
            centers = kmeans(buffer, config.num_prototypes, config.kmeans_iterations, key)
            return centers, jnp.zeros_like(buffer)

        prototypes, buffer = jax.lax.cond(
            filled >= config.warmup_batches, run_kmeans, lambda b: (state.prototypes, b), buffer)
        return state._replace(prototypes=prototypes, buffer=buffer, filled=filled,
                              initialized=filled >= config.warmup_batches,
                              drift=jnp.zeros((), jnp.float32),
                              occupancy=jnp.zeros_like(state.occupancy))

    def curate(state: PrototypeState) -> PrototypeState:
        # a non-finite pair is no member, and zeroed: 0 * NaN in the members' sums is NaN
        members = keep & finite
        clean = jnp.where(finite[:, None], joint, 0.0)
        plan = sinkhorn(clean @ state.prototypes.T, members, config.sinkhorn_iterations,
                        config.sinkhorn_epsilon)
        onehot = hard_assignment(plan, members)
        prototypes = ema_update(state.prototypes, clean, onehot, config.ema_decay)
        drift = jnp.mean(jnp.linalg.norm(prototypes - state.prototypes, axis=-1))
        return state._replace(prototypes=prototypes, drift=drift, occupancy=onehot.sum(0))

    if config.warmup_batches == 0:  # initialised by init_state; no buffer to fill
        state = curate(state)
    else:
        state = jax.lax.cond(state.initialized, curate, warmup, state)
    return state._replace(step=state.step + 1)
