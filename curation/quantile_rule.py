"""CheXficient's per-cluster quantile rule over the prototype distances of a global batch.

Inside each prototype's cluster, pairs are ranked by distance to the prototype:
above the `q_outlier` quantile they are outliers (dropped: likely noise or mismatched
pairs); between `q_support` and `q_outlier` they are support pairs (all kept: rare,
informative); the central rest is redundant and at most `max_per_cluster` of it is kept,
chosen by farthest-point sampling (or local density, or at random).

Quantiles are ranks within the cluster, matching `jnp.quantile(..., method='linear')`
on distinct distances: with n members, ranks 0..floor(q_support * (n-1)) are central
and ranks above floor(q_outlier * (n-1)) are outliers; ties go by row. q is resolved to
1e-4 and the floors are taken in integers, so no rounding flips a pair.

Kept share. Per cluster of n pairs, floor(.95(n-1)) - floor(.85(n-1)) support pairs plus
min(cap, central) central ones: about 0.1 * (B - K) + K * cap pairs of a batch B, e.g.
48 + 60 = 108 of 480 (22.5%, the paper's figure). The share falls with the batch size
and grows with K and the cap; measured figures are in docs/curation.md.
`capacity(B) = min(B, ceil((q_outlier - q_support) * B) + K + K * cap)` bounds it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from curation.base import (Curator, batch_size_of, finish, finite_rows, joint_embedding,
                           random_keep, resolve_candidates, segment_rank, segment_top)
from curation.prototypes import PrototypeConfig, assign, init_state, squared_distances, update_state

CENTRAL, SUPPORT, OUTLIER = 0, 1, 2
SAMPLERS = ("farthest", "density", "random")
_Q_SCALE = 10_000


def _quantile_int(q: float) -> int:
    """q in units of 1e-4, for exact integer floors."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    return round(q * _Q_SCALE)


def quantile_regions(distance: jax.Array, cluster: jax.Array, valid: jax.Array, num_clusters: int,
                     q_support: float, q_outlier: float) -> jax.Array:
    """CENTRAL / SUPPORT / OUTLIER code of every valid row within its cluster (-1 if invalid)."""
    segment = jnp.where(valid, cluster, num_clusters)
    rank, counts = segment_rank(segment, distance, num_clusters + 1)
    last = counts[segment] - 1
    last_central = (_quantile_int(q_support) * last) // _Q_SCALE
    last_support = (_quantile_int(q_outlier) * last) // _Q_SCALE
    region = jnp.where(rank <= last_central, CENTRAL, jnp.where(rank <= last_support, SUPPORT, OUTLIER))
    return jnp.where(valid, region, -1).astype(jnp.int32)


def farthest_point_sampling(x: jax.Array, candidates: jax.Array, start: jax.Array, m: int) -> jax.Array:
    """Greedy k-centre: for each row of `candidates` [S, B], m rows of x spread far apart.

    Starts at row `start[s]` (e.g. the member nearest the prototype), then repeatedly
    takes the candidate farthest from everything taken; returns the taken mask [S, B].
    """
    sets = jnp.arange(candidates.shape[0])
    norms = jnp.sum(x * x, axis=-1)

    def body(_, carry):
        taken, nearest, current = carry
        available = candidates[sets, current] & ~taken[sets, current]
        taken = taken.at[sets, current].set(taken[sets, current] | available)
        d = norms[None, :] + norms[current][:, None] - 2.0 * x[current] @ x.T
        nearest = jnp.where(candidates & ~taken, jnp.minimum(nearest, d), -jnp.inf)
        return taken, nearest, jnp.argmax(nearest, axis=-1)

    nearest = jnp.where(candidates, jnp.inf, -jnp.inf)
    taken, _, _ = jax.lax.fori_loop(0, m, body, (jnp.zeros_like(candidates), nearest, start))
    return taken


def local_sparsity(x: jax.Array, group: jax.Array, valid: jax.Array, k: int) -> jax.Array:
    """Mean distance of each valid row to its k nearest valid rows of the same group.

    Large = sparse; a row alone in its group gets +inf (always worth keeping).
    """
    same = valid[:, None] & valid[None, :] & (group[:, None] == group[None, :])
    same = same & ~jnp.eye(x.shape[0], dtype=bool)
    d = jnp.sqrt(squared_distances(x, x))
    neg_nearest, _ = jax.lax.top_k(jnp.where(same, -d, -jnp.inf), min(k, x.shape[0]))
    finite = jnp.isfinite(neg_nearest)
    count = jnp.sum(finite, axis=-1)
    mean = -jnp.sum(jnp.where(finite, neg_nearest, 0.0), axis=-1) / jnp.maximum(count, 1)
    return jnp.where(count > 0, mean, jnp.inf)


