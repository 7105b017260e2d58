"""The 14 observations as 3D changes to a phantom, placed and sized from their details.

Each present finding (label 1, or -1 rendered subtle) edits the shape tables of a normal
phantom: the heart grows, fluid fills a pleural base under a meniscus, the lung collapses
away from the chest wall, blobs fill lobes, a rib breaks, tubes and a pacemaker appear.
"""

from __future__ import annotations

import math

import numpy as np

from chexficient.data.synthetic import phantom as P
from chexficient.data.synthetic.details import Details
from chexficient.data.synthetic.shapes import INF, ellipsoid, polyline, scaled

# Cardiothoracic ratio ranges: uncertain cardiomegaly is borderline, positive is clearly > 0.5.
CTR_UNCERTAIN = (0.51, 0.54)
CTR_POSITIVE = (0.55, 0.70)


def build_phantom(anatomy: dict[str, float], details: Details, uncertain: set[str],
                  rng: np.random.Generator) -> P.Phantom:
    """The phantom of a patient with the findings in `details` (names in `uncertain` subtle)."""
    p = P.normal_phantom(anatomy)
    for name, d in details.items():
        _APPLY[name](p, d, name in uncertain, rng)
    return p


def _lung(p: P.Phantom, side: int) -> tuple[float, float, float, float, float]:
    """(x, y, z, half-width, half-height) of the lung cavity ellipsoid on `side` (0 right)."""
    row = p.csg[P.CAV_R + side]
    return row[0], row[1], row[2], row[3], row[5]


def _sides(d: dict) -> tuple[int, ...]:
    return {"right": (0,), "left": (1,), "bilateral": (0, 1)}[d.get("side", "right")]


def _sign(side: int) -> float:
    return -1.0 if side == 0 else 1.0


