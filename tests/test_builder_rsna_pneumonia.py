"""rsna_pneumonia on a tiny tree in the real layout: one CSV row per box, Target 0 rows without
box, DICOM (MONOCHROME1 and 2, windowed), boxes to a mask by the image's own resize-with-pad,
stable carve-out splits, skips and errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from chexficient.data.builders import _common
from chexficient.data.builders.rsna_pneumonia import (SPLIT_FRACTIONS, RsnaPneumonia, labels_of,
                                                      read_labels)
from chexficient.findings import FINDINGS
from tests import real_fixtures as rf

HEADER = ["patientId", "x", "y", "width", "height", "Target"]
BOXED, CLEAR, MISSING, GARBAGE = ("0004cfab-14fd-4e49-80ba-63a80b6bddd6",
                                  "00313ee0-9eaa-42f4-b0ab-c148ed3241cd",
                                  "00322d4d-1c29-4943-afc9-b6754be640eb",
                                  "003d8fa0-6bf1-40ed-b54c-ac657f8495c5")
ROWS = [[BOXED, 10, 20, 20, 10, 1], [CLEAR, "", "", "", "", 0], [BOXED, 40.0, 40.0, 12.0, 8.0, 1],
        [MISSING, "", "", "", "", 0], [GARBAGE, 5, 5, 10, 10, 1]]


def write_tree(root: str, rows=ROWS) -> str:
    rf.write_csv(os.path.join(root, "stage_2_train_labels.csv"), HEADER, rows)
    images = os.path.join(root, "stage_2_train_images")
    picture = rf.gradient(64, 64, np.uint16) // 16  # 12-bit values, as CR detectors give
    rf.write_dicom(os.path.join(images, f"{BOXED}.dcm"), picture, window=(2048, 4096),
                   ViewPosition="PA")
    rf.write_dicom(os.path.join(images, f"{CLEAR}.dcm"), 4095 - picture, window=(2048, 4096),
                   photometric="MONOCHROME1", ViewPosition="AP")
    rf.write_garbage(os.path.join(images, f"{GARBAGE}.dcm"))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_tree(str(tmp_path_factory.mktemp("rsna")))
    config = _common.RealCxrConfig(name="test", image_size=32)
    return rf.build(RsnaPneumonia, config, root, str(tmp_path_factory.mktemp("data")))


def test_labels_from_target():
    for target in (0, 1):
        labels = labels_of(target)
        for name in FINDINGS:
            assert labels[FINDINGS.index(name)] == (
                target if name in ("Pneumonia", "Lung Opacity") else -2), name


def test_records_splits_and_skips(built):
    builder, records = built
    assert set(rf.records_by_id(records)) == {BOXED, CLEAR}
    for split, rows in records.items():
        assert all(_common.carve_split(r["id"], SPLIT_FRACTIONS, "train") == split for r in rows)
    skipped = []
    for split in builder.info.splits:
        path = _common.build_skips_path(builder.data_dir, split)
        if os.path.exists(path):
            with open(path) as f:
                skipped += [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    assert sorted(skipped) == sorted([MISSING, GARBAGE])
    boxed = rf.records_by_id(records)[BOXED]
    assert boxed["labels"][FINDINGS.index("Pneumonia")] == 1 and boxed["report"] == ""
    assert rf.records_by_id(records)[CLEAR]["labels"][FINDINGS.index("Lung Opacity")] == 0


def test_boxes_and_mask_are_scaled_like_the_image(built):
    records = rf.records_by_id(built[1])
    boxed = records[BOXED]
    np.testing.assert_allclose(boxed["boxes"]["bbox"], [[5, 10, 15, 15], [20, 20, 26, 24]])
    assert [b.decode() for b in boxed["boxes"]["label"]] == ["Lung Opacity"] * 2
    want = np.zeros((32, 32, 1), np.uint8)
    want[10:15, 5:15] = 1
    want[20:24, 20:26] = 1
    np.testing.assert_array_equal(boxed["mask"], want)
    clear = records[CLEAR]
    assert len(clear["boxes"]["bbox"]) == 0 and not clear["mask"].any()
    # the windowed MONOCHROME1 image reads back like its MONOCHROME2 twin
    np.testing.assert_allclose(clear["image"].astype(int), boxed["image"].astype(int), atol=2)
    assert boxed["image"].std() > 20


@pytest.mark.parametrize("row", [["p", 1, 2, 3, 4, 0], ["p", "", "", "", "", 1],
                                 ["p", 1, 2, "x", 4, 1], ["p", "", "", "", "", 2]])
def test_inconsistent_rows_name_the_line(tmp_path, row):
    path = rf.write_csv(str(tmp_path / "stage_2_train_labels.csv"), HEADER, [ROWS[1], row])
    with pytest.raises(ValueError, match="stage_2_train_labels.csv line 3"):
        read_labels(path)


def test_one_target_per_patient(tmp_path):
    path = rf.write_csv(str(tmp_path / "stage_2_train_labels.csv"), HEADER,
                        [[BOXED, 1, 2, 3, 4, 1], [BOXED, "", "", "", "", 0]])
    with pytest.raises(ValueError, match="line 3"):
        read_labels(path)


def test_first_image_missing_shows_the_layout(tmp_path):
    root = write_tree(str(tmp_path / "rsna"), [ROWS[3]] + ROWS)
    with pytest.raises(_common.ManualDirError) as error:
        rf.build(RsnaPneumonia, _common.RealCxrConfig(name="test", image_size=32), root,
                 str(tmp_path / "data"))
    assert f"stage_2_train_images/{MISSING}.dcm" in str(error.value)
    assert "└── stage_2_train_images/" in str(error.value)
