"""3D thorax phantoms: a patient's normal anatomy as tables of analytic shapes.

`sample_anatomy` draws the patient parameters (habitus, lung and heart size, diaphragm
height, rib spacing, inspiration...); `normal_phantom` turns them into shape tables that the
renderer projects. Findings are added by pathology.py, which edits the same tables.
Coordinates in cm: x to the patient's left, y posterior, z superior (shapes.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from chexficient.data.synthetic.shapes import EMPTY, Row, ellipsoid, extent_x, rod, scaled, table

# Named slots of the CSG table (shapes combined by interval logic, not simply added).
CAV_R, CAV_L, PAR_R, PAR_L, PLE_R, PLE_L, DOME_R, DOME_L = range(8)
HEART_V, HEART_A, MEDIAST, KNOB, AORTA, SVC, MEN_R, MEN_L, CAGE, APEX_R, APEX_L = range(8, 19)
N_CSG = 19
N_BLOB, N_ELL, N_TUBE = 12, 20, 12
ARMS = tuple(range(6))
"""Ellipsoid slots of the arms and humeri (soft tissue, heads, shafts; both sides)."""
BLOB_META = ("side", "sharp", "mask")
"""Per blob: lung side (0 right, 1 left), sharp edge (1) or smooth profile (0), in mask (1)."""

SCALARS = (
    "scale", "body_a", "body_b", "body_y", "shoulder_z", "shoulder_a", "shoulder_h", "neck_r",
    "lung_density_r", "lung_density_l", "fluid_z_r", "fluid_z_l",
    "rib_top", "rib_space", "rib_quad", "rib_rv", "rib_rr", "rib_a", "rib_b",
    "frac_side", "frac_rib", "frac_phi", "frac_gap", "frac_shift",
    "spine_y", "spine_r", "vert_h", "hil_rx", "hil_rz", "hil_lx", "hil_lz",
    "ves_amp", "ves_n1", "ves_n2", "ves_p1", "ves_p2", "ves_wob", "ves_decay",
)
"""Named per-patient scalars (body outline, lungs, ribs, spine, vessel texture)."""

# Attenuation differences from soft tissue (1/cm at an effective ~60 keV).
MU_TISSUE = 0.20
D_AIR = -0.20
D_BONE = 0.30
D_CANCELLOUS = 0.12
D_WIRE = 1.5
D_METAL = 3.0


@dataclasses.dataclass
class Phantom:
    """One patient's shape tables (float32), ready to stack into a render batch."""

    csg: list[Row]
    blobs: list[Row]
    blob_meta: list[tuple[float, float, float]]
    ellipsoids: list[Row]
    tubes: list[Row]
    scalars: dict[str, float]
    anatomy: dict[str, float]

    def arrays(self) -> dict[str, np.ndarray]:
        """Fixed-size float32 arrays: csg, blob, ell, tube [slots, 11], blob_meta, scalars."""
        meta = list(self.blob_meta) + [(0.0, 0.0, 0.0)] * (N_BLOB - len(self.blob_meta))
        return {
            "csg": table(self.csg, N_CSG, "csg"),
            "blob": table(self.blobs, N_BLOB, "pathology blobs"),
            "blob_meta": np.array(meta[:N_BLOB], np.float32).reshape(N_BLOB, 3),
            "ell": table(self.ellipsoids, N_ELL, "ellipsoids"),
            "tube": table(self.tubes, N_TUBE, "tubes"),
            "scalars": np.array([self.scalars[k] for k in SCALARS], np.float32),
        }


def sample_anatomy(rng: np.random.Generator) -> dict[str, float]:
    """Patient parameters: size, habitus, fat, sex, inspiration, heart, ribs, vessels."""
    n = rng.standard_normal(12).tolist()
    u = rng.random(8).tolist()

    def clip(x: float, lo: float, hi: float) -> float:
        return min(hi, max(lo, x))

    return {
        "scale": clip(1.0 + 0.055 * n[0], 0.86, 1.15),
        "width": clip(1.0 + 0.05 * n[1], 0.9, 1.1),
        "fat": float(rng.beta(2.0, 3.0)),
        "female": float(u[0] < 0.45),
        "inspiration": clip(n[2], -2.0, 2.0),
        "dome_lr": clip(1.4 + 0.6 * n[3], 0.0, 3.0),
        "ctr": 0.39 + 0.075 * u[1],
        "heart_tilt": math.radians(42 + 6 * n[4]),
        "mediast": clip(2.5 + 0.25 * n[5], 2.0, 3.1),
        "rib_space": clip(1.0 + 0.04 * n[6], 0.9, 1.1),
        "rib_slope": clip(1.0 + 0.12 * n[7], 0.7, 1.3),
        "vert_h": clip(2.5 + 0.08 * n[8], 2.3, 2.7),
        "ves_n1": float(11 + int(6 * u[2])),
        "ves_n2": float(19 + int(8 * u[3])),
        "ves_p1": 2 * math.pi * u[4],
        "ves_p2": 2 * math.pi * u[5],
        "ves_wob": 0.05 + 0.1 * u[6],
        "ves_amp": 0.55 + 0.35 * u[7],
    }


