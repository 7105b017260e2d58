"""Contrastive image-text losses over the global batch: softmax InfoNCE (CLIP) and sigmoid (SigLIP).

Both return (mean, per_example [B]) in float32 and take optional per-example `weights`: a row with
weight 0 is neither a positive nor a negative (its logits are masked) and its per-example loss is 0;
the mean is the weight-weighted mean over kept rows. These are plain jnp ops on global arrays: under
`jax.jit` with a batch sharded over the mesh, XLA inserts the collectives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
