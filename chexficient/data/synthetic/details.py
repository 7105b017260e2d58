"""Where, which side and how bad: the per-finding details shared by phantom and report.

A study's findings are its labels plus, for each finding present in the image (label 1 or
-1), a small dict of details. The phantom renders them and the report words them, so image
and text agree on location, laterality and severity by construction.
"""

from __future__ import annotations

import numpy as np

from chexficient.findings import FINDINGS, POSITIVE, UNCERTAIN

Details = dict[str, dict]

SIDES = ("right", "left")
ZONES = ("upper", "middle", "lower")
DEVICES = ("ett", "ng", "cvc", "pacemaker")

# Findings sharing a location when they co-occur (pneumonia in the consolidated lobe).
_AIRSPACE = ("Consolidation", "Pneumonia", "Lung Opacity")
_UNCERTAIN_SEVERITY = (0.12, 0.3)
_DEFINITE_SEVERITY = (0.4, 1.0)
_DEVICE_PROB = {"ett": 0.45, "ng": 0.45, "cvc": 0.55, "pacemaker": 0.25}


def size_word(severity: float) -> str:
    """Size wording of a severity in [0, 1] (effusion, pneumothorax)."""
    return "small" if severity < 0.6 else "moderate" if severity < 0.8 else "large"


def degree_word(severity: float) -> str:
    """Degree wording of a severity in [0, 1] (edema, cardiomegaly)."""
    return "mild" if severity < 0.6 else "moderate" if severity < 0.8 else "severe"


def present(labels: np.ndarray) -> list[str]:
    """Names of the findings (No Finding excluded) that are in the image: label 1 or -1."""
    return [name for name, v in zip(FINDINGS, labels)
            if name != "No Finding" and v in (POSITIVE, UNCERTAIN)]


def sample_details(labels: np.ndarray, rng: np.random.Generator) -> Details:
    """Samples details for every finding present; uncertain ones are mild (subtle in image)."""
    details: Details = {}
    shared_location = None
    for name in present(labels):
        uncertain = labels[FINDINGS.index(name)] == UNCERTAIN
        lo, hi = _UNCERTAIN_SEVERITY if uncertain else _DEFINITE_SEVERITY
        d = {"severity": float(rng.uniform(lo, hi))}
        d.update(_SAMPLERS.get(name, _no_location)(rng))
        if name in _AIRSPACE:
            if shared_location is not None and rng.random() < 0.7:
                d.update(shared_location)
            shared_location = {"side": d["side"], "zone": d["zone"]}
        details[name] = d
    return details


def _no_location(rng: np.random.Generator) -> dict:
    return {}


def _side(rng: np.random.Generator, bilateral: float = 0.0) -> str:
    return "bilateral" if rng.random() < bilateral else SIDES[int(rng.integers(2))]


def _lobar(rng: np.random.Generator) -> dict:
    zone = ZONES[int(rng.choice(3, p=(0.25, 0.2, 0.55)))]
    return {"side": _side(rng, bilateral=0.2), "zone": zone}


def _lesion(rng: np.random.Generator) -> dict:
    size = float(np.clip(rng.lognormal(np.log(2.6), 0.4), 1.2, 6.0))
    return {"side": _side(rng), "zone": ZONES[int(rng.integers(3))], "size_cm": round(size, 1)}


def _atelectasis(rng: np.random.Generator) -> dict:
    return {"side": _side(rng, bilateral=0.35), "zone": "lower" if rng.random() < 0.85 else "middle"}


def _pneumothorax(rng: np.random.Generator) -> dict:
    return {"side": _side(rng), "zone": "apical" if rng.random() < 0.75 else "lateral"}


def _effusion(rng: np.random.Generator) -> dict:
    return {"side": _side(rng, bilateral=0.4)}


def _pleural_other(rng: np.random.Generator) -> dict:
    return {"side": _side(rng), "zone": "apical" if rng.random() < 0.5 else "lateral"}


def _fracture(rng: np.random.Generator) -> dict:
    return {"side": _side(rng), "rib": int(rng.integers(3, 10)), "displaced": bool(rng.random() < 0.5)}


def _devices(rng: np.random.Generator) -> dict:
    chosen = tuple(d for d in DEVICES if rng.random() < _DEVICE_PROB[d])
    if not chosen:
        chosen = (DEVICES[int(rng.integers(len(DEVICES)))],)
    return {"devices": chosen,
            "ett_cm": float(rng.integers(2, 8)),
            "cvc_side": _side(rng),
            "pacemaker_side": "left" if rng.random() < 0.85 else "right"}


_SAMPLERS = {
    "Lung Opacity": _lobar,
    "Consolidation": _lobar,
    "Pneumonia": _lobar,
    "Lung Lesion": _lesion,
    "Atelectasis": _atelectasis,
    "Pneumothorax": _pneumothorax,
    "Pleural Effusion": _effusion,
    "Pleural Other": _pleural_other,
    "Fracture": _fracture,
    "Support Devices": _devices,
}