def normal_phantom(a: dict[str, float]) -> Phantom:
    """The healthy thorax of patient parameters `a` (from sample_anatomy)."""
    g, w = a["scale"], a["scale"] * a["width"]
    dome_r = -1.1 * a["inspiration"]
    dome_l = dome_r - a["dome_lr"]
    apex = 23.5 * g
    carina = 15.0 * g
    cage_a, cage_b, cage_y, cage_z, cage_c = 14.2 * w, 10.2 * g, 0.6 * g, 8.0 * g, 27.0 * g
    body_a = cage_a + (1.0 + 3.0 * a["fat"]) * g
    body_b = cage_b + (1.2 + 2.5 * a["fat"]) * g

    csg: list[Row] = [EMPTY] * N_CSG  # meniscus slots stay empty until an effusion fills them
    for side, sign, dome in ((0, -1.0, dome_r), (1, 1.0, dome_l)):
        z_l = dome + 5.0 * g
        half_cage = cage_a * math.sqrt(max(0.0, 1 - ((z_l - cage_z) / cage_c) ** 2))
        lateral, medial = half_cage - 0.6 * g, 0.9 * g
        x_l, a_l = sign * (lateral + medial) / 2, (lateral - medial) / 2
        lung = ellipsoid((x_l, 1.3 * g, z_l), (a_l, 8.0 * g, apex + 3.0 * g - z_l))
        csg[CAV_R + side] = csg[PAR_R + side] = csg[PLE_R + side] = lung
        csg[APEX_R + side] = ellipsoid((x_l, 1.3 * g, apex - 14.0 * g), (1.02 * a_l, 8.3 * g, 14.0 * g))
        csg[DOME_R + side] = ellipsoid((sign * 6.5 * w, 1.0 * g, dome - 10.0 * g), (8.7 * w, 12 * g, 10 * g))
    csg[CAGE] = ellipsoid((0, cage_y, cage_z), (cage_a, cage_b, cage_c))
    _heart(csg, a, g, dome_r, dome_l)
    csg[MEDIAST] = ellipsoid((0, -0.5 * g, carina + 1.0 * g), (a["mediast"] * g, 4.5 * g, 7.5 * g))
    csg[KNOB] = ellipsoid((2.7 * g, 0.5 * g, carina + 2.4 * g), (1.7 * g, 2.2 * g, 1.6 * g))
    csg[AORTA] = rod((2.4 * g, 3.6 * g, carina + 2.2 * g), (1.9 * g, 4.0 * g, dome_l - 3), 1.2 * g)
    csg[SVC] = rod((-2.3 * g, -0.5 * g, carina + 6 * g), (-2.6 * g, -0.5 * g, carina - 5 * g), 1.1 * g)

    ells = []  # the arms and humeri come first (ARMS): they are raised out of a lateral view
    for s in (-1, 1):
        ells += [rod((s * (body_a + 6.5 * g), 1.0 * g, 24.0 * g), (s * (body_a + 9.0 * g), 2.0 * g, -14.0 * g),
                     4.3 * g, MU_TISSUE),
                 ellipsoid((s * (cage_a + 4.1 * g), 1.5 * g, 22.5 * g), (2.4 * g,) * 3, w=D_CANCELLOUS + 0.08),
                 rod((s * (cage_a + 4.3 * g), 1.5 * g, 21.5 * g), (s * (cage_a + 5.6 * g), 1.5 * g, 4.0 * g),
                     1.25 * g, D_BONE)]
    for s in (-1, 1):
        sternal, mid, acromial = ((s * 1.9 * g, -6.8 * g, 22.4 * g), (s * 8.0 * w, -7.4 * g, 22.6 * g),
                                  (s * (cage_a + 2.8 * g), -3.0 * g, 25.2 * g))
        ells += [rod(sternal, mid, 0.8 * g, D_BONE), rod(mid, acromial, 0.8 * g, D_BONE),
                 ellipsoid((s * (cage_a - 0.6 * g), 6.5 * g, 19.0 * g), (4.0 * g, 0.5 * g, 7.0 * g),
                           rot=(0, 0, -s * math.radians(45)), w=D_BONE)]
    ells += [ellipsoid((0, -cage_b + cage_y + 0.4 * g, 16 * g), (1.8 * g, 0.6 * g, 8 * g), w=D_CANCELLOUS),
             ellipsoid((5.8 * g, -1.0 * g, dome_l - 3.4 * g), (2.6 * g, 2.4 * g, 1.4 * g), w=0.6 * D_AIR)]
    if a["female"]:
        size = (0.8 + 0.8 * a["fat"]) * g
        ells += [ellipsoid((s * 8.0 * w, -body_b - 0.5 * g, 3.0 * g), (6.0 * size, 4.5 * size, 5.0 * size),
                           w=MU_TISSUE, smooth=True) for s in (-1, 1)]  # in front of the body outline
    ells += [rod((0, -1.0 * g, 48.0), (0, -1.0 * g, carina), 0.85 * g, D_AIR),
             rod((0, -0.6 * g, carina), (-3.0 * g, 0.0, carina - 2.8 * g), 0.62 * g, D_AIR),
             rod((0, -0.6 * g, carina), (4.2 * g, 0.3 * g, carina - 2.2 * g), 0.55 * g, D_AIR)]

    scalars = {
        "scale": g, "body_a": body_a, "body_b": body_b, "body_y": 0.5 * g,
        "shoulder_z": 22.5 * g, "shoulder_a": body_a + 3.4 * g, "shoulder_h": 6.0 * g, "neck_r": 5.8 * g,
        "lung_density_r": 1.0, "lung_density_l": 1.0, "fluid_z_r": -1000.0, "fluid_z_l": -1000.0,
        "rib_top": 27.0 * g, "rib_space": 2.45 * g * a["rib_space"] * (1 + 0.025 * a["inspiration"]),
        "rib_quad": 0.012, "rib_rv": 0.55 * g, "rib_rr": 0.42 * g,
        "rib_a": 5.5 * g * a["rib_slope"], "rib_b": 7.0 * g * a["rib_slope"],
        "frac_side": -1.0, "frac_rib": -1.0, "frac_phi": 0.0, "frac_gap": 0.0, "frac_shift": 0.0,
        "spine_y": 6.0 * g, "spine_r": 2.0 * g, "vert_h": a["vert_h"] * g,
        "hil_rx": -5.6 * g, "hil_rz": carina - 3.0 * g, "hil_lx": 5.4 * g, "hil_lz": carina - 2.2 * g,
        "ves_amp": a["ves_amp"], "ves_n1": a["ves_n1"], "ves_n2": a["ves_n2"],
        "ves_p1": a["ves_p1"], "ves_p2": a["ves_p2"], "ves_wob": a["ves_wob"], "ves_decay": 7.0 * g,
    }
    hila = [ellipsoid((s * 5.5 * g, 0.5 * g, carina - 2.6 * g), (2.0 * g, 2.4 * g, 3.4 * g), w=1.0)
            for s in (-1, 1)]  # the hilar vessels: blobs of soft tissue in the lung, never masked
    return Phantom(csg=csg, blobs=hila, blob_meta=[(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)],
                   ellipsoids=ells, tubes=[],
                   scalars=scalars, anatomy=dict(a, dome_r=dome_r, dome_l=dome_l, apex=apex,
                                                 carina=carina, cage_a=cage_a, cage_b=cage_b))


