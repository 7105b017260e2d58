"""Quadric shape rows: the one representation every phantom structure is written in.

A row is [cx, cy, cz, sx, sy, sz, rx, ry, rz, h, w] in cm (x to the patient's left, y
posterior, z superior): an ellipsoid centred at c with semi-axes s, rotated by
R = Rz(rz) Ry(ry) Rx(rx), cut to |local z| <= h, with a weight w (an attenuation difference
or a fill fraction). A cylinder is an ellipsoid with sz = INF; a tube is a cylinder cut by
its slab. Additive ellipsoids have no slab: there h = SMOOTH marks a soft, parabolic density
profile (denser at the centre) instead of a uniform one.
"""

from __future__ import annotations

import math

import numpy as np

INF = 1.0e4
"""Semi-axis or slab half-length meaning 'unbounded' (finite so float32 stays exact enough)."""

SMOOTH = -1.0
ROW = 11
EMPTY = (0.0, 0.0, 1000.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
"""An unused slot: a unit sphere far above the field of view, zero weight, empty slab."""

Row = tuple[float, ...]


def ellipsoid(center, semi, rot=(0.0, 0.0, 0.0), w: float = 0.0, smooth: bool = False) -> Row:
    """An ellipsoid row (no slab), uniform or with a smooth density profile."""
    return (*map(float, center), *map(float, semi), *map(float, rot), SMOOTH if smooth else INF, float(w))


def tube(p0, p1, radius: float, w: float = 0.0) -> Row:
    """A straight tube of `radius` from p0 to p1 (a cylinder cut by its end planes)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    ax, ay, az = axis / max(length, 1e-6)
    ry = math.acos(max(-1.0, min(1.0, az)))
    rz = math.atan2(ay, ax)
    cx, cy, cz = (p0 + p1) / 2
    return (cx, cy, cz, radius, radius, INF, 0.0, ry, rz, length / 2, float(w))


def rod(p0, p1, radius: float, w: float = 0.0) -> Row:
    """An elongated ellipsoid from p0 to p1 (round-ended; cheaper to render than a tube)."""
    cx, cy, cz, sx, sy, _, rx, ry, rz, half, w = tube(p0, p1, radius, w)
    return (cx, cy, cz, sx, sy, half + 0.5 * radius, rx, ry, rz, INF, w)


def polyline(points, radius: float, w: float) -> list[Row]:
    """Consecutive tubes through `points` (a curved tube: lines, wires, clavicles)."""
    return [tube(a, b, radius, w) for a, b in zip(points[:-1], points[1:])]


def table(rows: list[Row], slots: int, what: str) -> np.ndarray:
    """Rows padded with EMPTY to a fixed number of slots (float32 [slots, ROW])."""
    if len(rows) > slots:
        raise ValueError(f"{what}: {len(rows)} shapes exceed the {slots} slots")
    return np.array(list(rows) + [EMPTY] * (slots - len(rows)), np.float32).reshape(slots, ROW)


def scaled(row: Row, factor: float, about=(0.0, 0.0, 0.0)) -> Row:
    """The row scaled by `factor` about the point `about` (centre and semi-axes)."""
    c = [a + factor * (x - a) for x, a in zip(row[:3], about)]
    return (*c, *(s * factor for s in row[3:6]), *row[6:9], row[9], row[10])


def extent_x(row: Row) -> tuple[float, float]:
    """The x-extent of an ellipsoid row seen along y (for the cardiothoracic ratio)."""
    rx, ry, rz = row[6:9]
    # First row of R = Rz Ry Rx (world x in terms of local axes).
    r0 = (math.cos(rz) * math.cos(ry),
          math.cos(rz) * math.sin(ry) * math.sin(rx) - math.sin(rz) * math.cos(rx),
          math.cos(rz) * math.sin(ry) * math.cos(rx) + math.sin(rz) * math.sin(rx))
    half = math.sqrt(sum((r * s) ** 2 for r, s in zip(r0, row[3:6])))
    return row[0] - half, row[0] + half
