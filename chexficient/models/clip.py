"""Two-tower CLIP: image and text towers, linear projections to a shared L2-normalised space.

Holds the learnable temperature (`logit_scale` = log(1/T)) and the sigmoid-loss `logit_bias` as
float32 scalar parameters; losses live in `pretrain/losses.py`. With `local_dim` > 0 it also
projects patch and word tokens to a shared space for the token alignment loss.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.bert import BertText
from chexficient.models.layers import dense
from chexficient.models.text import TextTransformer
from chexficient.models.vit import ViT


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Unit-norm rows, computed in float32."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


class CLIP(nnx.Module):
    """Image tower `image` + `image_proj`, text tower `text` + `text_proj`, logit scale and bias;
    `image_local_proj` / `text_local_proj` for patch and word tokens when `local_dim` > 0;
    `classifier`, a multi-label head on the pooled image features, when `classes` > 0."""

    def __init__(self, image: ViT, text: TextTransformer | BertText, *, embed_dim: int,
                 temperature_init: float, bias_init: float, rngs: nnx.Rngs, local_dim: int = 0,
                 classes: int = 0):
        if temperature_init <= 0:
            raise ValueError(f'temperature_init must be > 0, got {temperature_init}')
        self.image, self.text = image, text
        self.image_proj = dense(image.width, embed_dim, image.dtype, rngs, use_bias=False)
        self.text_proj = dense(text.width, embed_dim, text.dtype, rngs, use_bias=False)
        self.logit_scale = nnx.Param(jnp.asarray(math.log(1.0 / temperature_init), jnp.float32))
        self.logit_bias = nnx.Param(jnp.asarray(bias_init, jnp.float32))
        # Created last, so the towers' parameters do not depend on local_dim for a given seed.
        self.local_dim = local_dim
        self.image_local_proj = (dense(image.width, local_dim, image.dtype, rngs, use_bias=False)
                                 if local_dim else None)
        self.text_local_proj = (dense(text.width, local_dim, text.dtype, rngs, use_bias=False)
                                if local_dim else None)
        # The supervised reference's multi-label head on the pooled image features (last too).
        self.classifier = dense(image.width, classes, image.dtype, rngs) if classes else None

    def encode_image(self, images: jax.Array, *, train: bool = False) -> tuple[jax.Array, dict]:
        """images [B,S,S,1] -> (emb [B,D] unit-norm, aux {'pooled','tokens','features'}) in float32.

        `train` is accepted for callers' symmetry; the towers have no stochastic layers (no
        dropout, as in CLIP/SigLIP pretraining), so it changes nothing.
        """
        del train
        pooled, aux = self.image(images)
        aux = jax.tree.map(lambda a: a.astype(jnp.float32), {'pooled': pooled, **aux})
        return l2_normalize(self.image_proj(pooled)), aux

    def encode_text(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        """tokens int32 [B,L], mask bool [B,L] -> emb [B,D] unit-norm float32."""
        return l2_normalize(self.text_proj(self.text(tokens, mask)))

    def encode_tokens(self, images: jax.Array, tokens: jax.Array, mask: jax.Array
                      ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(image emb [B,D], text emb [B,D], patch tokens [B,P,E], word tokens [B,L,E]), all
        unit-norm float32; E = local_dim. One pass of each tower."""
        if not self.local_dim:
            raise ValueError('this model has no token heads: build it with model.local_dim > 0')
        img, aux = self.encode_image(images)
        pooled, words = self.text.encode(tokens, mask)
        return (img, l2_normalize(self.text_proj(pooled)),
                l2_normalize(self.image_local_proj(aux['tokens'])),
                l2_normalize(self.text_local_proj(words)))

    def classify(self, images: jax.Array) -> jax.Array:
        """images [B,S,S,1] -> float32 logits [B, classes] of the supervised head."""
        if self.classifier is None:
            raise ValueError('this model has no classifier head: build it with model.classes > 0')
        return self.classifier(self.image(images)[0]).astype(jnp.float32)

    def __call__(self, images: jax.Array, tokens: jax.Array,
                 mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encode_image(images)[0], self.encode_text(tokens, mask)
