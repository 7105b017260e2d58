"""Radiographs of phantoms: analytic Beer-Lambert line integrals, detector and display.

Each pixel is a parallel ray; every shape contributes its exact chord (the roots of a
quadratic, cut by a slab), shapes that displace lung are combined by interval logic, ribs
and vertebrae are periodic tube families evaluated in closed form. The line integral then
goes through quantum noise, detector blur, edge enhancement and a film-like tone curve.
Masks are projections of the same 3D structures. One jitted function renders a batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from chexficient.data.synthetic import phantom as P

IMAGING = ("yaw", "roll", "shift_u", "shift_z", "fov", "center_z", "exposure", "photons",
           "blur", "unsharp", "gamma", "contrast", "grid_amp", "grid_period")
"""Per-image acquisition and display parameters (pose, exposure, detector, processing)."""

MASKS = ("left_lung", "right_lung", "heart", "pathology")
MU_LUNG = 0.05
MU_VESSEL = 0.03
_BIG = 1.0e6
_RIB_END = np.array([1.55, 1.68, 1.68, 1.68, 1.68, 1.66, 1.64, 1.58, 1.5, 1.4, 1.15, 0.9], np.float32)
"""How far round each rib reaches (angle from the spine / 90 degrees): floating ribs stop short."""


def render(batch: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [B,S,S] and masks uint8 [B,S,S,4] of a stacked batch (see stack())."""
    images, masks = _render_jit(batch, size)
    return np.asarray(images), np.asarray(masks)


def stack(phantoms: list[dict[str, np.ndarray]], imaging: list[dict[str, float]],
          seeds: list[int]) -> dict[str, np.ndarray]:
    """Stacks per-record phantom arrays, imaging parameters and noise seeds into a batch."""
    batch = {k: np.stack([p[k] for p in phantoms]) for k in phantoms[0]}
    batch["imaging"] = np.array([[im[k] for k in IMAGING] for im in imaging], np.float32)
    batch["seed"] = np.array(seeds, np.uint32)
    return batch


@functools.partial(jax.jit, static_argnums=1)
def _render_jit(batch, size):
    return jax.vmap(functools.partial(_render_one, size=size))(batch)


def _rotation(angles):
    """R = Rz Ry Rx for rows of angles [N, 3] -> [N, 3, 3]."""
    cx, cy, cz = (jnp.cos(angles[:, i]) for i in range(3))
    sx, sy, sz = (jnp.sin(angles[:, i]) for i in range(3))
    return jnp.stack([
        jnp.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
        jnp.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
        jnp.stack([-sy, cy * sx, cy * cx], -1)], -2)


def _coefficients(rows, d, e_u):
    """Per-shape ray coefficients for rays U e_u + Z e_z + t d (see _interval)."""
    c, inv = rows[:, 0:3], 1.0 / rows[:, 3:6]
    rot = _rotation(rows[:, 6:9])
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


def _quadratic(k, u, z):
    """(mid, D) of every shape at every pixel: the chord is mid +- sqrt(D)."""
    e = lambda a: a[:, None, None]  # noqa: E731
    du, dz = u - e(k["uc"]), z - e(k["zc"])
    mid = e(k["t0"]) + e(k["m1"]) * du + e(k["m2"]) * dz
    disc = e(k["c0"]) + du * (e(k["c3"]) * du + e(k["c4"]) * dz) + e(k["c5"]) * dz * dz
    return mid, disc, du, dz


def _interval(k, u, z):
    """Entry and exit ray parameters [N,S,S] of each shape cut by its slab (lo >= hi: missed)."""
    e = lambda a: a[:, None, None]  # noqa: E731
    mid, disc, du, dz = _quadratic(k, u, z)
    h = jnp.sqrt(jnp.maximum(disc, 0.0))
    smid = e(k["t0"]) + e(k["s1"]) * du + e(k["s2"]) * dz
    return jnp.maximum(mid - h, smid - e(k["hs"])), jnp.minimum(mid + h, smid + e(k["hs"]))


