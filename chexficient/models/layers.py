"""Transformer building blocks shared by the image and the text tower.

One pre-LayerNorm block (attention + MLP) serves both towers; the attention module also does
cross-attention for the ViT's attention-map pooling head. Parameters are float32; `dtype` is the
compute dtype (float32 or bfloat16).

Two layout choices make the CPU step ~1.2x faster (benchmarks/train_throughput.py) without
changing the model: every linear layer is one 2-D matmul over the flattened tokens (autodiff of a
[B, T, W] contraction transposes activations for the weight gradient), and a block's LayerNorm
affine is folded into the linear layers that read it (scale into the kernel, bias into the bias),
so the [tokens, width] activations are only standardised, never scaled and shifted.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from flax import nnx

xavier = nnx.initializers.xavier_uniform()


class Dense(nnx.Linear):
    """nnx.Linear computed as one 2-D matmul, optionally with a LayerNorm's affine folded in."""

    def __call__(self, x: jax.Array, norm: nnx.LayerNorm | None = None) -> jax.Array:
        """x [..., in] -> [..., out]. With `norm`, x is `standardize(., norm)` and the result is
        `self(norm(.))`: norm's scale multiplies the kernel's rows, its bias goes through the kernel."""
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        if norm is not None:
            folded = norm.bias[...] @ kernel
            bias = folded if bias is None else bias + folded
            kernel = norm.scale[...][:, None] * kernel
        x, kernel, bias = self.promote_dtype((x, kernel, bias), dtype=self.dtype)
        y = (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], kernel.shape[-1])
        return y if bias is None else y + bias


def dense(in_features: int, out_features: int, dtype: jnp.dtype, rngs: nnx.Rngs,
          use_bias: bool = True) -> Dense:
    """A float32-parameter linear layer computing in `dtype`, Xavier-initialised."""
    return Dense(in_features, out_features, use_bias=use_bias, dtype=dtype,
                 param_dtype=jnp.float32, kernel_init=xavier, rngs=rngs)


def layer_norm(width: int, dtype: jnp.dtype, rngs: nnx.Rngs, eps: float = 1e-6) -> nnx.LayerNorm:
    """LayerNorm with float32 scale/bias (flax computes the statistics in float32)."""
    return nnx.LayerNorm(width, epsilon=eps, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def standardize(x: jax.Array, norm: nnx.LayerNorm) -> jax.Array:
    """`norm(x)` without its scale and bias (statistics in float32), for `Dense(., norm)`."""
    xf = x.astype(jnp.float32)
    centred = xf - xf.mean(-1, keepdims=True)
    variance = jnp.mean(centred * centred, axis=-1, keepdims=True)
    return (centred * jax.lax.rsqrt(variance + norm.epsilon)).astype(norm.dtype or x.dtype)


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


FUSED_ATTENTION_DTYPES = (jnp.bfloat16, jnp.float16)
"""Compute dtypes that cuDNN's fused attention (flash attention) takes."""


def fused_attention_applies(q: jax.Array, mask: jax.Array | None) -> bool:
    """Whether `attention` asks for cuDNN's fused kernel: on a GPU, in 16-bit floats, without a
    mask (the image tower and its pooling head; the text tower's masks take the other path)."""
    return (mask is None and jax.default_backend() == "gpu"
            and any(q.dtype == d for d in FUSED_ATTENTION_DTYPES))


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
              *, implementation: str | None = None) -> jax.Array:
    """Multi-head attention, q [B,T,H,D], k/v [B,S,H,D], mask bool broadcastable to [B,H,T,S].

    `implementation`: "cudnn" or "xla" runs `jax.nn.dot_product_attention` with it; None picks
    cuDNN's fused kernel where `fused_attention_applies` (a shape cuDNN refuses falls back, with
    a warning) and otherwise `dot_product_attention` below, the form measured fastest on CPU.
    """
    if implementation is not None:
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
    if fused_attention_applies(q, mask):
        try:
            return jax.nn.dot_product_attention(q, k, v, implementation="cudnn")
        except Exception as error:  # noqa: BLE001  (raised while tracing: shape, dtype, library)
            warnings.warn(f"cuDNN fused attention does not run here ({type(error).__name__}: "
                          f"{error}); using the batched-matmul attention", stacklevel=2)
    return dot_product_attention(q, k, v, mask)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          mask: jax.Array | None = None) -> jax.Array:
    """Multi-head attention, q [B,T,H,D], k/v [B,S,H,D], mask bool broadcastable to [B,H,T,S],
    as two batched matmuls with a hand-written backward pass (fast on XLA's CPU backend)."""
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
                 mask: jax.Array | None = None, causal: bool = False,
                 norm: nnx.LayerNorm | None = None) -> jax.Array:
        """x [B,T,W], context [B,S,W], mask bool broadcastable to [B,heads,T,S] (True = attend).

        `norm`: x and context are standardised by it, its affine is folded into the projections.
        """
        context = x if context is None else context
        b, t, w = x.shape
        q = self.query(x, norm).reshape(b, t, self.heads, w // self.heads)
        k, v = jnp.split(
            self.key_value(context, norm).reshape(b, -1, 2, self.heads, w // self.heads), 2, axis=2)
        if causal:
            tri = jnp.tril(jnp.ones((t, k.shape[1]), bool))[None, None]
            mask = tri if mask is None else jnp.logical_and(mask, tri)
        y = attention(q, k[:, :, 0], v[:, :, 0], mask)
        return self.out(y.reshape(b, t, w))


MLP_ACTS = ('gelu_tanh', 'gelu')
"""GELU's tanh approximation (our default, as CLIP / big_vision) or the exact erf form (BERT,
ViT and DINOv2 checkpoints)."""


class Mlp(nnx.Module):
    """Two-layer GELU MLP with hidden width `mlp_ratio * width`; `act` one of MLP_ACTS."""

    def __init__(self, width: int, mlp_ratio: float, *, dtype: jnp.dtype, rngs: nnx.Rngs,
                 act: str = 'gelu_tanh'):
        if act not in MLP_ACTS:
            raise ValueError(f'unknown MLP activation {act!r}; expected one of {MLP_ACTS}')
        hidden = int(round(width * mlp_ratio))
        self.fc1 = dense(width, hidden, dtype, rngs)
        self.fc2 = dense(hidden, width, dtype, rngs)
        self.approximate = act == 'gelu_tanh'

    def __call__(self, x: jax.Array, norm: nnx.LayerNorm | None = None) -> jax.Array:
        """`norm`: x is standardised by it, its affine is folded into fc1."""
        return self.fc2(jax.nn.gelu(self.fc1(x, norm), approximate=self.approximate))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, *, dtype: jnp.dtype,
                 rngs: nnx.Rngs, norm_eps: float = 1e-6, act: str = 'gelu_tanh'):
        self.norm1 = layer_norm(width, dtype, rngs, norm_eps)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(width, dtype, rngs, norm_eps)
        self.mlp = Mlp(width, mlp_ratio, dtype=dtype, rngs=rngs, act=act)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None,
                 causal: bool = False) -> jax.Array:
        x = x + self.attn(standardize(x, self.norm1), mask=mask, causal=causal, norm=self.norm1)
        return x + self.mlp(standardize(x, self.norm2), self.norm2)
