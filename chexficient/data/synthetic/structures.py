"""Closed-form structure families of the phantom: body outline, ribs, vertebrae, vessels.

Structures too numerous or too curved for single quadrics are evaluated per pixel from a
few scalars (phantom.SCALARS): the body as an ellipse per height, the ribs as tubes
wrapped on the rib-cage ellipsoid, the spine as columns of stacked ovals, the lung
markings as tapering curved lines radiating from the hila.
"""

from __future__ import annotations

import jax.numpy as jnp

from chexficient.data.synthetic import phantom as P


def body(s, u, z, ca, sa):
    """Chord through the body outline: an ellipse per height with shoulders and neck."""
    zrel = z - s["shoulder_z"]
    shoulder = jnp.sqrt(jnp.maximum(0.0, 1.0 - (zrel / s["shoulder_h"]) ** 2))
    ramp = jnp.clip((z - s["shoulder_z"] + 9.0) / 9.0, 0.0, 1.0)
    above = zrel > 0
    a = jnp.where(above, s["neck_r"] + (s["shoulder_a"] - s["neck_r"]) * shoulder,
                  s["body_a"] + (s["shoulder_a"] - s["body_a"]) * ramp * ramp * (3 - 2 * ramp))
    b = jnp.where(above, s["neck_r"] + (s["body_b"] - s["neck_r"]) * shoulder, s["body_b"])
    yb = -u * sa - s["body_y"]
    a2 = (sa / a) ** 2 + (ca / b) ** 2
    a1 = 2 * (u * ca * sa / a**2 + yb * ca / b**2)
    a0 = (u * ca / a) ** 2 + (yb / b) ** 2 - 1.0
    return jnp.sqrt(jnp.maximum(a1 * a1 - 4 * a2 * a0, 0.0)) / a2


def ribs(s, cage_row, t, u, z, ca, sa):
    """Rib bone chord where the ray crosses the rib cage surface at parameter t.

    Rib k runs around the cage at height rib_top - spacing (k + quad k^2) - descent(phi),
    phi' = angle from the posterior midline / 90 degrees: posterior ribs slope gently down
    laterally, anterior ones steeply down medially.
    """
    x = u * ca + t * sa
    y = -u * sa + t * ca
    cage_y, cage_z, cage_a, cage_b, cage_c = cage_row[1], cage_row[2], cage_row[3], cage_row[4], cage_row[5]
    ring = jnp.sqrt(jnp.maximum(1e-4, 1.0 - ((z - cage_z) / cage_c) ** 2))
    xi, eta = jnp.abs(x) / (cage_a * ring), (y - cage_y) / (cage_b * ring)
    phi = atan2(xi, eta) * (2.0 / jnp.pi)
    front = jnp.maximum(phi - 1.0, 0.0)
    zz = s["rib_top"] - z - s["rib_a"] * phi - s["rib_b"] * front * (1.0 + 0.4 * front)
    q, sp = s["rib_quad"], s["rib_space"]
    k_cont = (jnp.sqrt(jnp.maximum(1.0 + 4 * q * zz / sp, 0.0)) - 1.0) / (2 * q)
    k = jnp.floor(k_cont + 0.5)
    on_broken = ((x < 0) == (s["frac_side"] == 0)) & (k == s["frac_rib"])
    # The displaced fragment: the part of the broken rib beyond the fracture, shifted down.
    dz = zz - sp * (k + q * k * k) - on_broken * (phi > s["frac_phi"]) * s["frac_shift"]
    end = 1.68 - 0.13 * (k < 0.5) - 0.06 * jnp.maximum(k - 5.0, 0.0) - 0.2 * jnp.maximum(k - 9.0, 0.0)
    broken = on_broken & (jnp.abs(phi - s["frac_phi"]) < s["frac_gap"])
    keep = (k >= 0) & (k <= 11) & (phi > 0.07) & (phi < end) & ~broken
    dh = (2.0 / jnp.pi) * (s["rib_a"] + s["rib_b"] * (1.0 + 0.8 * front))
    slope = dh / (cage_a * ring * jnp.maximum(jnp.abs(eta), 0.3))
    rv = s["rib_rv"] * jnp.sqrt(1.0 + jnp.minimum(slope, 3.0) ** 2)
    qn = dz / rv
    outer = jnp.sqrt(jnp.maximum(0.0, 1.0 - qn * qn))
    inner = 0.6 * jnp.sqrt(jnp.maximum(0.0, 1.0 - (qn / 0.6) ** 2))
    nx, ny = x / (cage_a * ring) ** 2, (y - cage_y) / (cage_b * ring) ** 2
    cos_inc = jnp.abs(nx * sa + ny * ca) / jnp.sqrt(nx * nx + ny * ny + 1e-12)
    fade = jnp.where(phi > 1.0, 0.45, 0.8)
    chord = 2 * s["rib_rr"] * (outer - 0.6 * inner) / jnp.maximum(cos_inc, 0.45)
    return jnp.where(keep, chord * fade, 0.0)


