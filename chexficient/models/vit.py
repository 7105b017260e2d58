"""Vision Transformer image tower for grayscale chest X-rays.

Returns the pooled (pre-projection) embedding for probes, the final patch tokens, and patch grids
from intermediate blocks (`feature_layers`) for dense adapters such as segmentation.
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.layers import Attention, Block, Mlp, dense, layer_norm

STEMS = ('patch', 'conv')
POOLS = ('cls', 'mean', 'map')
_normal = nnx.initializers.normal(0.02)


class MapHead(nnx.Module):
    """Attention-map pooling (big_vision MAPHead): a learned probe attends over the tokens."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, *, dtype: jnp.dtype,
                 rngs: nnx.Rngs):
        self.probe = nnx.Param(_normal(rngs.params(), (1, 1, width), jnp.float32))
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(width, dtype, rngs)
        self.mlp = Mlp(width, mlp_ratio, dtype=dtype, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        probe = jnp.broadcast_to(self.probe[...], (tokens.shape[0], 1, tokens.shape[-1]))
        x = self.attn(probe.astype(tokens.dtype), tokens)
        return (x + self.mlp(self.norm(x)))[:, 0]


class ConvStem(nnx.Module):
    """Stride-2 3x3 convolutions down to the patch grid, then a linear map to the width.

    Early convolutions make ViTs train faster and generalise better on small data
    (Xiao et al. 2021); the patch size must be a power of two.
    """

    def __init__(self, patch_size: int, width: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        n = int(math.log2(patch_size))
        if 2 ** n != patch_size:
            raise ValueError(f'the conv stem needs a power-of-two patch size, got {patch_size}')
        channels = [1] + [max(8, width // 2 ** (n - i)) for i in range(n)]
        self.convs = nnx.List([
            nnx.Conv(c_in, c_out, (3, 3), strides=(2, 2), padding='SAME', dtype=dtype,
                     param_dtype=jnp.float32, rngs=rngs)
            for c_in, c_out in zip(channels[:-1], channels[1:])])
        self.proj = dense(channels[-1], width, dtype, rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = images.astype(self.proj.dtype or jnp.float32)
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))
        return self.proj(x.reshape(x.shape[0], -1, x.shape[-1]))


class ViT(nnx.Module):
    """ViT over [B,S,S,1] images: patchify, learned positions, prefix tokens [cls] + registers.

    `feature_layers` are depths in 1..depth: the patch grid after that many blocks (pre-norm).
    """

    def __init__(self, *, image_size: int, patch_size: int, width: int, depth: int, heads: int,
                 mlp_ratio: float, pool: str, registers: int, feature_layers: Sequence[int],
                 dtype: jnp.dtype, rngs: nnx.Rngs, stem: str = 'patch', norm_eps: float = 1e-6,
                 mlp_act: str = 'gelu_tanh'):
        if image_size % patch_size:
            raise ValueError(f'image_size {image_size} is not divisible by patch_size {patch_size}')
        if pool not in POOLS:
            raise ValueError(f'unknown pool {pool!r}; expected one of {POOLS}')
        if not all(1 <= i <= depth for i in feature_layers):
            raise ValueError(f'feature_layers {tuple(feature_layers)} must lie in 1..depth={depth}')
        self.feature_layers = tuple(feature_layers)
        self.image_size, self.patch_size, self.width = image_size, patch_size, width
        self.pool, self.dtype = pool, dtype
        self.grid = image_size // patch_size
        if stem not in STEMS:
            raise ValueError(f'unknown stem {stem!r}; expected one of {STEMS}')
        self.patch_embed = (dense(patch_size * patch_size, width, dtype, rngs) if stem == 'patch'
                            else ConvStem(patch_size, width, dtype=dtype, rngs=rngs))
        self.pos_embed = nnx.Param(_normal(rngs.params(), (self.grid ** 2, width), jnp.float32))
        n_prefix = int(pool == 'cls') + registers
        self.prefix = (nnx.Param(_normal(rngs.params(), (n_prefix, width), jnp.float32))
                       if n_prefix else None)
        self.blocks = nnx.List([Block(width, heads, mlp_ratio, dtype=dtype, rngs=rngs,
                                      norm_eps=norm_eps, act=mlp_act) for _ in range(depth)])
        self.norm = layer_norm(width, dtype, rngs, norm_eps)
        self.map_head = (MapHead(width, heads, mlp_ratio, dtype=dtype, rngs=rngs)
                         if pool == 'map' else None)

    def patchify(self, images: jax.Array) -> jax.Array:
        """[B,S,S,1] -> [B, grid*grid, patch*patch] non-overlapping patches, row-major."""
        expected = (self.image_size, self.image_size, 1)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f'images must have shape [B, {", ".join(map(str, expected))}], '
                             f'got {images.shape}')
        b, g, p = images.shape[0], self.grid, self.patch_size
        x = images.reshape(b, g, p, g, p).transpose(0, 1, 3, 2, 4)
        return x.reshape(b, g * g, p * p)

    def __call__(self, images: jax.Array) -> tuple[jax.Array, dict]:
        """Returns (pooled [B,W], {'tokens': [B,N,W], 'features': list of [B,g,g,W]})."""
        if isinstance(self.patch_embed, ConvStem):
            self.patchify(images)  # validates the shape
            x = self.patch_embed(images)
        else:
            x = self.patch_embed(self.patchify(images))
        x = (x + self.pos_embed[...]).astype(self.dtype)
        n_prefix = 0 if self.prefix is None else self.prefix.shape[0]
        if n_prefix:
            prefix = jnp.broadcast_to(self.prefix[...], (x.shape[0], *self.prefix.shape))
            x = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
        grids = {}
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in self.feature_layers:
                grids[i] = x[:, n_prefix:].reshape(x.shape[0], self.grid, self.grid, -1)
        x = self.norm(x)
        tokens = x[:, n_prefix:]
        if self.pool == 'cls':
            pooled = x[:, 0]
        elif self.pool == 'mean':
            pooled = tokens.mean(axis=1)
        else:
            pooled = self.map_head(tokens)
        return pooled, {'tokens': tokens, 'features': [grids[i] for i in self.feature_layers]}

