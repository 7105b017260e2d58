"""The Curator contract and the helpers every selection rule shares.

A curator is a pure function triple over a pytree state, optax-style: `init`, `select`
and `update`, plus `capacity(batch_size)`, the static number of rows the train step
receives. Everything here is jit-able with static shapes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

Embeddings = Mapping[str, jax.Array]
Losses = Mapping[str, jax.Array]
Info = dict[str, jax.Array]


class Curator(NamedTuple):
    """Pure functions of one curation rule (docs/architecture.md).

    init(rng, embeddings) -> state
    select(state, embeddings, losses, rng, candidates=None) -> (keep bool[B], info)
    update(state, embeddings, keep) -> state
    capacity(batch_size) -> int, the length of info['indices'] and info['weights'].
    `candidates` (optional bool[B]) restricts selection to those rows; `chain` uses it.
    """

    init: Callable[[jax.Array, Embeddings], Any]
    select: Callable[..., tuple[jax.Array, Info]]
    update: Callable[[Any, Embeddings, jax.Array], Any]
    capacity: Callable[[int], int]


class StepState(NamedTuple):
    """State of a stateless rule: only the number of updates seen (for logging/resume checks)."""

    step: jax.Array


def init_step_state(rng: jax.Array, embeddings: Embeddings) -> StepState:
    """`init` of a rule that keeps no state but a step counter."""
    del rng, embeddings
    return StepState(step=jnp.zeros((), jnp.int32))


def update_step_state(state: StepState, embeddings: Embeddings, keep: jax.Array) -> StepState:
    """`update` of a rule that keeps no state but a step counter."""
    del embeddings, keep
    return StepState(step=state.step + 1)


def replicated(tree: Any) -> Any:
    """The pytree with every explicitly sharded array gathered to all devices.

    Rules rank and sort over the whole global batch; under explicit sharding, sorting a
    sharded axis is an error, so the (small, B x D) inputs are all-gathered first. Arrays
    of auto-sharded meshes, or on one device, pass through (XLA partitions them itself).
    """

    def gather(x):
        sharding = jax.typeof(x).sharding
        if any(axis is not None for axis in sharding.spec):
            return jax.sharding.reshard(x, jax.sharding.NamedSharding(sharding.mesh,
                                                                      jax.sharding.PartitionSpec()))
        return x

    return jax.tree.map(gather, tree)


def on_global_batch(curator: Curator) -> Curator:
    """The curator with its inputs replicated first (see `replicated`)."""

    def init(rng, embeddings):
        return curator.init(rng, replicated(embeddings))

    def select(state, embeddings, losses, rng, candidates=None):
        embeddings, losses, candidates = replicated((embeddings, losses, candidates))
        return curator.select(state, embeddings, losses, rng, candidates=candidates)

    def update(state, embeddings, keep):
        return curator.update(state, *replicated((embeddings, keep)))

    return curator._replace(init=init, select=select, update=update)


def batch_size_of(embeddings: Embeddings) -> int:
    """Static number of rows of a batch of embeddings."""
    return embeddings["image"].shape[0]


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """Unit-norm rows (zero rows stay zero)."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def joint_embedding(embeddings: Embeddings, prefix: str = "") -> jax.Array:
    """concat(normalise(image), normalise(text)) / sqrt(2): one unit vector per pair.

    The 1/sqrt(2) puts pairs on the unit sphere, like the L2-normalised prototypes
    (the reference code normalises the concatenation too).
    """
    image = l2_normalize(embeddings[prefix + "image"])
    text = l2_normalize(embeddings[prefix + "text"])
    return jnp.concatenate([image, text], axis=-1) / jnp.sqrt(jnp.float32(2.0))


def finite_rows(x: jax.Array) -> jax.Array:
    """bool[B]: the rows of x [B, ...] whose values are all finite (a NaN/inf row is never kept)."""
    return jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=-1)


def resolve_candidates(candidates: jax.Array | None, batch_size: int) -> jax.Array:
    """The rows a rule may keep: all of them unless a mask is given."""
    if candidates is None:
        return jnp.ones((batch_size,), bool)
    return candidates.astype(bool)


def fraction_capacity(batch_size: int, keep_fraction: float, super_batch_ratio: float) -> int:
    """Rows kept by a fixed-fraction rule: batch/ratio when `super_batch_ratio` > 0, else a fraction."""
    fraction = 1.0 / super_batch_ratio if super_batch_ratio > 0 else keep_fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"kept fraction must be in (0, 1], got {fraction} (keep_fraction="
                         f"{keep_fraction}, super_batch_ratio={super_batch_ratio})")
    return max(1, min(batch_size, math.floor(fraction * batch_size + 0.5)))


def segment_rank(segment: jax.Array, value: jax.Array, num_segments: int) -> tuple[jax.Array, jax.Array]:
    """Rank of each row inside its segment by ascending value (ties by row), and segment sizes.

    Sorting by (segment, value, row) once gives every segment's order with static shapes.
    """
    rows = jnp.arange(segment.shape[0])
    order = jnp.lexsort((rows, value, segment))
    position = jnp.zeros_like(rows).at[order].set(rows)
    counts = jnp.zeros((num_segments,), jnp.int32).at[segment].add(1)
    starts = jnp.cumsum(counts) - counts
    return (position - starts[segment]).astype(jnp.int32), counts


