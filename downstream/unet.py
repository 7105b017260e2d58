"""A U-Net-style decoder over a ViT's multi-level patch grids (UNETR-like), in flax.nnx.

The deepest grid starts the decoder; each stage doubles the resolution and fuses the next
shallower grid, itself upsampled to that resolution, as the skip connection. With
`image_channels` > 0 (UNETR's input skip) further stages keep doubling up to the image size,
each fusing the image itself at that resolution, so boundaries finer than a patch can be
drawn; otherwise a bilinear resize brings the logits to image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _resize(x: jax.Array, size: int) -> jax.Array:
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear")


class ConvBlock(nnx.Module):
    """Two 3x3 convolutions with GroupNorm and GELU."""

    def __init__(self, in_channels: int, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_channels, channels, (3, 3), rngs=rngs)
        self.norm1 = nnx.GroupNorm(channels, num_groups=min(8, channels), rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.norm2 = nnx.GroupNorm(channels, num_groups=min(8, channels), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.gelu(self.norm1(self.conv1(x)))
        return jax.nn.gelu(self.norm2(self.conv2(x)))


class UNetDecoder(nnx.Module):
    """Feature grids (shallow -> deep, all [B,g,g,W]) -> mask logits [B,S,S,out_channels]."""

    def __init__(self, *, feature_width: int, num_levels: int, out_channels: int,
                 image_size: int, width: int = 64, image_channels: int = 0, grid_size: int = 0,
                 rngs: nnx.Rngs):
        if num_levels < 1:
            raise ValueError("the decoder needs at least one feature level")
        if image_channels and grid_size < 1:
            raise ValueError("an image skip needs the feature grids' size (grid_size)")
        self.image_size, self.image_channels = image_size, image_channels
        widths = [max(width // 2 ** i, 16) for i in range(num_levels)]
        self.bottom = ConvBlock(feature_width, widths[0], rngs=rngs)
        self.skips = nnx.List([nnx.Conv(feature_width, w, (1, 1), rngs=rngs) for w in widths[1:]])
        self.stages = nnx.List([ConvBlock(widths[i] + widths[i + 1], widths[i + 1], rngs=rngs)
                                for i in range(num_levels - 1)])
        # Stages fed by the image: from the grid stages' last resolution up to the image size.
        resolution, count = grid_size * 2 ** (num_levels - 1), 0
        while image_channels and resolution < image_size:
            resolution, count = 2 * resolution, count + 1
        self.image_stages = nnx.List([ConvBlock(widths[-1] + image_channels, widths[-1], rngs=rngs)
                                      for _ in range(count)])
        self.head = nnx.Conv(widths[-1], out_channels, (1, 1), rngs=rngs)

    def __call__(self, features: Sequence[jax.Array], image: jax.Array | None = None
                 ) -> jax.Array:
        """`image` [B,S,S,C] feeds the image stages; a decoder without them ignores it."""
        if len(features) != len(self.stages) + 1:
            raise ValueError(f"expected {len(self.stages) + 1} feature grids, got {len(features)}")
        if image is None and self.image_channels:
            raise ValueError("this decoder was built with image_channels: pass the image")
        x = self.bottom(features[-1])
        for skip, stage, grid in zip(self.skips, self.stages, reversed(features[:-1])):
            size = 2 * x.shape[1]
            x = stage(jnp.concatenate([_resize(x, size), _resize(skip(grid), size)], axis=-1))
        for stage in self.image_stages:
            size = min(2 * x.shape[1], self.image_size)
            x = stage(jnp.concatenate([_resize(x, size), _resize(image, size)], axis=-1))
        return _resize(self.head(x), self.image_size)
