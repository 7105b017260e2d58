"""Reports written from labels: every stated label is worded, nothing else is mentioned."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chexficient.data.synthetic.details import sample_details
from chexficient.data.synthetic.population import Population
from chexficient.data.synthetic.reports import STYLES, write_report
from chexficient.findings import FINDINGS, NEGATIVE, POSITIVE, UNCERTAIN, UNMENTIONED, apply_no_finding_rule

# A word each mention of a finding must use (the negations too), and none other may.
KEYWORD = {
    "Enlarged Cardiomediastinum": r"mediastin",
    "Cardiomegaly": r"cardiomegaly|heart size|the heart is|heart may|cardiac silhouette",
    "Lung Opacity": r"opacit",
    "Lung Lesion": r"nodule|mass",
    "Edema": r"edema",
    "Consolidation": r"consolidation",
    "Pneumonia": r"pneumonia",
    "Atelectasis": r"atelectasis",
    "Pneumothorax": r"pneumothorax|ptx",
    "Pleural Effusion": r"effusion",
    "Pleural Other": r"pleural thickening",
    "Fracture": r"fracture",
    "Support Devices": r"tube|catheter|central line|lines or|pacemaker|support device",
}
HEDGES = r"possible|cannot be excluded|may |questionable"


def _labels(rng: np.random.Generator) -> np.ndarray:
    labels = rng.choice([POSITIVE, UNCERTAIN, NEGATIVE, UNMENTIONED], size=len(FINDINGS),
                        p=[0.2, 0.1, 0.3, 0.4]).astype(np.int8)
    return apply_no_finding_rule(labels)


@pytest.mark.parametrize("style", STYLES)
def test_mentions_follow_labels(style):
    rng = np.random.default_rng(7)
    for _ in range(150):
        labels = _labels(rng)
        report = write_report(labels, rng, style)
        assert report.startswith("FINDINGS: ") and " IMPRESSION: " in report
        sentences = [s.lower() for s in re.split(r"(?<=\.) ", report.split(": ", 1)[1])]
        for name, pattern in KEYWORD.items():
            value = labels[FINDINGS.index(name)]
            said = [s for s in sentences if re.search(pattern, s)]
            if value == UNMENTIONED:
                assert not said, (name, report)
            elif value == NEGATIVE:
                assert said and all(re.search(r"\bno\b|\bnot\b|normal", s) for s in said), (name, report)
            elif value == UNCERTAIN:
                assert said and all(re.search(HEDGES, s) for s in said), (name, report)
            else:
                assert said and not any(re.search(HEDGES + r"|\bno\b", s) for s in said), (name, report)


def test_details_give_location_severity_and_side():
    rng = np.random.default_rng(0)
    labels = np.full(len(FINDINGS), UNMENTIONED, np.int8)
    labels[FINDINGS.index("Pleural Effusion")] = POSITIVE
    labels = apply_no_finding_rule(labels)
    details = {"Pleural Effusion": {"severity": 0.9, "side": "left"}}
    report = write_report(labels, rng, "academic", details)
    assert "large left" in report.lower()
    labels[FINDINGS.index("Fracture")] = POSITIVE
    details["Fracture"] = {"severity": 0.5, "side": "right", "rib": 6, "displaced": True}
    assert "right 6th rib" in write_report(labels, rng, "terse", details)


def test_sampled_details_cover_present_findings():
    rng = np.random.default_rng(1)
    pop = Population()
    for _ in range(200):
        labels = pop.labels(pop.present(rng), rng)
        details = sample_details(labels, rng)
        present = {n for n, v in zip(FINDINGS, labels) if v in (POSITIVE, UNCERTAIN) and n != "No Finding"}
        assert set(details) == present


def test_styles_differ_in_wording():
    rng = np.random.default_rng(3)
    pop = Population()
    labels = [pop.labels(pop.present(rng), rng) for _ in range(200)]
    vocab = {s: set(" ".join(write_report(lab, rng, s) for lab in labels).lower().split()) for s in STYLES}
    for a in STYLES:
        for b in STYLES:
            if a < b:
                assert len(vocab[a] ^ vocab[b]) >= 10, (a, b)


def test_bad_style_or_labels_are_named():
    rng = np.random.default_rng(0)
    labels = np.full(len(FINDINGS), UNMENTIONED, np.int8)
    with pytest.raises(ValueError, match="unknown report style 'radiant'"):
        write_report(labels, rng, "radiant")
    with pytest.raises(ValueError, match="shape"):
        write_report(labels[:5], rng, 0)
    labels[FINDINGS.index("Pneumothorax")] = POSITIVE
    with pytest.raises(ValueError, match="Pneumothorax"):
        write_report(labels, rng, 0, details={})
