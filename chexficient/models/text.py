"""Text tower: a transformer over SentencePiece ids, pooled at the last real (unpadded) token.

Padding never influences the output: padded keys are masked out of attention, and in causal
mode real tokens only see earlier positions anyway.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.layers import Block, layer_norm

_normal = nnx.initializers.normal(0.02)


def check_tokens(tokens: jax.Array, mask: jax.Array, max_len: int) -> None:
    """A text tower's inputs must be [B, L] ids and mask with L <= max_len."""
    if tokens.ndim != 2 or tokens.shape != mask.shape or tokens.shape[1] > max_len:
        raise ValueError(f'tokens and mask must both be [B, L] with L <= {max_len}, '
                         f'got {tokens.shape} and {mask.shape}')


class TextTransformer(nnx.Module):
    """Token + learned position embeddings, `depth` blocks (causal or bidirectional), final norm."""

    def __init__(self, *, vocab_size: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 max_len: int, causal: bool, dtype: jnp.dtype, rngs: nnx.Rngs):
        if vocab_size <= 0:
            raise ValueError(f'text vocab_size must be > 0 (from the tokenizer), got {vocab_size}')
        self.width, self.max_len, self.causal, self.dtype = width, max_len, causal, dtype
        self.embed = nnx.Embed(vocab_size, width, dtype=dtype, param_dtype=jnp.float32,
                               embedding_init=_normal, rngs=rngs)
        self.pos_embed = nnx.Param(_normal(rngs.params(), (max_len, width), jnp.float32))
        self.blocks = nnx.List([Block(width, heads, mlp_ratio, dtype=dtype, rngs=rngs)
                                for _ in range(depth)])
        self.norm = layer_norm(width, dtype, rngs)

    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        """tokens int [B,L], mask bool [B,L] (True = real token) -> pooled [B,W]."""
        return self.encode(tokens, mask)[0]

    def encode(self, tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(pooled [B,W], every position normed [B,L,W]); the latter feeds token-level losses."""
        check_tokens(tokens, mask, self.max_len)
        length = tokens.shape[1]
        x = (self.embed(tokens) + self.pos_embed[:length]).astype(self.dtype)
        attend = mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask=attend, causal=self.causal)
        last = jnp.max(jnp.where(mask, jnp.arange(length), 0), axis=1)
        pooled = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        return self.norm(pooled), self.norm(x)
