"""The labeler recovers the synthetic world's labels from the reports written from them.

F1 compares the 4-valued labels exactly: for each finding and each stated value (positive,
uncertain, negative) the one-vs-rest F1 of that value, so that a hedge read as a positive,
or a negation missed, both count as errors. Unmentioned is the remaining class.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from chexficient import findings, labeler
from chexficient.data.synthetic.reports import STYLES, write_report

REPORTS_PER_STYLE = 100
STATES = (findings.POSITIVE, findings.UNCERTAIN, findings.NEGATIVE)


def _truth(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels with every state of every finding well represented; No Finding by the rule."""
    labels = np.empty((n, findings.NUM_FINDINGS), dtype=np.int8)
    for j, name in enumerate(findings.FINDINGS):
        p = min(max(findings.PREVALENCE[name], 0.15), 0.5)
        labels[:, j] = rng.choice([findings.POSITIVE, findings.UNCERTAIN, findings.NEGATIVE,
                                   findings.UNMENTIONED], size=n,
                                  p=[0.75 * p, 0.25 * p, (1 - p) / 2, (1 - p) / 2])
    return findings.apply_no_finding_rule(labels)


@pytest.fixture(scope="module")
def world() -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(1234)
    truth = _truth(REPORTS_PER_STYLE * len(STYLES), rng)
    reports = [write_report(row, rng, style=i % len(STYLES)) for i, row in enumerate(truth)]
    return truth, reports, labeler.label(reports)


@pytest.mark.parametrize("name", findings.FINDINGS)
def test_per_finding_f1(world, name):
    truth, reports, predicted = world
    j = findings.index(name)
    states = [s for s in STATES if (truth[:, j] == s).any()]
    scores = f1_score(truth[:, j], predicted[:, j], labels=states, average=None)
    wrong = np.flatnonzero(truth[:, j] != predicted[:, j])[:3]
    assert scores.min() >= 0.98, (dict(zip(states, scores.round(3))), [
        (int(truth[i, j]), int(predicted[i, j]), reports[i]) for i in wrong])


def test_every_state_of_every_finding_is_exercised(world):
    truth, _, _ = world
    for j in range(1, findings.NUM_FINDINGS):
        assert {int(v) for v in truth[:, j]} >= set(STATES), findings.FINDINGS[j]
