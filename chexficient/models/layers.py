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


def _bmm(a: jax.Array, b: jax.Array) -> jax.Array:
    """[n,i,j] x [n,j,k] -> [n,i,k]: the one batched-matmul layout XLA's CPU backend runs fast."""
    return jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))))


@jax.custom_vjp
def _attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
    """softmax(q k^T + bias) v over [n, t, d] heads-major arrays (q pre-scaled)."""
    return _attend_fwd(q, k, v, bias)[0]


def _attend_fwd(q, k, v, bias):
    logits = _bmm(q, jnp.swapaxes(k, 1, 2)).astype(jnp.float32) + bias
    p = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return _bmm(p, v), (q, k, v, p, bias)


def _attend_bwd(residuals, g):
    # Written out so that every product is a plain batched matmul (autodiff's transposed
    # contractions run ~2x slower on CPU); masked entries have p = 0 and get no gradient.
    q, k, v, p, bias = residuals
    dv = _bmm(jnp.swapaxes(p, 1, 2), g)
    dp = _bmm(g, jnp.swapaxes(v, 1, 2)).astype(jnp.float32)
    pf = p.astype(jnp.float32)
    ds = (pf * (dp - jnp.sum(dp * pf, axis=-1, keepdims=True))).astype(q.dtype)
    return _bmm(ds, k), _bmm(jnp.swapaxes(ds, 1, 2), q), dv, jnp.zeros_like(bias)


_attend.defvjp(_attend_fwd, _attend_bwd)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          mask: jax.Array | None = None) -> jax.Array:
    """Multi-head attention, q [B,T,H,D], k/v [B,S,H,D], mask bool broadcastable to [B,H,T,S]."""
    b, t, h, d = q.shape
    s = k.shape[1]
    heads_major = lambda x, n: x.transpose(0, 2, 1, 3).reshape(b * h, n, d)
    bias = jnp.zeros((b, h, t, s), jnp.float32)
    if mask is not None:
        bias = jnp.where(jnp.broadcast_to(mask, (b, h, t, s)), bias, jnp.finfo(jnp.float32).min)
    y = _attend(heads_major(q * (d ** -0.5), t), heads_major(k, s), heads_major(v, s),
                bias.reshape(b * h, t, s))
    return y.reshape(b, h, t, d).transpose(0, 2, 1, 3)


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
        if causal:
            tri = jnp.tril(jnp.ones((t, k.shape[1]), bool))[None, None]
            mask = tri if mask is None else jnp.logical_and(mask, tri)
        y = dot_product_attention(q, k[:, :, 0], v[:, :, 0], mask)
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