def spine(s, u, z, ca, sa):
    """Vertebral bodies, pedicles and spinous processes: vertical columns of stacked ovals."""
    g = s["scale"]
    frac = (z / s["vert_h"]) % 1.0 - 0.5

    def column(x0, y0, radius):
        rho = x0 * ca - y0 * sa - u
        return 2 * jnp.sqrt(jnp.maximum(radius * radius - rho * rho, 0.0))

    body_r = s["spine_r"] * jnp.sqrt(jnp.clip((0.4 - jnp.abs(frac)) / 0.06, 0.0, 1.0))
    ped_r = 0.55 * g * jnp.sqrt(jnp.maximum(0.0, 1.0 - (frac / 0.28) ** 2))
    spin_frac = (z / s["vert_h"] + 0.3) % 1.0 - 0.5
    spin_r = 0.5 * g * jnp.sqrt(jnp.maximum(0.0, 1.0 - (spin_frac / 0.3) ** 2))
    y_ped = s["spine_y"] + 1.7 * g
    return (0.3 * P.D_CANCELLOUS * column(0.0, s["spine_y"], body_r)
            + 0.35 * P.D_BONE * (column(-1.5 * g, y_ped, ped_r) + column(1.5 * g, y_ped, ped_r))
            + 0.25 * P.D_BONE * column(0.0, s["spine_y"] + 4.4 * g, spin_r))


def vessels(s, u, z, ca):
    """Bronchovascular markings: curving, tapering, multiplying lines from the nearer hilum."""
    left = u > 0.0
    hx = jnp.where(left, s["hil_lx"], s["hil_rx"]) * ca
    hz = jnp.where(left, s["hil_lz"], s["hil_rz"])
    du, dz = u - hx, z - hz
    r = jnp.sqrt(du * du + dz * dz) + 1e-3
    theta = atan2(dz, jnp.abs(du))
    spread = r / (r + 6.0)
    bend = s["ves_wob"] * (6.0 * jnp.sin(0.35 * r + s["ves_p2"] + 3.0 * theta)
                           + 3.0 * jnp.sin(0.8 * r + s["ves_p1"] - 5.0 * theta))
    v1 = 0.5 + 0.5 * jnp.cos(s["ves_n1"] * 0.5 * (theta + bend) * (1.0 + 1.2 * spread) + s["ves_p1"])
    v2 = 0.5 + 0.5 * jnp.cos(s["ves_n2"] * 0.5 * (theta - 0.7 * bend) * (1.0 + 1.6 * spread) + s["ves_p2"])
    v1, v2 = v1 * v1, v2 * v2
    v1, v2 = v1 * v1, v2 * v2 * v2
    taper = jnp.exp(-r / s["ves_decay"])
    return s["ves_amp"] * taper * (v1 * (0.4 + 0.6 * taper) + 0.6 * v2 * (1.0 - taper))


def atan2(y, x):
    """atan2 to ~1e-3 rad from a polynomial (XLA's CPU atan2 does not vectorise)."""
    ax, ay = jnp.abs(x), jnp.abs(y)
    a = jnp.minimum(ax, ay) / jnp.maximum(jnp.maximum(ax, ay), 1e-12)
    s = a * a
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * a + a
    r = jnp.where(ay > ax, jnp.pi / 2 - r, r)
    r = jnp.where(x < 0, jnp.pi - r, r)
    return jnp.where(y < 0, -r, r)
