"""How a study is taken: site styles, patient pose, exposure, and degraded acquisitions.

A site is an imaging and reporting habit: its exposure, detector noise and sharpness,
image processing (edge enhancement, grid lines) and report style. Sites A-C make the
pretraining pool and its evaluation splits; site D is held out for the test_shift split.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

QUALITIES = ("overexposed", "underexposed", "noisy", "rotated", "lateral")
"""Degraded acquisitions; a record's `quality` is 'good' or one of these."""


@dataclasses.dataclass(frozen=True)
class Site:
    """Acquisition and display habits of one site, and its report style."""

    report_style: str
    exposure: float
    contrast: float
    gamma: float
    photons: float
    blur: float
    unsharp: float
    grid_amp: float = 0.0
    grid_period: float = 3.0


SITES: dict[str, Site] = {
    "A": Site("academic", exposure=1.0, contrast=5.0, gamma=1.0, photons=3.0e4, blur=0.8, unsharp=0.6),
    "B": Site("community", exposure=0.85, contrast=5.4, gamma=0.92, photons=2.2e4, blur=0.95, unsharp=0.35),
    "C": Site("terse", exposure=1.15, contrast=4.7, gamma=1.08, photons=4.0e4, blur=0.7, unsharp=0.9),
    "D": Site("shift", exposure=0.55, contrast=6.3, gamma=1.3, photons=8.0e3, blur=0.9, unsharp=2.2,
              grid_amp=0.12, grid_period=2.7),
}
POOL_SITES = ("A", "B", "C")
SHIFT_SITE = "D"


def habit(rng: np.random.Generator) -> dict[str, float]:
    """How a patient is usually positioned and exposed at their site (shared by their studies)."""
    n = rng.standard_normal(9).tolist()
    return {"yaw": math.radians(1.5) * n[0], "roll": math.radians(1.5) * n[1], "shift_u": 0.7 * n[2],
            "shift_z": 0.7 * n[3], "fov": 1.0 + 0.02 * n[4], "exposure": 0.08 * n[5],
            "photons": math.exp(0.2 * n[6]), "blur": 1.0 + 0.1 * n[7], "contrast": 1.0 + 0.03 * n[8]}


def imaging(site: Site, scale: float, habit: dict[str, float], quality: str,
            rng: np.random.Generator) -> dict[str, float]:
    """Pose and acquisition parameters (render.IMAGING) of one study at `site`.

    A good study is the patient's habit plus a small jitter (so repeated studies are near
    duplicates); a degraded one is taken badly in the way its `quality` names.
    """
    n = rng.standard_normal(5).tolist()
    params = {
        "yaw": habit["yaw"] + math.radians(0.25) * n[0], "roll": habit["roll"] + math.radians(0.25) * n[1],
        "shift_u": habit["shift_u"] + 0.1 * n[2], "shift_z": habit["shift_z"] + 0.1 * n[3],
        "fov": 39.0 * scale * habit["fov"], "center_z": 10.5 * scale, "arms": 1.0,
        "exposure": site.exposure + habit["exposure"] + 0.02 * n[4],
        "photons": site.photons * habit["photons"], "blur": site.blur * habit["blur"],
        "unsharp": site.unsharp, "gamma": site.gamma, "contrast": site.contrast * habit["contrast"],
        "grid_amp": site.grid_amp, "grid_period": site.grid_period,
    }
    if quality == "overexposed":
        params["exposure"] += rng.uniform(1.0, 1.5)
    elif quality == "underexposed":
        params["exposure"] -= rng.uniform(0.9, 1.3)
        params["photons"] /= 4.0
    elif quality == "noisy":
        params["photons"] /= rng.uniform(25.0, 50.0)
    elif quality == "rotated":
        params["yaw"] = math.radians(rng.uniform(10.0, 18.0)) * rng.choice((-1.0, 1.0))
    elif quality == "lateral":
        params.update(yaw=-math.pi / 2 + math.radians(2.0) * rng.standard_normal(), arms=0.0,
                      exposure=params["exposure"] + 1.8, contrast=params["contrast"] * 1.2)
    elif quality != "good":
        raise ValueError(f"unknown quality {quality!r}; valid: good, {', '.join(QUALITIES)}")
    return params
