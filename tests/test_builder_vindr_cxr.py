"""vindr_cxr on a tiny tree in the real layout: three raters per train image aggregated by
majority or by any, a consensus test file without rad_id, the label table, boxes voted into
per-class mask channels, the validation carve-out, skips and errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chexficient.data.builders import _common
from chexficient.data.builders.vindr_cxr import (LABEL_MAP, LOCAL_CLASSES, VALIDATION_FRACTION,
                                                 VindrConfig, VindrCxr, read_boxes, read_readings)
from chexficient.findings import FINDINGS
from tests import real_fixtures as rf

COLUMNS = list(LABEL_MAP)[:-2] + ["No finding"]  # the release's 28 columns ("Other disease")
REACHED = sorted({f for f in LABEL_MAP.values() if f and f != "No Finding"})
ABNORMAL, NORMAL, GARBAGE = ("cfcd208495d565ef66e7dff9f98764da",  # train
                             "c4ca4238a0b923820dcc509a6f75849b",  # validation (hash 0.03)
                             "c81e728d9d4c2f636f067f89cc14862c")
TEST = "eccbc87e4b5ce2fe28308fd9f2a7baf3"
BOX_HEADER = ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"]


def _row(image_id: str, rater: str | None, *positive: str) -> list:
    key = [image_id] if rater is None else [image_id, rater]
    return key + [int(c in positive) for c in COLUMNS]


def write_tree(root: str) -> str:
    ann = os.path.join(root, "annotations")
    rf.write_csv(os.path.join(ann, "image_labels_train.csv"), ["image_id", "rad_id", *COLUMNS], [
        _row(ABNORMAL, "R8", "Cardiomegaly", "Nodule/Mass", "Aortic enlargement"),
        _row(ABNORMAL, "R9", "Cardiomegaly", "Lung tumor", "Aortic enlargement"),
        _row(ABNORMAL, "R10", "Rib fracture", "Aortic enlargement"),
        *[_row(NORMAL, r, "No finding") for r in ("R8", "R9", "R10")],
        *[_row(GARBAGE, r, "No finding") for r in ("R1", "R2", "R3")]])
    rf.write_csv(os.path.join(ann, "annotations_train.csv"), BOX_HEADER, [
        [ABNORMAL, "R8", "Cardiomegaly", 10, 30, 50, 50],
        [ABNORMAL, "R9", "Cardiomegaly", 20.0, 30.0, 60.0, 50.0],
        [ABNORMAL, "R8", "Nodule/Mass", 40, 10, 50, 20],
        [ABNORMAL, "R10", "Rib fracture", 0, 0, 4, 4],
        [NORMAL, "R8", "No finding", "", "", "", ""]])
    rf.write_csv(os.path.join(ann, "image_labels_test.csv"), ["image_id", *COLUMNS],
                 [_row(TEST, None, "Pneumothorax", "COPD")])
    rf.write_csv(os.path.join(ann, "annotations_test.csv"), BOX_HEADER[:1] + BOX_HEADER[2:],
                 [[TEST, "Pneumothorax", 2, 2, 10, 12]])
    picture = rf.gradient(64, 64, np.uint16) // 16
    rf.write_dicom(os.path.join(root, "train", f"{ABNORMAL}.dicom"), picture)
    rf.write_dicom(os.path.join(root, "train", f"{NORMAL}.dicom"), 4095 - picture,
                   photometric="MONOCHROME1")
    rf.write_garbage(os.path.join(root, "train", f"{GARBAGE}.dicom"))
    rf.write_dicom(os.path.join(root, "test", f"{TEST}.dicom"), picture)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    return write_tree(str(tmp_path_factory.mktemp("vindr")))


def _build(tree, tmp_path_factory, aggregate):
    config = VindrConfig(name=f"test_{aggregate}", image_size=32, aggregate=aggregate)
    builder, records = rf.build(VindrCxr, config, tree, str(tmp_path_factory.mktemp("data")))
    return builder, records, {r["id"]: r for split in records.values() for r in split}


@pytest.fixture(scope="module")
def majority(tree, tmp_path_factory):
    return _build(tree, tmp_path_factory, "majority")


@pytest.fixture(scope="module")
def any_rater(tree, tmp_path_factory):
    return _build(tree, tmp_path_factory, "any")


def _labels(**values: int) -> list[int]:
    return [values.get(name, -2) for name in FINDINGS]


def test_splits_and_skips(majority):
    builder, records, _ = majority
    assert _common.key_fraction(NORMAL) < VALIDATION_FRACTION <= _common.key_fraction(ABNORMAL)
    assert {s: [r["id"] for r in rows] for s, rows in records.items()} == {
        "train": [ABNORMAL], "validation": [NORMAL], "test": [TEST]}
    with open(_common.build_skips_path(builder.data_dir, "train")) as f:
        assert f.read().splitlines()[1].startswith(GARBAGE + "\t")


def test_majority_labels_count_each_rater_once_per_finding(majority):
    by_id = majority[2]
    negatives = {f: 0 for f in REACHED}
    # Lung Lesion: Nodule/Mass (R8) and Lung tumor (R9) are two raters -> majority
    assert by_id[ABNORMAL]["labels"].tolist() == _labels(
        **{**negatives, "No Finding": 0, "Cardiomegaly": 1, "Lung Lesion": 1})
    extra = json.loads(by_id[ABNORMAL]["extra_labels"])
    assert extra["unmapped"] == ["Aortic enlargement"] and extra["raters"] == 3
    assert extra["votes"] == {"Aortic enlargement": 3, "Cardiomegaly": 2, "Nodule/Mass": 1,
                              "Lung tumor": 1, "Rib fracture": 1}
    assert by_id[NORMAL]["labels"].tolist() == _labels(**negatives, **{"No Finding": 1})
    test = by_id[TEST]  # consensus: one rater, no rad_id column
    assert test["labels"].tolist() == _labels(**{**negatives, "No Finding": 0, "Pneumothorax": 1})
    assert json.loads(test["extra_labels"])["unmapped"] == ["COPD"]


def test_any_rater_labels(any_rater):
    labels = any_rater[2][ABNORMAL]["labels"]
    for name in ("Cardiomegaly", "Lung Lesion", "Fracture"):
        assert labels[FINDINGS.index(name)] == 1, name
    assert json.loads(any_rater[2][ABNORMAL]["extra_labels"])["aggregate"] == "any"


def _channel(name: str) -> int:
    return LOCAL_CLASSES.index(name)


def test_box_masks_follow_the_votes(majority, any_rater):
    for (_, _, by_id), cardio_x, lesion in ((majority, (10, 25), False), (any_rater, (5, 30), True)):
        record = by_id[ABNORMAL]
        assert record["mask"].shape == (32, 32, len(LOCAL_CLASSES))
        want = np.zeros((32, 32, len(LOCAL_CLASSES)), np.uint8)
        want[15:25, cardio_x[0]:cardio_x[1], _channel("Cardiomegaly")] = 1  # overlap vs union
        if lesion:
            want[5:10, 20:25, _channel("Nodule/Mass")] = 1
            want[0:2, 0:2, _channel("Rib fracture")] = 1
        np.testing.assert_array_equal(record["mask"], want)
        np.testing.assert_allclose(record["boxes"]["bbox"][:2], [[5, 15, 25, 25], [10, 15, 30, 25]])
        assert [b.decode() for b in record["boxes"]["label"]] == [
            "Cardiomegaly", "Cardiomegaly", "Nodule/Mass", "Rib fracture"]
    test = majority[2][TEST]
    want = np.zeros_like(test["mask"])
    want[1:6, 1:5, _channel("Pneumothorax")] = 1
    np.testing.assert_array_equal(test["mask"], want)
    assert not majority[2][NORMAL]["mask"].any()


def test_label_cells_and_box_rows_are_checked(tmp_path):
    bad = rf.write_csv(str(tmp_path / "image_labels_train.csv"), ["image_id", "rad_id", "Edema"],
                       [["a", "R1", 1], ["a", "R2", -1]])
    with pytest.raises(ValueError, match="line 3 column 'Edema'"):
        read_readings(bad)
    boxes = rf.write_csv(str(tmp_path / "annotations_train.csv"), BOX_HEADER,
                         [["a", "R1", "Cardiomegaly", 1, 2, 3, 4], ["a", "R1", "Goitre", 1, 2, 3, 4]])
    with pytest.raises(ValueError, match="line 3"):
        read_boxes(boxes)


def test_missing_first_image_shows_the_layout(tmp_path):
    root = write_tree(str(tmp_path / "vindr"))
    os.remove(os.path.join(root, "train", f"{ABNORMAL}.dicom"))
    with pytest.raises(_common.ManualDirError) as error:
        rf.build(VindrCxr, VindrConfig(name="t", image_size=32), root, str(tmp_path / "data"))
    assert f"missing {os.path.join(root, 'train', ABNORMAL + '.dicom')}" in str(error.value)
    assert "annotations/" in str(error.value) and "image_labels_train.csv" in str(error.value)
