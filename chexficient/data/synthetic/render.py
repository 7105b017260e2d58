"""Radiographs of phantoms: analytic Beer-Lambert line integrals, detector and display.

Each pixel is a parallel ray; every shape contributes its exact chord (the roots of a
quadratic, cut by a slab), shapes that displace lung are combined by interval logic, ribs
and vertebrae are periodic tube families evaluated in closed form. The line integral then
goes through quantum noise, detector blur, edge enhancement and a film-like tone curve.
Masks are projections of the same 3D structures.
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
    """Images uint8 [B,S,S] and masks uint8 [B,S,S,4] of a stacked batch (see stack()).

    Three jitted stages: XLA on CPU would otherwise re-fuse (recompute) every shared value
    into each of its consumers, and optimisation barriers are dropped on CPU.
    """
    prims = _primitives_jit(batch, size=size)
    line, masks = _compose_jit(prims, batch, size=size)
    return np.asarray(_detect_jit(line, batch, size=size)), np.asarray(masks)


def stack(phantoms: list[dict[str, np.ndarray]], imaging: list[dict[str, float]],
          seeds: list[int]) -> dict[str, np.ndarray]:
    """Stacks per-record phantom arrays, imaging parameters and noise seeds into a batch."""
    batch = {k: np.stack([p[k] for p in phantoms]) for k in phantoms[0]}
    batch["imaging"] = np.array([[im[k] for k in IMAGING] for im in imaging], np.float32)
    batch["seed"] = np.array(seeds, np.uint32)
    return batch


def _batched(fn):
    """jit(vmap(fn)) over every argument but the static image `size`."""
    @functools.partial(jax.jit, static_argnames="size")
    def run(*args, size):
        return jax.vmap(functools.partial(fn, size=size))(*args)
    return run


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


def _quadratic(k, i, u, z):
    """(mid, D, du, dz) of shape i at every pixel: its chord is mid +- sqrt(D).

    Shapes are evaluated one at a time on [S, S] (not as an [N, S, S] stack): elementwise
    chains that XLA fuses and vectorises, instead of a strided reduction over shapes.
    """
    du, dz = u - k["uc"][i], z - k["zc"][i]
    mid = k["t0"][i] + k["m1"][i] * du + k["m2"][i] * dz
    disc = k["c0"][i] + du * (k["c3"][i] * du + k["c4"][i] * dz) + k["c5"][i] * dz * dz
    return mid, disc, du, dz


def _interval(k, i, u, z):
    """Entry and exit ray parameters of shape i cut by its slab (lo >= hi: missed)."""
    mid, disc, du, dz = _quadratic(k, i, u, z)
    h = jnp.sqrt(jnp.maximum(disc, 0.0))
    smid = k["t0"][i] + k["s1"][i] * du + k["s2"][i] * dz
    return jnp.maximum(mid - h, smid - k["hs"][i]), jnp.minimum(mid + h, smid + k["hs"][i])


def _chord(k, i, u, z):
    """Chord length of (unslabbed) ellipsoid i."""
    return 2.0 * jnp.sqrt(jnp.maximum(_quadratic(k, i, u, z)[1], 0.0))


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


def _hull(intervals):
    """Smallest interval holding the non-empty `intervals` (union of touching shapes)."""
    los = [jnp.where(lo < hi, lo, _BIG) for lo, hi in intervals]
    his = [jnp.where(lo < hi, hi, -_BIG) for lo, hi in intervals]
    return functools.reduce(jnp.minimum, los), functools.reduce(jnp.maximum, his)


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


def _vessels(s, u, z, ca):
    """Bronchovascular markings: curving, tapering, multiplying lines from the nearer hilum."""
    left = u > 0.0
    hx = jnp.where(left, s["hil_lx"], s["hil_rx"]) * ca
    hz = jnp.where(left, s["hil_lz"], s["hil_rz"])
    du, dz = u - hx, z - hz
    r = jnp.sqrt(du * du + dz * dz) + 1e-3
    theta = jnp.arctan2(dz, jnp.abs(du))
    spread = r / (r + 6.0)
    bend = s["ves_wob"] * 4.0 * jnp.sin(0.45 * r + s["ves_p2"] + 2.0 * theta)
    v1 = 0.5 + 0.5 * jnp.cos(s["ves_n1"] * 0.5 * (theta + bend) * (1.0 + 1.2 * spread) + s["ves_p1"])
    v2 = 0.5 + 0.5 * jnp.cos(s["ves_n2"] * 0.5 * (theta - 0.7 * bend) * (1.0 + 1.6 * spread) + s["ves_p2"])
    v1, v2 = v1 * v1, v2 * v2
    v1, v2 = v1 * v1, v2 * v2 * v2
    taper = jnp.exp(-r / s["ves_decay"])
    return s["ves_amp"] * taper * (v1 * (0.4 + 0.6 * taper) + 0.6 * v2 * (1.0 - taper))


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
    """Separable Gaussian blur (edge-padded) with a per-image sigma in pixels."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (taps / jnp.maximum(sigma, 0.3)) ** 2)
    w = w / jnp.sum(w)
    n = img.shape[0]
    for axis in (0, 1):
        pad = jnp.pad(img, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        img = sum(w[i] * jax.lax.slice_in_dim(pad, i, i + n, axis=axis) for i in range(2 * radius + 1))
    return img


def _rays(batch, size):
    """Pixel coordinates (u, z) on the detector plane and the ray direction d, e_u."""
    im = dict(zip(IMAGING, batch["imaging"]))
    ca, sa = jnp.cos(im["yaw"]), jnp.sin(im["yaw"])
    grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size - 0.5
    gx, gy = grid[None, :], -grid[:, None]
    cr, sr = jnp.cos(im["roll"]), jnp.sin(im["roll"])
    u = im["fov"] * (cr * gx - sr * gy) + im["shift_u"]
    z = im["fov"] * (sr * gx + cr * gy) + im["center_z"] + im["shift_z"]
    return u, z, ca, sa


def _primitives(batch, size):
    """Stage 1: per-pixel intervals of the lung-carving shapes, blob fills, vessel texture
    and the additive line integral (body, bones, tubes, devices, ribs, spine)."""
    s = dict(zip(P.SCALARS, batch["scalars"]))
    u, z, ca, sa = _rays(batch, size)
    d, e_u = jnp.stack([sa, ca, 0.0]), jnp.stack([ca, -sa, 0.0])

    csg_k = _coefficients(batch["csg"], d, e_u)
    iv = lambda i: _interval(csg_k, i, u, z)  # noqa: E731
    intervals = []
    for side in (0, 1):
        apex = _upper(iv(P.APEX_R + side), z > batch["csg"][P.APEX_R + side, 2])
        intervals += [_meet(iv(P.CAV_R + side), apex), _meet(iv(P.PAR_R + side), apex),
                      _meet(iv(P.PLE_R + side), apex), iv(P.DOME_R + side), iv(P.MEN_R + side)]
    intervals += [_hull([iv(P.HEART_V), iv(P.HEART_A)]),
                  _hull([iv(i) for i in (P.MEDIAST, P.KNOB, P.AORTA, P.SVC)])]

    blob_k = _coefficients(batch["blob"], d, e_u)
    meta, fill = batch["blob_meta"], batch["blob"][:, 10]
    blobs = [jnp.zeros_like(u)] * 4  # fill per side, then its in-mask part per side
    for i in range(P.N_BLOB):
        bd = jnp.maximum(_quadratic(blob_k, i, u, z)[1], 0.0)
        rb = jnp.sqrt(bd)
        value = fill[i] * jnp.where(meta[i, 1] > 0.5, 2 * rb, (4.0 / 3.0) * bd * rb / blob_k["c0"][i])
        left = meta[i, 0]
        blobs = [blobs[0] + (1 - left) * value, blobs[1] + left * value,
                 blobs[2] + (1 - left) * meta[i, 2] * value, blobs[3] + left * meta[i, 2] * value]

    fixed = P.MU_TISSUE * _body(s, u, z, ca, sa)
    ell_k, tube_k = _coefficients(batch["ell"], d, e_u), _coefficients(batch["tube"], d, e_u)
    for i in range(P.N_ELL):
        fixed += batch["ell"][i, 10] * _chord(ell_k, i, u, z)
    for i in range(P.N_TUBE):
        fixed += batch["tube"][i, 10] * _length(_interval(tube_k, i, u, z))
    cage_lo, cage_hi = iv(P.CAGE)
    ribs = sum(_ribs(s, batch["csg"][P.CAGE], t, u, z, ca, sa) for t in (cage_lo, cage_hi))
    fixed += P.D_BONE * ribs * (cage_hi > cage_lo) + _spine(s, u, z, ca, sa, s["rib_rv"] / 0.55)
    return jnp.stack([jnp.stack(i) for i in intervals]), jnp.stack(blobs), fixed, _vessels(s, u, z, ca)


def _compose(prims, batch, size):
    """Stage 2: lungs carved by diaphragm, heart and mediastinum, pleural air and fluid,
    opacities; returns the line integral [S,S] with quantum noise, and masks [S,S,4]."""
    intervals, blobs, line, vessels = prims
    s = dict(zip(P.SCALARS, batch["scalars"]))
    _, z, _, _ = _rays(batch, size)
    heart, mediast = (intervals[10, 0], intervals[10, 1]), (intervals[11, 0], intervals[11, 1])
    masks, pathology = [], jnp.zeros(z.shape, bool)
    for side in (1, 0):  # left lung first: the mask channel order
        cavity, parenchyma, pleura, dome, meniscus = [(intervals[5 * side + j, 0], intervals[5 * side + j, 1])
                                                      for j in range(5)]
        cav = _carved(cavity, dome, heart, mediast)
        par = _carved(parenchyma, dome, heart, mediast)
        fluid = (z < s["fluid_z_r" if side == 0 else "fluid_z_l"]) * jnp.maximum(
            _length(cavity) - _length(cavity, dome) - _length(cavity, meniscus)
            + _length(cavity, dome, meniscus), 0.0)
        gap = jnp.maximum(cav - par, 0.0)
        air = jnp.maximum(cav - fluid, 0.0)
        lung = jnp.maximum(par - fluid, 0.0)
        opac = jnp.minimum(blobs[side], lung)
        shell = jnp.maximum(_length(parenchyma) - _length(pleura), 0.0)
        density = s["lung_density_r" if side == 0 else "lung_density_l"]
        line += (P.D_AIR * air + (MU_LUNG + MU_VESSEL * vessels) * density * (lung - opac)
                 + (P.MU_TISSUE - MU_LUNG) * (opac + shell * (gap > 0.2)))
        masks.append(cav > 1.0)
        pathology |= (gap > 1.0) | (fluid > 1.0) | (jnp.minimum(blobs[2 + side], lung) > 0.8)
    masks += [_length(heart) > 0.5, pathology]
    im = dict(zip(IMAGING, batch["imaging"]))
    noise = jnp.exp(0.5 * line) / jnp.sqrt(im["photons"]) * _hash_normal(batch["seed"], size)
    return line + noise, jnp.stack(masks, -1).astype(jnp.uint8)


def _detect(line, batch, size):
    """Stage 3: detector blur, edge enhancement, grid lines and the film-like tone curve."""
    im = dict(zip(IMAGING, batch["imaging"]))
    line = _blur(line, im["blur"] * size / 128.0, 2 if size <= 192 else 4)
    line = line + im["unsharp"] * (line - _low_pass(line, max(4, size // 32)))
    col = jnp.arange(size, dtype=jnp.float32)[None, :]
    line = line + im["grid_amp"] * jnp.cos(2 * jnp.pi * col / im["grid_period"])
    x = (line - im["exposure"]) / im["contrast"]
    y = jax.nn.sigmoid(4.0 * (x - 0.5))
    y = (y - jax.nn.sigmoid(-2.0)) / (jax.nn.sigmoid(2.0) - jax.nn.sigmoid(-2.0))
    y = jnp.clip(y, 0.0, 1.0) ** im["gamma"]
    return jnp.round(255.0 * y).astype(jnp.uint8)


def _low_pass(img, block):
    """Large-scale background: block means, smoothly upsampled (for the unsharp mask)."""
    n = img.shape[0]
    small = img[: n - n % block, : n - n % block].reshape(n // block, block, n // block, block).mean((1, 3))
    return jax.image.resize(small, (n, n), "linear")


_primitives_jit = _batched(_primitives)
_compose_jit = _batched(_compose)
_detect_jit = _batched(_detect)
