"""Transformer building blocks shared by the image and the text tower.

One pre-LayerNorm block (attention + MLP) serves both towers; the attention module also does
cross-attention for the ViT's attention-map pooling head. Parameters are float32; `dtype` is the
compute dtype (float32 or bfloat16).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

xavier = nnx.initializers.xavier_uniform()


def dense(in_features: int, out_features: int, dtype: jnp.dtype, rngs: nnx.Rngs,
          use_bias: bool = True) -> nnx.Linear:
    """A float32-parameter linear layer computing in `dtype`, Xavier-initialised."""
    return nnx.Linear(in_features, out_features, use_bias=use_bias, dtype=dtype,
                      param_dtype=jnp.float32, kernel_init=xavier, rngs=rngs)


def layer_norm(width: int, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with float32 scale/bias (flax computes the statistics in float32)."""
    return nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class Attention(nnx.Module):
    """Multi-head dot-product attention of `x` over `context` (self-attention if omitted)."""

    def __init__(self, width: int, heads: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        if width % heads:
            raise ValueError(f'attention width {width} is not divisible by heads={heads}')
        self.heads = heads
        self.query = dense(width, width, dtype, rngs)
        self.key_value = dense(width, 2 * width, dtype, rngs)
        self.out = dense(width, width, dtype, rngs)

    def __call__(self, x: jax.Array, context: jax.Array | None = None, *,
                 mask: jax.Array | None = None, causal: bool = False) -> jax.Array:
        """x [B,T,W], context [B,S,W], mask bool broadcastable to [B,heads,T,S] (True = attend)."""
        context = x if context is None else context
        b, t, w = x.shape
        q = self.query(x).reshape(b, t, self.heads, w // self.heads)
        k, v = jnp.split(self.key_value(context).reshape(b, -1, 2, self.heads, w // self.heads),
                         2, axis=2)
        y = jax.nn.dot_product_attention(q, k[:, :, 0], v[:, :, 0], mask=mask, is_causal=causal)
        return self.out(y.reshape(b, t, w))


class Mlp(nnx.Module):
    """Two-layer GELU MLP with hidden width `mlp_ratio * width`."""

    def __init__(self, width: int, mlp_ratio: float, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        hidden = int(round(width * mlp_ratio))
        self.fc1 = dense(width, hidden, dtype, rngs)
        self.fc2 = dense(hidden, width, dtype, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x)))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, *, dtype: jnp.dtype,
                 rngs: nnx.Rngs):
        self.norm1 = layer_norm(width, dtype, rngs)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(width, dtype, rngs)
        self.mlp = Mlp(width, mlp_ratio, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 causal: bool = False) -> jax.Array:
        x = x + self.attn(self.norm1(x), mask=mask, causal=causal)
        return x + self.mlp(self.norm2(x))