def _length(*intervals):
    """Length of the intersection of intervals (lo, hi)."""
    lo = functools.reduce(jnp.maximum, [i[0] for i in intervals])
    hi = functools.reduce(jnp.minimum, [i[1] for i in intervals])
    return jnp.maximum(hi - lo, 0.0)


def _meet(a, b):
    """Intersection of two intervals (lo, hi)."""
    return jnp.maximum(a[0], b[0]), jnp.minimum(a[1], b[1])


def _upper(cap, above):
    """A cap that bounds only above its centre height: everything passes below it."""
    return jnp.where(above, cap[0], -_BIG), jnp.where(above, cap[1], _BIG)


def _hull(lo, hi, idx):
    """Smallest interval holding the non-empty intervals `idx` (union of touching shapes)."""
    empty = lo[idx] >= hi[idx]
    return (jnp.min(jnp.where(empty, _BIG, lo[idx]), 0), jnp.max(jnp.where(empty, -_BIG, hi[idx]), 0))


def _carved(x, dome, heart, mediast):
    """Length of x minus diaphragm, heart and mediastinum (inclusion-exclusion over intervals)."""
    return (_length(x) - _length(x, dome) - _length(x, heart) - _length(x, mediast)
            + _length(x, dome, heart) + _length(x, dome, mediast) + _length(x, heart, mediast)
            - _length(x, dome, heart, mediast))


def _body(s, u, z, ca, sa):
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


def _ribs(s, cage_row, t, u, z, ca, sa):
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
    phi = jnp.arctan2(xi, eta) * (2.0 / jnp.pi)
    front = jnp.maximum(phi - 1.0, 0.0)
    zz = s["rib_top"] - z - s["rib_a"] * phi - s["rib_b"] * front**1.2
    q, sp = s["rib_quad"], s["rib_space"]
    right = (x < 0).astype(jnp.float32)
    k_cont = (jnp.sqrt(jnp.maximum(1.0 + 4 * q * zz / sp, 0.0)) - 1.0) / (2 * q)
    broken_side = jnp.where(s["frac_side"] == 0, right, 1.0 - right)
    on_broken = broken_side * (jnp.abs(k_cont - s["frac_rib"]) < 0.7)
    zz = zz - on_broken * (phi > s["frac_phi"]) * s["frac_shift"]
    k_cont = (jnp.sqrt(jnp.maximum(1.0 + 4 * q * zz / sp, 0.0)) - 1.0) / (2 * q)
    k = jnp.round(k_cont)
    dz = zz - sp * (k + q * k * k)
    ki = jnp.clip(k, 0, 11).astype(jnp.int32)
    valid = (k >= 0) & (k <= 11) & (phi > 0.07) & (phi < jnp.asarray(_RIB_END)[ki])
    gap = on_broken * (jnp.abs(phi - s["frac_phi"]) < s["frac_gap"]) * (ki == s["frac_rib"])
    dh = (2.0 / jnp.pi) * (s["rib_a"] + 1.2 * s["rib_b"] * front**0.2)
    slope = dh / (cage_a * ring * jnp.maximum(jnp.abs(jnp.cos(phi * jnp.pi / 2)), 0.3))
    rv = s["rib_rv"] * jnp.sqrt(1.0 + jnp.minimum(slope, 3.0) ** 2)
    qn = dz / rv
    outer = jnp.sqrt(jnp.maximum(0.0, 1.0 - qn * qn))
    inner = 0.6 * jnp.sqrt(jnp.maximum(0.0, 1.0 - (qn / 0.6) ** 2))
    nx, ny = x / (cage_a * ring) ** 2, (y - cage_y) / (cage_b * ring) ** 2
    cos_inc = jnp.abs(nx * sa + ny * ca) / jnp.sqrt(nx * nx + ny * ny + 1e-12)
    fade = jnp.where(phi > 1.0, 0.45, 0.8)
    chord = 2 * s["rib_rr"] * (outer - 0.6 * inner) / jnp.maximum(cos_inc, 0.45)
    return chord * fade * valid * (1.0 - gap)