def _zone_point(p: P.Phantom, side: int, zone: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """A point inside the lobe `zone` (upper / middle / lower) of the lung on `side`."""
    x, y, _, a, _ = _lung(p, side)
    g = p.anatomy["scale"]
    dome = p.anatomy["dome_r" if side == 0 else "dome_l"]
    z = {"upper": p.anatomy["apex"] - 6.5 * g, "middle": p.anatomy["carina"] - 6.0 * g,
         "lower": dome + 4.5 * g}[zone] + rng.uniform(-1.2, 1.2) * g
    y = y + {"upper": 0.5, "middle": -3.0, "lower": 2.5}[zone] * g
    return x + _sign(side) * rng.uniform(-0.1, 0.4) * a, y, z


def _blob(p: P.Phantom, center, semi, fill: float, side: int, *, sharp: bool, mask: bool,
          rot=(0.0, 0.0, 0.0)) -> None:
    if len(p.blobs) < P.N_BLOB:  # the slot budget (needed by ~0.1% of studies) caps the blobs
        p.blobs.append(ellipsoid(center, semi, rot, w=fill))
        p.blob_meta.append((float(side), float(sharp), float(mask)))


def _cardiomegaly(p, d, uncertain, rng):
    lo, hi = CTR_UNCERTAIN if uncertain else CTR_POSITIVE
    P.set_ctr(p.csg, lo + (hi - lo) * min(1.0, d["severity"] / (0.3 if uncertain else 1.0)))


def _mediastinum(p, d, uncertain, rng):
    widen = 1.35 + 0.9 * d["severity"]
    row = p.csg[P.MEDIAST]
    p.csg[P.MEDIAST] = (*row[:3], row[3] * widen, *row[4:])
    p.csg[P.KNOB] = scaled(p.csg[P.KNOB], 1.0 + 0.5 * d["severity"], p.csg[P.KNOB][:3])
    svc = p.csg[P.SVC]
    p.csg[P.SVC] = (svc[0] - 1.5 * d["severity"] * p.anatomy["scale"], *svc[1:])


def _effusion(p, d, uncertain, rng):
    g = p.anatomy["scale"]
    for side in _sides(d):
        severity = d["severity"] * (rng.uniform(0.7, 1.0) if d["side"] == "bilateral" else 1.0)
        x, y, _, a, _ = _lung(p, side)
        dome = p.anatomy["dome_r" if side == 0 else "dome_l"]
        low = dome - 2.2 * g + 13.0 * g * severity
        rise = (2.5 + 3.0 * severity) * g
        c = 15.0 * g
        center_x = x - _sign(side) * 1.0 * g
        reach = abs(x + _sign(side) * a - center_x)
        half = reach / math.sqrt(1.0 - (1.0 - rise / c) ** 2)
        # An elliptic cylinder along y: fluid lies below its lower surface (the meniscus).
        p.csg[P.MEN_R + side] = ellipsoid((center_x, y, low + c), (half, INF, c))
        p.scalars["fluid_z_r" if side == 0 else "fluid_z_l"] = low + rise


def _pneumothorax(p, d, uncertain, rng):
    g = p.anatomy["scale"]
    side = _sides(d)[0]
    severity = d["severity"]
    x, y, z, a, c = _lung(p, side)
    bottom = z - c
    if d.get("zone") == "lateral":
        new_a, top = a - (0.8 + 3.5 * severity) * g, p.anatomy["apex"] - (0.5 + 2.0 * severity) * g
    else:
        new_a, top = a * (1.0 - 0.15 * severity), p.anatomy["apex"] - (1.2 + 7.0 * severity) * g
    new_x = x - _sign(side) * (a - new_a)
    lung = ellipsoid((new_x, y, (top + bottom) / 2), (new_a, p.csg[P.CAV_R + side][4], (top - bottom) / 2))
    p.csg[P.PAR_R + side] = lung
    p.csg[P.PLE_R + side] = (*lung[:3], *(s - 0.25 * g for s in lung[3:6]), *lung[6:])
    p.scalars["lung_density_r" if side == 0 else "lung_density_l"] = 1.0 + 0.8 * severity


def _airspace(fill: float, size: float, count: int):
    """Consolidation-like blobs: `count` smooth blobs filling `fill` of the lung."""
    def apply(p, d, uncertain, rng):
        g = p.anatomy["scale"]
        s = d["severity"]
        for side in _sides(d):
            cx, cy, cz = _zone_point(p, side, d.get("zone", "lower"), rng)
            for k in range(count):
                off = rng.normal(0.0, 1.8, 3) * g * (k > 0)
                semi = (size + 2.5 * s) * g * rng.uniform(0.8, 1.2, 3)
                _blob(p, (cx + off[0], cy + off[1], cz + off[2]), semi, fill * (0.7 + 0.6 * s), side,
                      sharp=False, mask=True)
    return apply


def _edema(p, d, uncertain, rng):
    g, s = p.anatomy["scale"], d["severity"]
    for side in (0, 1):
        x, y, _, _, _ = _lung(p, side)
        hx = p.scalars["hil_rx" if side == 0 else "hil_lx"] + _sign(side) * 2.0 * g
        _blob(p, (hx, y, p.scalars["hil_rz" if side == 0 else "hil_lz"] - 1.0 * g),
              ((4.0 + 2.0 * s) * g, 5.5 * g, (5.0 + 2.5 * s) * g), 0.45 + 0.6 * s, side, sharp=False, mask=True)
    p.scalars["ves_amp"] *= 1.0 + 0.5 * s  # vascular congestion
    p.scalars["ves_decay"] *= 1.0 + 0.4 * s


def _atelectasis(p, d, uncertain, rng):
    g, s = p.anatomy["scale"], d["severity"]
    for side in _sides(d):
        cx, cy, cz = _zone_point(p, side, d.get("zone", "lower"), rng)
        _blob(p, (cx, cy, cz - 1.5 * g), ((4.5 + 2.0 * s) * g, 3.5 * g, (0.8 + 0.6 * s) * g), 1.0, side,
              sharp=True, mask=True, rot=(0.0, rng.uniform(-0.25, 0.25), 0.0))
        if s > 0.4:  # volume loss: the hemidiaphragm rises
            key = "dome_r" if side == 0 else "dome_l"
            lift = (s - 0.5) * 4.0 * g
            row = p.csg[P.DOME_R + side]
            p.csg[P.DOME_R + side] = (row[0], row[1], row[2] + lift, *row[3:])
            p.anatomy[key] += lift


def _lesion(p, d, uncertain, rng):
    side = _sides(d)[0]
    r = d["size_cm"] / 2
    cx, cy, cz = _zone_point(p, side, d.get("zone", "upper"), rng)
    _blob(p, (cx, cy, cz), (r, r, r), 1.0, side, sharp=True, mask=False)
    if d["size_cm"] >= 3.0:  # a mass is lobulated
        off = rng.normal(0.0, 0.5 * r, 3)
        _blob(p, (cx + off[0], cy + off[1], cz + off[2]), (0.7 * r,) * 3, 1.0, side, sharp=True, mask=False)


def _pleural_other(p, d, uncertain, rng):
    g = p.anatomy["scale"]
    side = _sides(d)[0]
    x, y, z, a, _ = _lung(p, side)
    if d.get("zone") == "apical":
        _blob(p, (x + _sign(side) * 0.2 * a, y, p.anatomy["apex"] - 1.2 * g), (3.5 * g, 5.0 * g, 2.0 * g),
              1.0, side, sharp=True, mask=False)
    else:
        _blob(p, (x + _sign(side) * (a - 0.5 * g), y, z + rng.uniform(2.0, 8.0) * g),
              (1.6 * g, 4.5 * g, 5.0 * g), 1.0, side, sharp=True, mask=False)


def _fracture(p, d, uncertain, rng):
    p.scalars.update(frac_side=float(_sides(d)[0]), frac_rib=float(d["rib"] - 1),
                     frac_phi=float(rng.uniform(0.45, 1.2)), frac_gap=0.08,
                     frac_shift=(0.9 if d.get("displaced") else 0.4) * p.anatomy["scale"])


def _devices(p, d, uncertain, rng):
    g = p.anatomy["scale"]
    carina = p.anatomy["carina"]
    dome_l = p.anatomy["dome_l"]
    lines: list = []
    for device in d.get("devices", ()):
        if device == "ett":
            lines += polyline([(0.0, -1.0 * g, 48.0), (0.0, -1.0 * g, carina + d["ett_cm"])], 0.35, P.D_WIRE)
        elif device == "ng":
            lines += polyline([(0.6 * g, 2.0 * g, 48.0), (0.9 * g, 2.2 * g, carina - 4 * g),
                               (2.0 * g, 1.5 * g, dome_l - 1.0 * g), (6.5 * g, -1.0 * g, dome_l - 5.0 * g)],
                              0.3, 0.8 * P.D_WIRE)
        elif device == "cvc":
            s = _sign(SIDE_INDEX[d.get("cvc_side", "right")])
            path = [(s * 4.3 * g, -1.0 * g, 36.0), (s * 3.4 * g, -0.8 * g, 24.0 * g)]
            if s > 0:
                path.append((-0.5 * g, -0.5 * g, carina + 1.5 * g))
            path.append((-2.4 * g, -0.5 * g, carina - 3.0 * g))
            lines += polyline(path, 0.25, P.D_WIRE)
        elif device == "pacemaker":
            s = _sign(SIDE_INDEX[d.get("pacemaker_side", "left")])
            box = (s * 9.5 * g, -p.scalars["body_b"] + 1.0 * g, 19.5 * g)
            p.ellipsoids.append(ellipsoid(box, (2.1 * g, 0.4 * g, 1.7 * g), w=0.6 * P.D_METAL))
            heart = p.csg[P.HEART_V]
            lines += polyline([box, (s * 4.0 * g, -3.0 * g, 21.0 * g), (-2.3 * g, -0.6 * g, carina + 1.0 * g),
                               (-2.6 * g, -1.5 * g, carina - 6.5 * g),
                               (heart[0] + 0.5 * heart[3], heart[1] - 1.0 * g, heart[2] - 0.3 * heart[5])],
                              0.2, P.D_METAL)
    p.tubes += lines[:P.N_TUBE - len(p.tubes)]


SIDE_INDEX = {"right": 0, "left": 1}

_APPLY = {
    "Enlarged Cardiomediastinum": _mediastinum,
    "Cardiomegaly": _cardiomegaly,
    "Lung Opacity": _airspace(0.9, 3.5, 2),
    "Lung Lesion": _lesion,
    "Edema": _edema,
    "Consolidation": _airspace(1.8, 3.5, 1),
    "Pneumonia": _airspace(1.0, 2.5, 2),
    "Atelectasis": _atelectasis,
    "Pneumothorax": _pneumothorax,
    "Pleural Effusion": _effusion,
    "Pleural Other": _pleural_other,
    "Fracture": _fracture,
    "Support Devices": _devices,
}