def segment_top(score: jax.Array, segment: jax.Array, valid: jax.Array, num_segments: int,
                per_segment: int) -> jax.Array:
    """Keeps the `per_segment` highest-scoring valid rows of each segment."""
    seg = jnp.where(valid, segment, num_segments)
    rank, _ = segment_rank(seg, -score, num_segments + 1)
    return valid & (rank < per_segment)


def top_k_keep(score: jax.Array, k: int, candidates: jax.Array, rng: jax.Array | None = None,
               temperature: float = 0.0) -> jax.Array:
    """Keeps the k best candidate rows; with a temperature, samples k without replacement
    with probabilities softmax(score / temperature) (Gumbel top-k). A row whose score is
    NaN or infinite is never kept (top_k would rank NaN first)."""
    score = score.astype(jnp.float32)
    candidates = candidates & jnp.isfinite(score)
    if temperature > 0:
        score = score / temperature + jax.random.gumbel(rng, score.shape)
    score = jnp.where(candidates, score, -jnp.inf)
    _, idx = jax.lax.top_k(score, k)
    return jnp.zeros(score.shape, bool).at[idx].set(candidates[idx])


def random_keep(rng: jax.Array, candidates: jax.Array, k: int) -> jax.Array:
    """A uniform random set of k candidate rows (all of them when fewer)."""
    return top_k_keep(jnp.zeros(candidates.shape), k, candidates, rng, temperature=1.0)


def compact(keep: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Fixed-size row list: kept rows first (in row order), padded with other valid rows.

    Returns (keep, indices int32[capacity], weights float32[capacity], 0 for padding);
    `keep` is trimmed to what fits, so it always agrees with the weights.
    """
    order = jnp.argsort(jnp.logical_not(keep).astype(jnp.int8), stable=True)
    indices = order[:capacity].astype(jnp.int32)
    n_kept = jnp.minimum(jnp.sum(keep), capacity)
    weights = (jnp.arange(capacity) < n_kept).astype(jnp.float32)
    keep = jnp.zeros_like(keep).at[indices].set(weights > 0)
    return keep, indices, weights


def finish(keep: jax.Array, capacity: int, score: jax.Array, cluster: jax.Array,
           **metrics: jax.Array) -> tuple[jax.Array, Info]:
    """Turns a keep mask into the (keep, info) pair every `select` returns."""
    keep, indices, weights = compact(keep, capacity)
    info = dict(indices=indices, weights=weights, score=score.astype(jnp.float32),
                cluster=cluster.astype(jnp.int32), n_kept=jnp.sum(keep).astype(jnp.int32),
                kept_fraction=jnp.mean(keep.astype(jnp.float32)), **metrics)
    return keep, info


def keep_all() -> Curator:
    """The 'none' curator: trains on every row (capacity = batch size)."""

    def select(state, embeddings, losses, rng, candidates=None):
        del state, losses, rng
        batch = batch_size_of(embeddings)
        keep = resolve_candidates(candidates, batch)
        return finish(keep, batch, jnp.zeros((batch,)), jnp.full((batch,), -1))

    return Curator(init_step_state, select, update_step_state, lambda batch_size: batch_size)


def chain(*curators: Curator) -> Curator:
    """Applies curators in sequence, each choosing among the rows the previous kept.

    The state is the tuple of their states; every stage's `update` sees the final keep
    mask. info comes from the last stage, with each stage's metrics under 'stage{i}/';
    'cluster' is taken from whichever stage assigns clusters (-1 elsewhere).
    """
    if not curators:
        raise ValueError("chain needs at least one curator")

    def init(rng, embeddings):
        rngs = jax.random.split(rng, len(curators))
        return tuple(c.init(r, embeddings) for c, r in zip(curators, rngs))

    def select(state, embeddings, losses, rng, candidates=None):
        batch = batch_size_of(embeddings)
        keep = resolve_candidates(candidates, batch)
        rngs = jax.random.split(rng, len(curators))
        infos = []
        for curator, stage_state, stage_rng in zip(curators, state, rngs):
            keep, info = curator.select(stage_state, embeddings, losses, stage_rng, candidates=keep)
            infos.append(info)
        cluster = jnp.max(jnp.stack([info["cluster"] for info in infos]), axis=0)
        stage_metrics = {f"stage{i}/{k}": v for i, info in enumerate(infos) for k, v in info.items()
                         if k not in ("indices", "weights", "score", "cluster")}
        keep, info = finish(keep, capacity(batch), infos[-1]["score"], cluster, **stage_metrics)
        return keep, info

    def update(state, embeddings, keep):
        return tuple(c.update(s, embeddings, keep) for c, s in zip(curators, state))

    def capacity(batch_size: int) -> int:
        return min(c.capacity(batch_size) for c in curators)

    return Curator(init, select, update, capacity)
