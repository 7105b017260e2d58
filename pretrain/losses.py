"""Contrastive image-text losses over the global batch: softmax InfoNCE (CLIP) and sigmoid (SigLIP),
plus an optional token-level term within each pair (`token_alignment`).

All return (mean, per_example [B]) in float32 and take optional per-example `weights`: a row with
weight 0 is neither a positive nor a negative (its logits are masked) and its per-example loss is 0;
the mean is the weight-weighted mean over kept rows. These are plain jnp ops on global arrays: under
`jax.jit` with a batch sharded over the mesh, XLA inserts the collectives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from chexficient.models.clip import l2_normalize

_MASKED = -1e9  # a finite "minus infinity": exp underflows to 0 without NaNs in the gradient


def _keep_and_weights(batch: int, weights: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(keep bool [B], weights float32 [B]); no weights means all rows kept with weight 1."""
    if weights is None:
        return jnp.ones((batch,), bool), jnp.ones((batch,), jnp.float32)
    if weights.shape != (batch,):
        raise ValueError(f'weights must have shape ({batch},), got {weights.shape}')
    weights = weights.astype(jnp.float32)
    return weights > 0, weights


def _weighted_mean(per_example: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted mean; 0 when every weight is 0."""
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def _logits(img: jax.Array, txt: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """exp(logit_scale) * img @ txt.T in float32: [B_img, B_txt]."""
    if img.ndim != 2 or img.shape != txt.shape:
        raise ValueError(f'img and txt must both be [B, D], got {img.shape} and {txt.shape}')
    img, txt = img.astype(jnp.float32), txt.astype(jnp.float32)
    return jnp.exp(jnp.asarray(logit_scale, jnp.float32)) * (img @ txt.T)


def softmax_contrastive(img: jax.Array, txt: jax.Array, logit_scale: jax.Array,
                        weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Symmetric InfoNCE: per_example_i = (CE(image i -> texts) + CE(text i -> images)) / 2."""
    keep, weights = _keep_and_weights(img.shape[0], weights)
    logits = _logits(img, txt, logit_scale)
    pair_kept = keep[:, None] & keep[None, :]
    logits = jnp.where(pair_kept, logits, _MASKED)
    positives = jnp.diagonal(logits)
    image_to_text = jax.nn.logsumexp(logits, axis=1) - positives
    text_to_image = jax.nn.logsumexp(logits, axis=0) - positives
    per_example = jnp.where(keep, 0.5 * (image_to_text + text_to_image), 0.0)
    return _weighted_mean(per_example, weights), per_example


def sigmoid_contrastive(img: jax.Array, txt: jax.Array, logit_scale: jax.Array,
                        logit_bias: jax.Array,
                        weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """SigLIP: pair loss -log sigmoid(z_ij (exp(s) x_i.y_j + b)), z = +1 on the diagonal else -1.

    per_example_i = (sum_j L_ij + sum_j L_ji) / 2 over kept j, so the unweighted mean equals
    SigLIP's sum over all pairs divided by the batch size.
    """
    keep, weights = _keep_and_weights(img.shape[0], weights)
    logits = _logits(img, txt, logit_scale) + jnp.asarray(logit_bias, jnp.float32)
    signs = 2.0 * jnp.eye(img.shape[0], dtype=jnp.float32) - 1.0
    pair_kept = keep[:, None] & keep[None, :]
    pair_loss = jnp.where(pair_kept, -jax.nn.log_sigmoid(signs * logits), 0.0)
    per_example = 0.5 * (pair_loss.sum(axis=1) + pair_loss.sum(axis=0))
    return _weighted_mean(per_example, weights), per_example


def token_alignment(patches: jax.Array, words: jax.Array, word_mask: jax.Array,
                    temperature: float = 0.1,
                    weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Token-level alignment within each image-report pair (MGCA's cross-modal token alignment).

    Each word attends over its image's patches (softmax of similarity / temperature) and must
    pick its own attended image context out of those of the other words of its report
    (InfoNCE); each patch does the same over the report's words. The global losses only shape
    the pooled embeddings; this term makes patch tokens carry where a finding is, which dense
    tasks (segmentation) need. `patches` [B,P,E] and `words` [B,L,E] unit-norm, `word_mask`
    [B,L] True for real tokens; per_example = mean of the word and patch terms.
    """
    keep, weights = _keep_and_weights(patches.shape[0], weights)
    patches, words = patches.astype(jnp.float32), words.astype(jnp.float32)
    real = word_mask.astype(bool)
    sim = jnp.einsum('bld,bpd->blp', words, patches) / temperature
    # Words -> patches: an image context per word, contrasted with the other words' contexts.
    word_ctx = l2_normalize(jax.nn.softmax(sim, axis=2) @ patches)
    logits = jnp.einsum('bld,bmd->blm', words, word_ctx) / temperature
    logits = jnp.where(real[:, None, :], logits, _MASKED)
    word_ce = jax.nn.logsumexp(logits, axis=2) - jnp.diagonal(logits, axis1=1, axis2=2)
    word_loss = jnp.sum(jnp.where(real, word_ce, 0.0), axis=1) / jnp.maximum(real.sum(1), 1)
    # Patches -> words: a text context per patch, contrasted with the other patches' contexts.
    attend = jax.nn.softmax(jnp.where(real[:, :, None], sim, _MASKED), axis=1)
    patch_ctx = l2_normalize(jnp.einsum('blp,bld->bpd', attend, words))
    logits = jnp.einsum('bpd,bqd->bpq', patches, patch_ctx) / temperature
    patch_loss = jnp.mean(jax.nn.logsumexp(logits, axis=2)
                          - jnp.diagonal(logits, axis1=1, axis2=2), axis=1)
    per_example = jnp.where(keep, 0.5 * (word_loss + patch_loss), 0.0)
    return _weighted_mean(per_example, weights), per_example