def set_ctr(csg: list[Row], ctr: float) -> None:
    """Scales the heart about its centre, keeping its base, to cardiothoracic ratio `ctr`."""
    heart = [csg[HEART_V], csg[HEART_A]]
    lo = min(extent_x(r)[0] for r in heart)
    hi = max(extent_x(r)[1] for r in heart)
    factor = ctr * thoracic_width(csg) / (hi - lo)
    center = ((lo + hi) / 2, heart[0][1], heart[0][2])
    bottom_before = min(r[2] - _extent_z(r) for r in heart)
    heart = [scaled(r, factor, center) for r in heart]
    rise = bottom_before - min(r[2] - _extent_z(r) for r in heart)
    csg[HEART_V], csg[HEART_A] = [(r[0], r[1], r[2] + rise, *r[3:]) for r in heart]


def thoracic_width(csg: list[Row]) -> float:
    """Distance between the lateral lung margins (the cardiothoracic ratio's denominator)."""
    right, left = csg[CAV_R], csg[CAV_L]
    return (left[0] + left[3]) - (right[0] - right[3])


def _heart(csg: list[Row], a: dict[str, float], g: float, dome_r: float, dome_l: float) -> None:
    """Ventricles (tilted down-left) and right atrium at the patient's cardiothoracic ratio,
    resting on the diaphragm."""
    tilt = a["heart_tilt"]
    csg[HEART_V] = ellipsoid((1.8 * g, -2.2 * g, 0.0), (6.8 * g, 5.4 * g, 4.0 * g),
                             rot=(0.0, tilt, math.radians(12)))
    csg[HEART_A] = ellipsoid((-2.5 * g, -0.8 * g, 1.2 * g), (2.9 * g, 4.0 * g, 4.2 * g))
    set_ctr(csg, a["ctr"])
    floor = min(dome_r, dome_l) - 1.8 * g  # the heart rests in the diaphragm's central tendon
    bottom = min(r[2] - _extent_z(r) for r in (csg[HEART_V], csg[HEART_A]))
    csg[HEART_V], csg[HEART_A] = [(r[0], r[1], r[2] + floor - bottom, *r[3:])
                                  for r in (csg[HEART_V], csg[HEART_A])]


def _extent_z(row: Row) -> float:
    """Half-height of a row tilted about y (the heart's small turn about z is ignored)."""
    ry = row[7]
    return math.sqrt((math.sin(ry) * row[3]) ** 2 + (math.cos(ry) * row[5]) ** 2)
