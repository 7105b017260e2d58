"""Vision Transformer image tower for grayscale chest X-rays.

Returns the pooled (pre-projection) embedding for probes, the final patch tokens, and patch grids
from intermediate blocks (`feature_layers`) for dense adapters such as segmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.layers import Attention, Block, Mlp, dense, layer_norm

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


class ViT(nnx.Module):
    """ViT over [B,S,S,1] images: patchify, learned positions, prefix tokens [cls] + registers.

    `feature_layers` are depths in 1..depth: the patch grid after that many blocks (pre-norm).
    """

    def __init__(self, *, image_size: int, patch_size: int, width: int, depth: int, heads: int,
                 mlp_ratio: float, pool: str, registers: int, feature_layers: Sequence[int],
                 dtype: jnp.dtype, rngs: nnx.Rngs):
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
        self.patch_embed = dense(patch_size * patch_size, width, dtype, rngs)
        self.pos_embed = nnx.Param(_normal(rngs.params(), (self.grid ** 2, width), jnp.float32))
        n_prefix = int(pool == 'cls') + registers
        self.prefix = (nnx.Param(_normal(rngs.params(), (n_prefix, width), jnp.float32))
                       if n_prefix else None)
        self.blocks = nnx.List([Block(width, heads, mlp_ratio, dtype=dtype, rngs=rngs)
                                for _ in range(depth)])
        self.norm = layer_norm(width, dtype, rngs)
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
        x = (self.patch_embed(self.patchify(images)) + self.pos_embed[...]).astype(self.dtype)
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

