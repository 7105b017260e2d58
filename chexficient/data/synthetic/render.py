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

from chexficient.data.synthetic import detector as D
from chexficient.data.synthetic import phantom as P
from chexficient.data.synthetic import quadrics as Q
from chexficient.data.synthetic import structures as S

IMAGING = ("yaw", "roll", "shift_u", "shift_z", "fov", "center_z", "arms", "exposure", "photons",
           "blur", "unsharp", "gamma", "contrast", "grid_amp", "grid_period")
"""Per-image acquisition and display parameters (pose, exposure, detector, processing)."""

MASKS = ("left_lung", "right_lung", "heart", "pathology")
MU_LUNG = 0.05
MU_VESSEL = 0.03


def render(batch: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [B,S,S] and masks uint8 [B,S,S,4] of a stacked batch (see stack()).

    Separate jitted stages materialise what many pixels or consumers share: XLA on CPU
    would otherwise fuse (recompute) it into every consumer, and it drops optimisation
    barriers.
    """
    prims = _primitives_jit(batch, _setup_jit(batch, size=size), size=size)
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


def _setup(batch, size):
    """Stage 0: pixel coordinates and the ray coefficients of every shape (per image)."""
    u, z, ca, sa = _rays(batch, size)
    d, e_u = jnp.stack([sa, ca, 0.0]), jnp.stack([ca, -sa, 0.0])
    coefs = {k: Q.coefficients(batch[k], d, e_u) for k in ("csg", "blob", "ell", "tube")}
    return dict(coefs, u=u, z=z, ca=ca, sa=sa)


def _primitives(batch, setup, size):
    """Stage 1: per-pixel intervals of the lung-carving shapes, blob fills, vessel texture
    and the additive line integral (body, bones, tubes, devices, ribs, spine)."""
    s = dict(zip(P.SCALARS, batch["scalars"]))
    im = dict(zip(IMAGING, batch["imaging"]))
    u, z, ca, sa = setup["u"], setup["z"], setup["ca"], setup["sa"]
    coefs = setup
    csg_k = coefs["csg"]
    iv = lambda i: Q.span(csg_k, i, u, z)  # noqa: E731
    intervals = []
    for side in (0, 1):
        apex = Q.upper(iv(P.APEX_R + side), z > batch["csg"][P.APEX_R + side, 2])
        intervals += [Q.meet(iv(P.CAV_R + side), apex), Q.meet(iv(P.PAR_R + side), apex),
                      Q.meet(iv(P.PLE_R + side), apex), iv(P.DOME_R + side), iv(P.MEN_R + side)]
    intervals += [Q.hull([iv(P.HEART_V), iv(P.HEART_A)]),
                  Q.hull([iv(i) for i in (P.MEDIAST, P.KNOB, P.AORTA, P.SVC)])]

    blob_k = coefs["blob"]
    meta, fill = batch["blob_meta"], batch["blob"][:, 10]
    blobs = [jnp.zeros_like(u)] * 4  # fill per side, then its in-mask part per side
    for i in range(P.N_BLOB):
        bd = jnp.maximum(Q.quadratic(blob_k, i, u, z)[1], 0.0)
        rb = jnp.sqrt(bd)
        value = fill[i] * jnp.where(meta[i, 1] > 0.5, 2 * rb, (4.0 / 3.0) * bd * rb / blob_k["c0"][i])
        left = meta[i, 0]
        blobs = [blobs[0] + (1 - left) * value, blobs[1] + left * value,
                 blobs[2] + (1 - left) * meta[i, 2] * value, blobs[3] + left * meta[i, 2] * value]

    fixed = P.MU_TISSUE * S.body(s, u, z, ca, sa)
    ell_k, tube_k = coefs["ell"], coefs["tube"]
    for i in range(P.N_ELL):
        disc = jnp.maximum(Q.quadratic(ell_k, i, u, z)[1], 0.0)
        root = jnp.sqrt(disc)
        chord = jnp.where(batch["ell"][i, 9] < 0, (4.0 / 3.0) * disc * root / ell_k["c0"][i], 2.0 * root)
        fixed += batch["ell"][i, 10] * chord * (im["arms"] if i in P.ARMS else 1.0)
    for i in range(P.N_TUBE):
        fixed += batch["tube"][i, 10] * Q.length(Q.interval(tube_k, i, u, z))
    cage_lo, cage_hi = iv(P.CAGE)
    ribs = sum(S.ribs(s, batch["csg"][P.CAGE], t, u, z, ca, sa) for t in (cage_lo, cage_hi))
    fixed += P.D_BONE * ribs * (cage_hi > cage_lo) + S.spine(s, u, z, ca, sa)
    # Separate outputs, not a stack: XLA's CPU concatenate does not vectorise.
    return intervals, blobs, fixed, S.vessels(s, u, z, ca)


def _compose(prims, batch, size):
    """Stage 2: lungs carved by diaphragm, heart and mediastinum, pleural air and fluid,
    opacities; returns the line integral [S,S] with quantum noise, and masks [S,S,4]."""
    intervals, blobs, line, vessels = prims
    s = dict(zip(P.SCALARS, batch["scalars"]))
    _, z, _, _ = _rays(batch, size)
    heart, mediast = intervals[10], intervals[11]
    masks, pathology = [], jnp.zeros(z.shape, bool)
    for side in (1, 0):  # left lung first: the mask channel order
        cavity, parenchyma, pleura, dome, meniscus = intervals[5 * side:5 * side + 5]
        cav = Q.carved(cavity, dome, heart, mediast)
        par = Q.carved(parenchyma, dome, heart, mediast)
        fluid = (z < s["fluid_z_r" if side == 0 else "fluid_z_l"]) * jnp.maximum(
            Q.length(cavity) - Q.length(cavity, dome) - Q.length(cavity, meniscus)
            + Q.length(cavity, dome, meniscus), 0.0)
        gap = jnp.maximum(cav - par, 0.0)
        air = jnp.maximum(cav - fluid, 0.0)
        lung = jnp.maximum(par - fluid, 0.0)
        opac = jnp.minimum(blobs[side], lung)
        shell = jnp.maximum(Q.length(parenchyma) - Q.length(pleura), 0.0)
        density = s["lung_density_r" if side == 0 else "lung_density_l"]
        line += (P.D_AIR * air + (MU_LUNG + MU_VESSEL * vessels) * density * (lung - opac)
                 + (P.MU_TISSUE - MU_LUNG) * (opac + shell * (gap > 0.2)))
        masks.append(cav > 1.0)
        pathology |= (gap > 1.0) | (fluid > 1.0) | (jnp.minimum(blobs[2 + side], lung) > 0.8)
    masks += [Q.length(heart) > 0.5, pathology]
    photons = batch["imaging"][IMAGING.index("photons")]
    return D.quantum_noise(line, photons, batch["seed"], size), jnp.stack(masks, -1).astype(jnp.uint8)


def _detect(line, batch, size):
    """Stage 3: the detector and display (detector.py)."""
    return D.detect(line, dict(zip(IMAGING, batch["imaging"])), size)


_setup_jit = _batched(_setup)
_primitives_jit = _batched(_primitives)
_compose_jit = _batched(_compose)
_detect_jit = _batched(_detect)
