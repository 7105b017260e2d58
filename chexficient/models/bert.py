"""BERT-architecture text tower, so that a clinical BERT checkpoint can start the text side.

Post-LayerNorm blocks (x = norm(x + sublayer(x))), learned positions, an embedding LayerNorm,
exact GELU; pooled at the first token ([CLS]). Inputs are one segment, so BERT's token-type
embedding is the constant row 0: importing a checkpoint adds it to the position embeddings.
Same interface as `TextTransformer`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.layers import Attention, Mlp, layer_norm
from chexficient.models.text import check_tokens

_normal = nnx.initializers.normal(0.02)


class PostNormBlock(nnx.Module):
    """BERT's block: x = norm1(x + attn(x)), then x = norm2(x + mlp(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, *, norm_eps: float,
                 dtype: jnp.dtype, rngs: nnx.Rngs):
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.norm1 = layer_norm(width, dtype, rngs, norm_eps)
        self.mlp = Mlp(width, mlp_ratio, dtype=dtype, rngs=rngs, act='gelu')
        self.norm2 = layer_norm(width, dtype, rngs, norm_eps)

    def __call__(self, x: jax.Array, *, mask: jax.Array) -> jax.Array:
        x = self.norm1(x + self.attn(x, mask=mask))
        return self.norm2(x + self.mlp(x))


class BertText(nnx.Module):
    """Token + position embeddings, embedding norm, `depth` bidirectional post-norm blocks."""

    def __init__(self, *, vocab_size: int, width: int, depth: int, heads: int, mlp_ratio: float,
                 max_len: int, norm_eps: float, dtype: jnp.dtype, rngs: nnx.Rngs):
        if vocab_size <= 0:
            raise ValueError(f'text vocab_size must be > 0 (from the tokenizer), got {vocab_size}')
        self.width, self.max_len, self.dtype = width, max_len, dtype
        self.embed = nnx.Embed(vocab_size, width, dtype=dtype, param_dtype=jnp.float32,
                               embedding_init=_normal, rngs=rngs)
        self.pos_embed = nnx.Param(_normal(rngs.params(), (max_len, width), jnp.float32))
        self.embed_norm = layer_norm(width, dtype, rngs, norm_eps)
        self.blocks = nnx.List([PostNormBlock(width, heads, mlp_ratio, norm_eps=norm_eps,
                                              dtype=dtype, rngs=rngs) for _ in range(depth)])

    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        """tokens int [B,L], mask bool [B,L] (True = real token) -> pooled [B,W] ([CLS])."""
        return self.encode(tokens, mask)[0]

    def encode(self, tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(pooled [B,W], every position [B,L,W]), as `TextTransformer.encode`."""
        check_tokens(tokens, mask, self.max_len)
        x = self.embed(tokens) + self.pos_embed[:tokens.shape[1]]
        x = self.embed_norm(x.astype(self.dtype))
        for block in self.blocks:
            x = block(x, mask=mask[:, None, None, :])
        return x[:, 0], x
