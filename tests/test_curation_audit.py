"""The curation report on a small fake ledger: fields, flags, terms, files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chexficient.findings import FINDINGS, NEGATIVE, POSITIVE, index
from curation.audit import build_report, characteristic_terms, write_report

N = 40


def fake_pool():
    """40 records: 0-19 cluster 0 (effusion), 20-39 cluster 1 (fracture / pneumothorax)."""
    rng = np.random.default_rng(0)
    labels = np.full((N, len(FINDINGS)), NEGATIVE, np.int8)
    labels[:20, index("Pleural Effusion")] = POSITIVE
    labels[20:24, index("Fracture")] = POSITIVE
    labels[24:30, index("Pneumothorax")] = POSITIVE
    reports = (["moderate left pleural effusion with basilar atelectasis"] * 20
               + ["acute rib fracture on the right"] * 4
               + ["small apical pneumothorax, no effusion"] * 16)
    first_kept = np.full(N, -1)
    kept_rows = [0, 1, 2, 3, 4, 24, 25, 26, 30, 31]  # no fracture kept
    first_kept[kept_rows] = np.arange(len(kept_rows)) // 2
    duplicate_of = [""] * N
    duplicate_of[5], duplicate_of[6] = "r0", "r1"
    mismatched = np.zeros(N, bool)
    mismatched[[7, 8, 30]] = True
    quality = ["good"] * N
    quality[9], quality[31] = "noise", "blur"
    clusters = np.repeat([0, 1], 20)
    images = rng.integers(0, 255, size=(N, 16, 16), dtype=np.uint8)
    return dict(first_kept=first_kept, labels=labels, reports=reports, duplicate_of=duplicate_of,
                mismatched=mismatched, quality=quality, clusters=clusters), images


def test_report_fields_on_fake_ledger():
    inputs, _ = fake_pool()
    report = build_report(inputs.pop("first_kept"), compute_fraction=0.3, **inputs)
    assert report["records"] == N and report["kept"] == 10 and report["kept_fraction"] == 0.25
    assert report["last_new_record_step"] == 4 and report["compute_fraction"] == 0.3
    findings = {r["finding"]: r for r in report["findings"]}
    fracture, effusion = findings["Fracture"], findings["Pleural Effusion"]
    assert fracture["rare"] and fracture["flag"] == "lost" and fracture["kept_count"] == 0
    assert effusion["pool_count"] == 20 and effusion["kept_count"] == 5
    assert effusion["retention"] == 0.25 and effusion["kept_share"] == 0.5
    assert findings["Pneumothorax"]["retention"] == 0.5 and findings["Pneumothorax"]["flag"] == ""
    assert report["flags"][0].startswith("RARE finding 'Fracture' lost")
    truth = report["audit_truth"]
    assert truth["near_duplicate"] == dict(pool=2, kept=0, dropped=2, kept_fraction=0.0, relative=0.0)
    assert truth["mismatched"]["pool"] == 3 and truth["mismatched"]["kept"] == 1
    assert truth["degraded"]["kept"] == 1 and truth["degraded:blur"]["kept"] == 1
    assert truth["clean"]["pool"] == N - 7
    protos = report["prototypes"]
    assert [p["members"] for p in protos] == [20, 20] and [p["kept"] for p in protos] == [5, 5]
    assert "atelectasis" in protos[0]["terms"] and "pneumothorax" in protos[1]["terms"]
    assert "effusion" not in protos[0]["terms"]  # also in cluster 1 ("no effusion"): not characteristic
    assert list(protos[0]["findings"]) == ["Pleural Effusion"]


def test_terms_are_characteristic_not_common():
    reports = ["heart size normal, large effusion"] * 3 + ["heart size normal, rib fracture"] * 3
    terms = characteristic_terms(reports, np.repeat([0, 1], 3), 2, n_terms=2)
    assert set(terms[0]) <= {"large", "effusion", "large effusion", "normal large"}
    assert set(terms[1]) <= {"rib", "fracture", "rib fracture", "normal rib"}
    assert characteristic_terms(["", ""], np.array([0, 1]), 2) == [[], []]


def test_mismatched_lengths_name_the_input():
    with pytest.raises(ValueError, match="labels has 3 rows but the ledger has 4"):
        build_report(np.zeros(4), labels=np.zeros((3, 14)))


def test_a_bool_kept_mask_is_refused(tmp_path):
    """True/False would read as steps 1/0: "kept 100%"."""
    with pytest.raises(ValueError, match=r"bool mask; from a kept mask pass np.where\(mask, 0, -1\)"):
        write_report(str(tmp_path), np.array([True, False, False, True]))
    report = write_report(str(tmp_path), np.where([True, False, False, True], 0, -1))
    assert report["kept_fraction"] == 0.5


def test_write_report_files(tmp_path):
    inputs, images = fake_pool()
    distances = np.linspace(0, 1, N)
    report = write_report(str(tmp_path), images=images, distances=distances, strip_size=5, **inputs)
    on_disk = json.loads((tmp_path / "curation_report.json").read_text())
    assert on_disk == report and on_disk["prototypes"][1]["strip"] == "curation_plots/prototype_1.png"
    markdown = (tmp_path / "curation_report.md").read_text()
    assert "Warnings" in markdown and "**RARE finding 'Fracture' lost" in markdown
    assert "| Fracture | yes | 4 | 0 |" in markdown
    plots = sorted(os.listdir(tmp_path / "curation_plots"))
    assert plots == ["kept_over_steps.png", "prototype_0.png", "prototype_1.png", "retention.png"]
    for name in plots:
        assert (tmp_path / "curation_plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_report_without_optional_inputs(tmp_path):
    report = write_report(str(tmp_path), np.array([-1, 0, 3, -1]))
    assert report["kept_fraction"] == 0.5 and "findings" not in report and report["flags"] == []
    assert os.listdir(tmp_path / "curation_plots") == ["kept_over_steps.png"]
