"""The default online curator: score = w_loss * loss score + w_rarity * prototype rarity.

Both terms are z-scores so the weights mean what they say: the loss score is
standardised over the batch, rarity is the distance to the pair's prototype
standardised within its cluster. Pairs above the `q_outlier` quantile of their
cluster can be excluded (likely noise, which a pure rarity score would favour).
Prototypes follow CheXficient's life cycle; during warm-up rarity is 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from curation.base import (Curator, batch_size_of, finish, finite_rows, fraction_capacity,
                           joint_embedding, resolve_candidates, top_k_keep)
from curation.loss_scores import check_sampler, loss_score
from curation.prototypes import PrototypeConfig, assign, init_state, update_state
from curation.quantile_rule import OUTLIER, quantile_regions


def masked_zscore(x: jax.Array, group: jax.Array, valid: jax.Array, num_groups: int) -> jax.Array:
    """(x - mean) / std within each group over the valid rows (0 for invalid rows)."""
    seg = jnp.where(valid, group, num_groups)
    w = valid.astype(jnp.float32)
    count = jnp.zeros((num_groups + 1,)).at[seg].add(w)
    mean = jnp.zeros((num_groups + 1,)).at[seg].add(w * x) / jnp.maximum(count, 1.0)
    var = jnp.zeros((num_groups + 1,)).at[seg].add(w * (x - mean[seg]) ** 2) / jnp.maximum(count, 1.0)
    z = (x - mean[seg]) / jnp.sqrt(var[seg] + 1e-12)
    return jnp.where(valid, z, 0.0)


def combined(prototypes: PrototypeConfig = PrototypeConfig(), w_loss: float = 1.0,
             w_rarity: float = 1.0, score: str = "learnability", keep_fraction: float = 0.2,
             super_batch_ratio: float = 0.0, sampler: str = "topk", temperature: float = 1.0,
             q_outlier: float = 0.95, drop_outliers: bool = True) -> Curator:
    """Keeps a fixed share of the batch by w_loss * loss z-score + w_rarity * rarity z-score."""
    gumbel_temperature = check_sampler(sampler, temperature)
    k = prototypes.num_prototypes

    def capacity(batch_size: int) -> int:
        return fraction_capacity(batch_size, keep_fraction, super_batch_ratio)

    def init(rng, embeddings):
        del rng
        return init_state(prototypes, joint_embedding(embeddings))

    def loss_of(losses, batch):
        return loss_score(losses, score) if w_loss else jnp.zeros((batch,))

    def select(state, embeddings, losses, rng, candidates=None):
        batch = batch_size_of(embeddings)
        valid = resolve_candidates(candidates, batch)
        finite = jnp.isfinite(loss_of(losses, batch)) & finite_rows(joint_embedding(embeddings))
        # a pair with a non-finite loss or embedding is never kept; a batch without one takes
        # the rule's own computation (no cond when eager), so its scores keep their bits
        all_finite = jnp.all(finite)
        if not isinstance(all_finite, jax.core.Tracer):
            return rule(state, embeddings, losses, rng, valid if all_finite else valid & finite)
        return jax.lax.cond(all_finite, lambda: rule(state, embeddings, losses, rng, valid),
                            lambda: rule(state, embeddings, losses, rng, valid & finite))

    def rule(state, embeddings, losses, rng, valid):
        batch = batch_size_of(embeddings)
        loss_z = masked_zscore(loss_of(losses, batch), jnp.zeros((batch,), jnp.int32), valid, 1)
        cluster, distance = assign(state.prototypes, joint_embedding(embeddings))
        cluster = jnp.where(state.initialized & valid, cluster, -1)
        rarity = masked_zscore(distance, cluster, cluster >= 0, k)
        outlier = quantile_regions(distance, cluster, cluster >= 0, k, 0.0, q_outlier) == OUTLIER
        eligible = valid & ~(outlier & drop_outliers)
        values = w_loss * loss_z + w_rarity * rarity
        keep = top_k_keep(values, capacity(batch), eligible, rng, gumbel_temperature)
        return finish(keep, capacity(batch), values, cluster,
                      n_outlier=jnp.sum(outlier).astype(jnp.int32),
                      warmup=jnp.logical_not(state.initialized))

    def update(state, embeddings, keep):
        return update_state(prototypes, state, joint_embedding(embeddings), keep)

    return Curator(init, select, update, capacity)
