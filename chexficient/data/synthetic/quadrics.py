"""Rays through quadrics: exact chords of rotated ellipsoids and slab-cut cylinders.

A parallel ray at detector point (u, z) is u e_u + z e_z + t d. For every shape row
(shapes.py) `coefficients` precomputes, per image, the few numbers that make its entry and
exit parameters t = mid -+ sqrt(D) an affine / quadratic function of (u, z); the interval
helpers then combine shapes by intersection, hull and inclusion-exclusion along each ray.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

BIG = 1.0e6
"""Ray parameter standing for 'unbounded' in interval algebra."""


def rotation(angles):
    """R = Rz Ry Rx for rows of angles [N, 3] -> [N, 3, 3]."""
    cx, cy, cz = (jnp.cos(angles[:, i]) for i in range(3))
    sx, sy, sz = (jnp.sin(angles[:, i]) for i in range(3))
    return jnp.stack([
        jnp.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
        jnp.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
        jnp.stack([-sy, cy * sx, cy * cx], -1)], -2)


def coefficients(rows, d, e_u):
    """Per-shape numbers [N] for rays u e_u + z e_z + t d through the shape rows [N, 11].

    With du, dz the pixel's offsets from the projected centre (uc, zc), the ray meets the
    ellipsoid for t = mid -+ sqrt(D): mid = t0 + m1 du + m2 dz and
    D = c0 + c3 du^2 + c4 du dz + c5 dz^2 (c0 = squared half-chord through the centre);
    its slab |local z| <= h holds for |t - (t0 + s1 du + s2 dz)| <= hs.
    """
    c, inv = rows[:, 0:3], 1.0 / rows[:, 3:6]
    rot = rotation(rows[:, 6:9])
    e_z = jnp.array([0.0, 0.0, 1.0])
    to_local = lambda v: inv * jnp.einsum("nij,i->nj", rot, v)  # noqa: E731  (diag(inv) R^T v)
    w, qu, qz = to_local(d), to_local(e_u), to_local(e_z)
    ww = jnp.sum(w * w, -1)
    au, az = jnp.sum(w * qu, -1), jnp.sum(w * qz, -1)
    axis = rot[:, :, 2]
    rd = jnp.sum(axis * d, -1)
    rd = jnp.where(rd >= 0, jnp.maximum(rd, 1e-4), jnp.minimum(rd, -1e-4))
    return dict(
        uc=c @ e_u, zc=c[:, 2], t0=c @ d, m1=-au / ww, m2=-az / ww, c0=1.0 / ww,
        c3=au * au / ww**2 - jnp.sum(qu * qu, -1) / ww,
        c4=2 * au * az / ww**2 - 2 * jnp.sum(qu * qz, -1) / ww,
        c5=az * az / ww**2 - jnp.sum(qz * qz, -1) / ww,
        s1=-jnp.sum(axis * e_u, -1) / rd, s2=-axis[:, 2] / rd, hs=rows[:, 9] / jnp.abs(rd))


def quadratic(k, i, u, z):
    """(mid, D, du, dz) of shape i at every pixel: its chord is mid +- sqrt(D).

    Shapes are evaluated one at a time on [S, S] (not as an [N, S, S] stack): elementwise
    chains that XLA fuses and vectorises, instead of a strided reduction over shapes.
    """
    du, dz = u - k["uc"][i], z - k["zc"][i]
    mid = k["t0"][i] + k["m1"][i] * du + k["m2"][i] * dz
    disc = k["c0"][i] + du * (k["c3"][i] * du + k["c4"][i] * dz) + k["c5"][i] * dz * dz
    return mid, disc, du, dz


def interval(k, i, u, z):
    """Entry and exit ray parameters of shape i cut by its slab (lo >= hi: missed)."""
    mid, disc, du, dz = quadratic(k, i, u, z)
    h = jnp.sqrt(jnp.maximum(disc, 0.0))
    smid = k["t0"][i] + k["s1"][i] * du + k["s2"][i] * dz
    return jnp.maximum(mid - h, smid - k["hs"][i]), jnp.minimum(mid + h, smid + k["hs"][i])


def span(k, i, u, z):
    """Entry and exit ray parameters of (unslabbed) ellipsoid i."""
    mid, disc, _, _ = quadratic(k, i, u, z)
    h = jnp.sqrt(jnp.maximum(disc, 0.0))
    return mid - h, mid + h


def length(*intervals):
    """Length of the intersection of intervals (lo, hi)."""
    lo = functools.reduce(jnp.maximum, [i[0] for i in intervals])
    hi = functools.reduce(jnp.minimum, [i[1] for i in intervals])
    return jnp.maximum(hi - lo, 0.0)


def meet(a, b):
    """Intersection of two intervals (lo, hi)."""
    return jnp.maximum(a[0], b[0]), jnp.minimum(a[1], b[1])


def upper(cap, above):
    """A cap that bounds only above its centre height: everything passes below it."""
    return jnp.where(above, cap[0], -BIG), jnp.where(above, cap[1], BIG)


def hull(intervals):
    """Smallest interval holding the non-empty `intervals` (union of touching shapes)."""
    los = [jnp.where(lo < hi, lo, BIG) for lo, hi in intervals]
    his = [jnp.where(lo < hi, hi, -BIG) for lo, hi in intervals]
    return functools.reduce(jnp.minimum, los), functools.reduce(jnp.maximum, his)


def carved(x, dome, heart, mediast):
    """Length of x minus diaphragm, heart and mediastinum (inclusion-exclusion over intervals)."""
    return (length(x) - length(x, dome) - length(x, heart) - length(x, mediast)
            + length(x, dome, heart) + length(x, dome, mediast) + length(x, heart, mediast)
            - length(x, dome, heart, mediast))
