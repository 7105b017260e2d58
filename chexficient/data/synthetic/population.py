"""Who is ill with what: labels with CheXpert-like prevalence and co-occurrence.

A Gaussian copula: each of the 13 observations is present when a latent normal exceeds its
threshold; the latents share factors (overall illness, cardiac, infection, intensive care),
so findings co-occur as they do in a hospital population (effusion with cardiomegaly and
edema, pneumothorax with tubes) and about one study in seven shows no finding. Thresholds
make each marginal exact. Present findings are stated or hedged (uncertain); absent ones
are negated or left unmentioned, at per-finding rates.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping

import numpy as np

from chexficient.findings import (FINDINGS, NEGATIVE, NO_FINDING, POSITIVE, PREVALENCE, UNCERTAIN,
                                  UNMENTIONED, apply_no_finding_rule)

OBSERVATIONS = tuple(n for n in FINDINGS if n != "No Finding")

LOADINGS: dict[str, tuple[float, float, float, float]] = {
    "Enlarged Cardiomediastinum": (0.2, 0.4, 0.0, 0.08),
    "Cardiomegaly": (0.2, 0.48, 0.0, 0.0),
    "Lung Opacity": (0.2, 0.12, 0.36, 0.12),
    "Lung Lesion": (0.2, 0.0, 0.08, 0.0),
    "Edema": (0.2, 0.44, 0.0, 0.16),
    "Consolidation": (0.2, 0.0, 0.48, 0.08),
    "Pneumonia": (0.2, 0.0, 0.52, 0.0),
    "Atelectasis": (0.2, 0.08, 0.24, 0.24),
    "Pneumothorax": (0.2, 0.0, 0.0, 0.4),
    "Pleural Effusion": (0.2, 0.36, 0.08, 0.16),
    "Pleural Other": (0.2, 0.0, 0.08, 0.0),
    "Fracture": (0.2, 0.0, 0.0, 0.24),
    "Support Devices": (0.2, 0.08, 0.0, 0.52),
}
"""Loadings on the shared factors (illness, cardiac, infection, intensive care)."""
UNCERTAIN_FRACTION: dict[str, float] = {
    "Enlarged Cardiomediastinum": 0.3, "Cardiomegaly": 0.15, "Lung Opacity": 0.05,
    "Lung Lesion": 0.15, "Edema": 0.2, "Consolidation": 0.3, "Pneumonia": 0.5, "Atelectasis": 0.4,
    "Pneumothorax": 0.1, "Pleural Effusion": 0.12, "Pleural Other": 0.2, "Fracture": 0.15,
    "Support Devices": 0.0,
}
"""Of the studies showing a finding, the fraction whose report hedges it (label -1)."""
NEGATION_RATE: dict[str, float] = {
    "Enlarged Cardiomediastinum": 0.15, "Cardiomegaly": 0.35, "Lung Opacity": 0.1,
    "Lung Lesion": 0.1, "Edema": 0.35, "Consolidation": 0.4, "Pneumonia": 0.2, "Atelectasis": 0.05,
    "Pneumothorax": 0.5, "Pleural Effusion": 0.45, "Pleural Other": 0.05, "Fracture": 0.1,
    "Support Devices": 0.02,
}
"""Of the studies without a finding, the fraction whose report negates it (label 0)."""


@dataclasses.dataclass(frozen=True)
class Population:
    """Label model with positive prevalence `prevalence` (label == 1) per observation."""

    prevalence: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(PREVALENCE))
    uncertain: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(UNCERTAIN_FRACTION))
    negated: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(NEGATION_RATE))

    def __post_init__(self):
        for name in OBSERVATIONS:
            p = self.prevalence[name] / (1.0 - self.uncertain[name])
            if not 0.0 < p < 1.0:
                raise ValueError(f"prevalence of {name!r} ({self.prevalence[name]}) with uncertain "
                                 f"fraction {self.uncertain[name]} is not a probability")
        object.__setattr__(self, "_threshold", np.array([
            statistics.NormalDist().inv_cdf(1.0 - self.prevalence[n] / (1.0 - self.uncertain[n]))
            for n in OBSERVATIONS]))
        load = np.array([LOADINGS[n] for n in OBSERVATIONS])
        object.__setattr__(self, "_load", load)
        object.__setattr__(self, "_own", np.sqrt(1.0 - np.sum(load**2, axis=1)))

    def present(self, rng: np.random.Generator) -> np.ndarray:
        """Which of the 13 observations a new patient shows (bool [13], OBSERVATIONS order)."""
        latent = self._load @ rng.standard_normal(4) + self._own * rng.standard_normal(len(OBSERVATIONS))
        return latent > self._threshold

    def labels(self, present: np.ndarray, rng: np.random.Generator, hedge: bool = True) -> np.ndarray:
        """Report labels int8[14] for the findings `present`: stated, hedged, negated or unmentioned."""
        u = rng.random(len(OBSERVATIONS))
        hedged = np.array([self.uncertain[n] for n in OBSERVATIONS]) * hedge
        negated = np.array([self.negated[n] for n in OBSERVATIONS])
        values = np.where(present, np.where(u < hedged, UNCERTAIN, POSITIVE),
                          np.where(u < negated, NEGATIVE, UNMENTIONED))
        labels = np.full(len(FINDINGS), UNMENTIONED, np.int8)
        labels[[FINDINGS.index(n) for n in OBSERVATIONS]] = values
        return apply_no_finding_rule(labels)

    def focused(self, rng: np.random.Generator, focus: str) -> np.ndarray:
        """Findings of a patient chosen to show `focus` (or, for No Finding, nothing abnormal)."""
        present = self.present(rng)
        if focus == FINDINGS[NO_FINDING]:
            present[:] = present & (np.array(OBSERVATIONS) == "Support Devices")
        else:
            present[OBSERVATIONS.index(focus)] = True
        return present