def _spine(s, u, z, ca, sa, g):
    """Vertebral bodies, pedicles and spinous processes: vertical columns of stacked ovals."""
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


def _vessels(s, u, z, ca, left):
    """Bronchovascular markings: curving, tapering, multiplying lines from each hilum."""
    hx = jnp.where(left, s["hil_lx"], s["hil_rx"]) * ca
    hz = jnp.where(left, s["hil_lz"], s["hil_rz"])
    du, dz = u - hx, z - hz
    r = jnp.sqrt(du * du + dz * dz) + 1e-3
    theta = jnp.arctan2(dz, jnp.where(left, du, -du))
    spread = jnp.log1p(r / 4.0)
    bend = s["ves_wob"] * 4.0 * jnp.sin(0.45 * r + s["ves_p2"] + 2.0 * theta)
    v1 = 0.5 + 0.5 * jnp.cos(s["ves_n1"] * 0.5 * (theta + bend) * (1.0 + 0.6 * spread) + s["ves_p1"])
    v2 = 0.5 + 0.5 * jnp.cos(s["ves_n2"] * 0.5 * (theta - 0.7 * bend) * (1.0 + 0.9 * spread) + s["ves_p2"])
    sharp = 3.0 + 1.5 * r / s["ves_decay"]
    lines = v1 ** sharp + 0.6 * v2 ** (1.5 * sharp)
    return s["ves_amp"] * jnp.exp(-r / s["ves_decay"]) * lines


def _hash_normal(seed, size):
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


