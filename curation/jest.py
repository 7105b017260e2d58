"""JEST: joint example selection by learnability for a contrastive loss (Evans et al. 2024).

With the sigmoid contrastive loss, a sub-batch's loss is a sum over its pairs (i, j)
of l_ij, so its learnability is the sum of A_ij = l_ij(learner) - l_ij(reference).
The sub-batch is drawn in chunks: the first by each pair's own A_ii, each next one by
the conditional learnability A_cc + sum_{j taken} (A_cj + A_jc), sampling without
replacement with probabilities softmax(logits / temperature) (top-k at temperature 0).

The curator sees embeddings, not the learner's live temperature and bias, so the
pairwise losses use fixed `logit_scale` and `logit_bias` (SigLIP's initial 10, -10).
Without 'ref_image' / 'ref_text' embeddings the reference loss is 0 (hard-learner JEST).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from curation.base import (Curator, Embeddings, batch_size_of, finish, finite_rows,
                           init_step_state, l2_normalize, resolve_candidates, top_k_keep,
                           update_step_state)


def pairwise_sigmoid_loss(image: jax.Array, text: jax.Array, logit_scale: float,
                          logit_bias: float) -> jax.Array:
    """[B, B] sigmoid-contrastive loss of every (image i, text j): positives on the diagonal."""
    logits = logit_scale * l2_normalize(image) @ l2_normalize(text).T + logit_bias
    sign = 2.0 * jnp.eye(image.shape[0]) - 1.0
    return jax.nn.softplus(-sign * logits)


def learnability_matrix(embeddings: Embeddings, logit_scale: float, logit_bias: float) -> jax.Array:
    """A_ij = learner minus reference pairwise loss (reference 0 when absent)."""
    scores = pairwise_sigmoid_loss(embeddings["image"], embeddings["text"], logit_scale, logit_bias)
    if "ref_image" in embeddings and "ref_text" in embeddings:
        scores = scores - pairwise_sigmoid_loss(embeddings["ref_image"], embeddings["ref_text"],
                                                logit_scale, logit_bias)
    return scores


def chunk_sizes(target: int, n_chunks: int) -> list[int]:
    """`target` rows in at most `n_chunks` chunks as even as possible (the first ones larger)."""
    n = max(1, min(n_chunks, target))
    return [target // n + (i < target % n) for i in range(n)]


def joint_sample(scores: jax.Array, candidates: jax.Array, sizes: list[int],
                 temperature: float, rng: jax.Array) -> jax.Array:
    """JEST's chunked sequential sampling: chunk i draws sizes[i] rows; returns the keep mask."""
    own = jnp.diagonal(scores)
    taken = jnp.zeros_like(candidates)
    for size, key in zip(sizes, jax.random.split(rng, len(sizes))):
        taken_f = taken.astype(scores.dtype)
        logits = own + scores @ taken_f + scores.T @ taken_f
        taken = taken | top_k_keep(logits, size, candidates & ~taken, key, temperature)
    return taken


def jest(filter_ratio: float = 0.8, n_chunks: int = 16, logit_scale: float = 10.0,
         logit_bias: float = -10.0, temperature: float = 1.0) -> Curator:
    """The JEST curator: keeps round((1 - filter_ratio) * batch) rows (at least one), drawn in
    n_chunks chunks (fewer when it keeps fewer rows than that)."""
    if not 0.0 <= filter_ratio < 1.0 or n_chunks < 1 or temperature < 0:
        raise ValueError(f"need 0 <= filter_ratio < 1, n_chunks >= 1, temperature >= 0; got "
                         f"{filter_ratio}, {n_chunks}, {temperature}")

    def capacity(batch_size: int) -> int:
        return max(1, round(batch_size * (1.0 - filter_ratio)))

    def select(state, embeddings, losses, rng, candidates=None):
        del state, losses
        batch = batch_size_of(embeddings)
        scores = learnability_matrix(embeddings, logit_scale, logit_bias)
        # a pair with a non-finite embedding is never kept, nor poisons the others' sums
        finite = jnp.all(jnp.stack([finite_rows(v) for v in embeddings.values()]), axis=0)
        valid = resolve_candidates(candidates, batch) & finite
        scores = jnp.where(finite[:, None] & finite[None, :], scores, 0.0)
        keep = joint_sample(scores, valid, chunk_sizes(capacity(batch), n_chunks), temperature, rng)
        kept = keep.astype(scores.dtype)
        return finish(keep, capacity(batch), jnp.diagonal(scores), jnp.full((batch,), -1),
                      learnability_kept=kept @ scores @ kept / jnp.maximum(jnp.sum(kept), 1.0))

    return Curator(init_step_state, select, update_step_state, capacity)
