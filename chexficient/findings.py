"""The 14 CheXpert observations: names, label encoding and population prevalence.

This is the vocabulary every part of the project speaks: records carry `labels` as
int8[14] in `FINDINGS` order, with the encoding below.
"""

from __future__ import annotations

import numpy as np

FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NUM_FINDINGS = len(FINDINGS)

POSITIVE, NEGATIVE, UNCERTAIN, UNMENTIONED = 1, 0, -1, -2
"""Label encoding of the record contract (CheXpert CSVs: 1.0, 0.0, -1.0, blank)."""

NO_FINDING = FINDINGS.index("No Finding")
SUPPORT_DEVICES = FINDINGS.index("Support Devices")

PREVALENCE: dict[str, float] = {
    "No Finding": 0.10,
    "Enlarged Cardiomediastinum": 0.05,
    "Cardiomegaly": 0.12,
    "Lung Opacity": 0.47,
    "Lung Lesion": 0.04,
    "Edema": 0.23,
    "Consolidation": 0.07,
    "Pneumonia": 0.03,
    "Atelectasis": 0.15,
    "Pneumothorax": 0.09,
    "Pleural Effusion": 0.39,
    "Pleural Other": 0.02,
    "Fracture": 0.04,
    "Support Devices": 0.52,
}
"""Approximate positive prevalence in CheXpert train (reference/datasets.md)."""

RARE_FINDINGS: tuple[str, ...] = tuple(
    name for name in FINDINGS if name != "No Finding" and PREVALENCE[name] <= 0.05)
"""The long tail (prevalence at most 5%): where curation can help or harm most."""

TOP5_FINDINGS: tuple[str, ...] = (
    "Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
"""The five findings of the report-generation clinical-efficacy protocol."""


def index(name: str) -> int:
    """Position of a finding in `FINDINGS`; a clear error lists the valid names."""
    try:
        return FINDINGS.index(name)
    except ValueError:
        raise KeyError(f"unknown finding {name!r}; valid: {', '.join(FINDINGS)}") from None


def apply_no_finding_rule(labels: np.ndarray) -> np.ndarray:
    """Sets No Finding from the other 13 labels, CheXpert's way.

    No Finding is positive only when no observation other than Support Devices is
    positive or uncertain; otherwise it is negative. Works on (14,) or (n, 14).
    """
    labels = np.array(labels, dtype=np.int8, copy=True)
    others = np.delete(labels, [NO_FINDING, SUPPORT_DEVICES], axis=-1)
    abnormal = np.any((others == POSITIVE) | (others == UNCERTAIN), axis=-1)
    labels[..., NO_FINDING] = np.where(abnormal, NEGATIVE, POSITIVE)
    return labels


def binarize(labels: np.ndarray, uncertain_as: int = 1) -> np.ndarray:
    """Maps the 4-valued encoding to 0/1 (uncertain -> `uncertain_as`, unmentioned -> 0)."""
    labels = np.asarray(labels)
    out = (labels == POSITIVE).astype(np.int8)
    if uncertain_as:
        out |= (labels == UNCERTAIN).astype(np.int8)
    return out