def _blur(img, sigma, radius):
    """Separable Gaussian blur with a per-image sigma (pixels) and a static tap radius."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (taps / jnp.maximum(sigma, 0.3)) ** 2)
    w = w / jnp.sum(w)
    n = img.shape[0]
    for axis in (0, 1):
        pad = jnp.pad(img, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        img = sum(w[i] * jax.lax.slice_in_dim(pad, i, i + n, axis=axis) for i in range(2 * radius + 1))
    return img


def _render_one(batch, size):
    line, masks = project(batch, size)
    return _detect(line, dict(zip(IMAGING, batch["imaging"])), batch["seed"], size), masks


def project(batch, size):
    """Line integral [S,S] (relative to air) and masks [S,S,4] of one record (unbatched)."""
    s = dict(zip(P.SCALARS, batch["scalars"]))
    im = dict(zip(IMAGING, batch["imaging"]))
    g = s["rib_rv"] / 0.55
    ca, sa = jnp.cos(im["yaw"]), jnp.sin(im["yaw"])
    d, e_u = jnp.stack([sa, ca, 0.0]), jnp.stack([ca, -sa, 0.0])
    grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size - 0.5
    gx, gy = grid[None, :], -grid[:, None]
    cr, sr = jnp.cos(im["roll"]), jnp.sin(im["roll"])
    u = im["fov"] * (cr * gx - sr * gy) + im["shift_u"]
    z = im["fov"] * (sr * gx + cr * gy) + im["center_z"] + im["shift_z"]

    lo, hi = _interval(_coefficients(batch["csg"], d, e_u), u, z)
    iv = lambda i: (lo[i], hi[i])  # noqa: E731
    heart = _hull(lo, hi, np.array([P.HEART_V, P.HEART_A]))
    mediast = _hull(lo, hi, np.array([P.MEDIAST, P.KNOB, P.AORTA, P.SVC]))

    blob_k = _coefficients(batch["blob"], d, e_u)
    _, bdisc, _, _ = _quadratic(blob_k, u, z)
    bd = jnp.maximum(bdisc, 0.0)
    meta = batch["blob_meta"]
    e = lambda a: a[:, None, None]  # noqa: E731
    blob = e(batch["blob"][:, 10]) * jnp.where(
        e(meta[:, 1]) > 0.5, 2 * jnp.sqrt(bd), (4.0 / 3.0) * bd * jnp.sqrt(bd) / e(blob_k["c0"]))

    line = P.MU_TISSUE * _body(s, u, z, ca, sa)
    masks, opaque = [], jnp.zeros_like(u)
    for side in (1, 0):  # left lung first: mask channel order
        dome = iv(P.DOME_R + side)
        apex = _upper(iv(P.APEX_R + side), z > batch["csg"][P.APEX_R + side, 2])
        cavity = _meet(iv(P.CAV_R + side), apex)
        cav = _carved(cavity, dome, heart, mediast)
        par = _carved(_meet(iv(P.PAR_R + side), apex), dome, heart, mediast)
        fluid = (z < s["fluid_z_r" if side == 0 else "fluid_z_l"]) * jnp.maximum(
            _length(cavity) - _length(cavity, dome) - _length(cavity, iv(P.MEN_R + side))
            + _length(cavity, dome, iv(P.MEN_R + side)), 0.0)
        gap = jnp.maximum(cav - par, 0.0)
        air = jnp.maximum(cav - fluid, 0.0)
        lung = jnp.maximum(par - fluid, 0.0)
        on_side = e((meta[:, 0] == side).astype(jnp.float32))
        opac = jnp.minimum(jnp.sum(on_side * blob, 0), lung)
        shell = jnp.maximum(_length(iv(P.PAR_R + side), apex) - _length(iv(P.PLE_R + side), apex), 0.0)
        density = s["lung_density_r" if side == 0 else "lung_density_l"]
        vessels = _vessels(s, u, z, ca, side == 1) * MU_VESSEL * density
        line += (P.D_AIR * air + (MU_LUNG * density + vessels) * (lung - opac)
                 + (P.MU_TISSUE - MU_LUNG) * (opac + shell * (gap > 0.2)))
        lesion = jnp.minimum(jnp.sum(on_side * e(meta[:, 2]) * blob, 0), lung)
        masks.append(cav > 1.0)
        opaque = jnp.maximum(opaque, jnp.where((gap > 1.0) | (fluid > 1.0) | (lesion > 0.8), 1.0, 0.0))

    ell_k = _coefficients(batch["ell"], d, e_u)
    _, edisc, _, _ = _quadratic(ell_k, u, z)
    line += jnp.sum(e(batch["ell"][:, 10]) * 2 * jnp.sqrt(jnp.maximum(edisc, 0.0)), 0)
    tlo, thi = _interval(_coefficients(batch["tube"], d, e_u), u, z)
    line += jnp.sum(e(batch["tube"][:, 10]) * jnp.maximum(thi - tlo, 0.0), 0)
    cage = iv(P.CAGE)
    hit = cage[1] > cage[0]
    ribs = _ribs(s, batch["csg"][P.CAGE], cage[0], u, z, ca, sa) + _ribs(s, batch["csg"][P.CAGE], cage[1], u, z, ca, sa)
    line += P.D_BONE * ribs * hit + _spine(s, u, z, ca, sa, g)

    masks += [_length(heart) > 0.5, opaque > 0]
    return line, jnp.stack(masks, -1).astype(jnp.uint8)


def _detect(line, im, seed, size):
    """Quantum noise, detector blur, edge enhancement, grid lines and the tone curve."""
    scale = size / 128.0
    sigma_l = jnp.exp(0.5 * line) / jnp.sqrt(im["photons"])
    line = line + sigma_l * _hash_normal(seed, size)
    line = _blur(line, im["blur"] * scale, max(2, int(round(2 * scale))))
    smooth = _blur(line, 4.0 * scale, max(4, int(round(8 * scale))))
    line = line + im["unsharp"] * (line - smooth)
    col = jnp.arange(size, dtype=jnp.float32)[None, :]
    line = line + im["grid_amp"] * jnp.cos(2 * jnp.pi * col / im["grid_period"])
    x = (line - im["exposure"]) / im["contrast"]
    y = jax.nn.sigmoid(4.0 * (x - 0.5))
    y = (y - jax.nn.sigmoid(-2.0)) / (jax.nn.sigmoid(2.0) - jax.nn.sigmoid(-2.0))
    y = jnp.clip(y, 0.0, 1.0) ** im["gamma"]
    return jnp.round(255.0 * y).astype(jnp.uint8)