def cap_central(sampler: str, joint: jax.Array, distance: jax.Array, cluster: jax.Array,
                central: jax.Array, num_clusters: int, max_per_cluster: int, rng: jax.Array,
                density_k: int) -> jax.Array:
    """Keeps at most `max_per_cluster` central rows per cluster, chosen by `sampler`."""
    if sampler == "farthest":
        candidates = central[None, :] & (cluster[None, :] == jnp.arange(num_clusters)[:, None])
        start = jnp.argmin(jnp.where(candidates, distance[None, :], jnp.inf), axis=-1)
        return jnp.any(farthest_point_sampling(joint, candidates, start, max_per_cluster), axis=0)
    if sampler == "density":
        score = local_sparsity(joint, cluster, central, density_k)
    elif sampler == "random":
        score = jax.random.uniform(rng, distance.shape)
    else:
        raise ValueError(f"unknown central sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    return segment_top(score, cluster, central, num_clusters, max_per_cluster)


def chexficient_capacity(batch_size: int, num_prototypes: int, q_support: float, q_outlier: float,
                         max_per_cluster: int) -> int:
    """Safe bound on the rows the quantile rule keeps (support bound + K caps), <= batch."""
    spread = (_quantile_int(q_outlier) - _quantile_int(q_support)) / _Q_SCALE
    support = math.ceil(spread * batch_size) + num_prototypes
    return min(batch_size, support + num_prototypes * max_per_cluster)


def chexficient(prototypes: PrototypeConfig = PrototypeConfig(), q_outlier: float = 0.95,
                q_support: float = 0.85, max_per_cluster: int = 10, central_sampler: str = "farthest",
                density_k: int = 5) -> Curator:
    """The CheXficient curator: prototype quantile rule on the joint embedding.

    Warm-up (before k-means, and the paper's "nothing kept" case): the paper trains on
    the whole batch; with a static sub-batch we keep a uniform random `capacity` rows.
    info adds 'region' [B] (0 central, 1 support, 2 outlier, -1 n/a), 'cluster_sizes'
    [K], 'n_support', 'n_outlier', 'n_central_kept' and 'warmup'.
    """
    if not 0.0 <= q_support <= q_outlier <= 1.0:
        raise ValueError(f"need 0 <= q_support <= q_outlier <= 1, got {q_support}, {q_outlier}")
    if max_per_cluster < 0:
        raise ValueError(f"max_per_cluster must be >= 0 (central pairs kept per cluster), got "
                         f"{max_per_cluster}")
    if central_sampler not in SAMPLERS:
        raise ValueError(f"unknown central sampler {central_sampler!r}; valid: {', '.join(SAMPLERS)}")
    k = prototypes.num_prototypes

    def capacity(batch_size: int) -> int:
        return chexficient_capacity(batch_size, k, q_support, q_outlier, max_per_cluster)

    def init(rng, embeddings):
        del rng
        return init_state(prototypes, joint_embedding(embeddings))

    def select(state, embeddings, losses, rng, candidates=None):
        del losses
        joint = joint_embedding(embeddings)
        batch = batch_size_of(embeddings)
        valid = resolve_candidates(candidates, batch) & finite_rows(joint)  # NaN pairs: never kept
        sample_rng, fallback_rng = jax.random.split(rng)

        def curated(_):
            cluster, distance = assign(state.prototypes, joint)
            region = quantile_regions(distance, cluster, valid, k, q_support, q_outlier)
            central = cap_central(central_sampler, joint, distance, cluster, region == CENTRAL, k,
                                  max_per_cluster, sample_rng, density_k)
            keep = (region == SUPPORT) | central
            keep = jnp.where(jnp.any(keep), keep, random_keep(fallback_rng, valid, capacity(batch)))
            return keep, distance, jnp.where(valid, cluster, -1), region

        def warmup(_):
            keep = random_keep(fallback_rng, valid, capacity(batch))
            return keep, jnp.zeros((batch,)), jnp.full((batch,), -1), jnp.full((batch,), -1)

        keep, distance, cluster, region = jax.lax.cond(state.initialized, curated, warmup, None)
        in_cluster = cluster[:, None] == jnp.arange(k)[None, :]
        return finish(
            keep, capacity(batch), distance, cluster, region=region,
            cluster_sizes=jnp.sum(in_cluster, axis=0).astype(jnp.int32),
            n_support=jnp.sum(region == SUPPORT).astype(jnp.int32),
            n_outlier=jnp.sum(region == OUTLIER).astype(jnp.int32),
            n_central_kept=jnp.sum(keep & (region == CENTRAL)).astype(jnp.int32),
            warmup=jnp.logical_not(state.initialized))

    def update(state, embeddings, keep):
        return update_state(prototypes, state, joint_embedding(embeddings), keep)

    return Curator(init, select, update, capacity)
