"""The detector and display: quantum noise, blur, edge enhancement, grid lines, tone curve."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def hash_normal(seed, size):
    """Per-pixel standard normal noise from an integer hash of (seed, pixel): cheap, fused."""
    idx = jnp.arange(size * size, dtype=jnp.uint32).reshape(size, size)

    def mix(x):
        x = x ^ (x >> 16)
        x = x * jnp.uint32(0x7FEB352D)
        x = x ^ (x >> 15)
        x = x * jnp.uint32(0x846CA68B)
        return x ^ (x >> 16)

    h1 = mix(idx * jnp.uint32(2) + seed * jnp.uint32(0x9E3779B9))
    h2 = mix(h1 ^ jnp.uint32(0x85EBCA6B))
    uni = lambda h: ((h >> 8).astype(jnp.float32) + 0.5) / 16777216.0  # noqa: E731
    return jnp.sqrt(-2.0 * jnp.log(uni(h1))) * jnp.cos(2 * jnp.pi * uni(h2))


def quantum_noise(line, photons, seed, size):
    """The line integral as measured with `photons` quanta per pixel of unattenuated beam:
    Poisson noise, whose standard deviation in -log(intensity) is 1 / sqrt(counts)."""
    return line + jnp.exp(0.5 * line) / jnp.sqrt(photons) * hash_normal(seed, size)


def blur(img, sigma, radius):
    """Separable Gaussian blur (edge-padded) with a per-image sigma in pixels."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (taps / jnp.maximum(sigma, 0.3)) ** 2)
    w = w / jnp.sum(w)
    n = img.shape[0]
    for axis in (0, 1):
        pad = jnp.pad(img, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        img = sum(w[i] * jax.lax.slice_in_dim(pad, i, i + n, axis=axis) for i in range(2 * radius + 1))
    return img


def detect(line, im, size):
    """Detector blur, edge enhancement, grid lines and the film-like tone curve -> uint8."""
    line = blur(line, im["blur"] * size / 128.0, 2 if size <= 192 else 4)
    line = line + im["unsharp"] * (line - low_pass(line, max(4, size // 32)))
    col = jnp.arange(size, dtype=jnp.float32)[None, :]
    line = line + im["grid_amp"] * jnp.cos(2 * jnp.pi * col / im["grid_period"])
    x = (line - im["exposure"]) / im["contrast"]
    y = jax.nn.sigmoid(4.0 * (x - 0.5))
    y = (y - jax.nn.sigmoid(-2.0)) / (jax.nn.sigmoid(2.0) - jax.nn.sigmoid(-2.0))
    y = jnp.clip(y, 0.0, 1.0) ** im["gamma"]
    return jnp.round(255.0 * y).astype(jnp.uint8)


def low_pass(img, block):
    """Large-scale background: block means, smoothly upsampled (for the unsharp mask)."""
    n = img.shape[0]
    small = img[: n - n % block, : n - n % block].reshape(n // block, block, n // block, block).mean((1, 3))
    return jax.image.resize(small, (n, n), "linear")
