"""nih_cxr14 on a tiny tree in the real layout: label mapping, pseudo-reports the labeler reads
back, official lists with a patient-wise validation carve-out, boxes to masks, skips, errors."""

from __future__ import annotations

import itertools
import json
import os
import random

import numpy as np
import pytest

from chexficient import labeler
from chexficient.data.builders import _common
from chexficient.data.builders.nih_cxr14 import (BOX_CLASSES, LABEL_MAP, NORMAL_REPORTS, OPENINGS,
                                                 SENTENCES, NihCxr14, finding_names, map_labels,
                                                 pseudo_report)
from chexficient.findings import FINDINGS
from tests import real_fixtures as rf

HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
          "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
          "OriginalImagePixelSpacing[x", "y]"]
"""The real header: the two-valued columns split at their commas."""

ROWS = [  # image, labels, patient, view, folder, list
    ("00000001_000.png", "Cardiomegaly|Emphysema", "1", "PA", "images_001", "train_val"),
    ("00000001_001.png", "No Finding", "1", "PA", "images_001", "train_val"),
    ("00000039_000.png", "Effusion|Infiltration", "39", "AP", "images_001", "train_val"),
    ("00000003_000.png", "Mass|Nodule", "3", "PA", "images_002", "test"),
    ("00000004_000.png", "Atelectasis", "4", "PA", "images_002", "test"),  # unreadable file
    ("00000005_000.png", "Pneumothorax", "5", "PA", "images_002", "test"),  # file missing
    ("00000006_000.png", "Hernia", "6", "PA", "images_002", "neither"),  # in no official list
]
SIDE = 128  # images are 128 px, stored at 64: every box coordinate halves exactly


def _labels(**values: int) -> list[int]:
    return [values.get(name, -2) for name in FINDINGS]


def write_tree(root: str) -> str:
    rows = [[image, labels, i, patient, 50, "M", view, 2500, 2048, 0.143, 0.143]
            for i, (image, labels, patient, view, _, _) in enumerate(ROWS)]
    rf.write_csv(os.path.join(root, "Data_Entry_2017_v2020.csv"), HEADER, rows)
    for split in ("train_val", "test"):
        rf.write_text(os.path.join(root, f"{split}_list.txt"),
                      "".join(f"{r[0]}\n" for r in ROWS if r[5] == split))
    rf.write_csv(os.path.join(root, "BBox_List_2017.csv"),
                 ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""],
                 [["00000003_000.png", "Mass", 20, 40, 30, 20, "", "", ""],
                  ["00000003_000.png", "Nodule", 80.0, 80.0, 10.0, 10.0, "", "", ""]])
    for image, _, _, _, folder, _ in ROWS[:4]:
        rf.write_png(os.path.join(root, folder, "images", image), rf.gradient(SIDE, SIDE))
    rf.write_garbage(os.path.join(root, "images_002", "images", ROWS[4][0]))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_tree(str(tmp_path_factory.mktemp("nih")))
    config = _common.RealCxrConfig(name="test", image_size=64)
    return rf.build(NihCxr14, config, root, str(tmp_path_factory.mktemp("data")))


def test_label_table_covers_every_nih_label():
    assert set(SENTENCES) == set(LABEL_MAP) - {"No Finding"}
    assert {f for f in LABEL_MAP.values() if f} <= set(FINDINGS)
    labels, unmapped = map_labels(["Mass", "Nodule", "Infiltration", "Hernia"])
    assert labels.tolist() == _labels(**{"No Finding": 0, "Lung Lesion": 1, "Lung Opacity": 1})
    assert unmapped == ["Hernia"]
    labels, unmapped = map_labels(["No Finding"])
    reached = {f for f in LABEL_MAP.values() if f and f != "No Finding"}
    assert labels.tolist() == _labels(**{"No Finding": 1}, **{f: 0 for f in reached})
    assert unmapped == []


def test_every_template_is_read_back_by_the_labeler():
    sentences = [(name, s) for name, variants in SENTENCES.items() for s in variants]
    got = labeler.label([s for _, s in sentences] + list(NORMAL_REPORTS))
    want = [map_labels([name])[0] for name, _ in sentences] + [map_labels(["No Finding"])[0]] * 4
    for text, g, w in zip([s for _, s in sentences] + list(NORMAL_REPORTS), got, want):
        assert g.tolist() == w.tolist(), text


def test_pseudo_reports_of_label_combinations_give_back_the_labels():
    rng = random.Random(0)
    names = sorted(SENTENCES)
    combos = [rng.sample(names, rng.randint(1, 4)) for _ in range(60)] + [["No Finding"]] * 10
    reports = [pseudo_report(f"{i:08d}_000.png", combo, rng.choice(["PA", "AP"]))
               for i, combo in enumerate(combos)]
    for report, combo, got in zip(reports, combos, labeler.label(reports)):
        assert got.tolist() == map_labels(combo)[0].tolist(), report


def test_pseudo_reports_are_fixed_per_image_and_varied_across_images():
    names = ["Effusion", "Mass", "Atelectasis"]
    assert pseudo_report("00000001_000.png", names, "PA") == pseudo_report(
        "00000001_000.png", names, "PA")
    texts = {pseudo_report(f"{i:08d}_000.png", names, "PA") for i in range(40)}
    assert len(texts) > 10
    openings = {o.format(view="PA") for o in OPENINGS if o}
    assert any(t.startswith(tuple(openings)) for t in texts)
    assert any(not t.startswith(tuple(openings)) for t in texts)


@pytest.mark.parametrize("cell", ["Cardiomegaly|Flu", "", "No Finding|Mass"])
def test_bad_finding_labels_name_the_line(cell):
    with pytest.raises(ValueError, match="line 7: Finding Labels"):
        finding_names(cell, "Data_Entry_2017_v2020.csv line 7")


def test_splits_follow_the_official_lists_and_patients(built):
    builder, records = built
    assert [r["id"] for r in records["test"]] == ["00000003_000.png"]
    assert _common.key_fraction("39") < NihCxr14.VALIDATION_FRACTION <= _common.key_fraction("1")
    assert [r["id"] for r in records["validation"]] == ["00000039_000.png"]
    assert [r["id"] for r in records["train"]] == ["00000001_000.png", "00000001_001.png"]
    with open(_common.build_skips_path(builder.data_dir, "test")) as f:
        skipped = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    assert skipped == ["00000004_000.png", "00000005_000.png"]


def test_rows_in_neither_official_list_are_counted(built):
    builder, records = built
    assert "00000006_000.png" not in rf.records_by_id(records)
    assert (_common.unsplit_note(builder.data_dir) ==
            "1 rows in no split, left out (in neither train_val_list.txt nor test_list.txt: 1)")


def test_records_carry_mapped_labels_extras_and_reports(built):
    records = rf.records_by_id(built[1])
    first = records["00000001_000.png"]
    assert first["labels"].tolist() == _labels(**{"No Finding": 0, "Cardiomegaly": 1})
    assert json.loads(first["extra_labels"])["unmapped"] == ["Emphysema"]
    assert (first["source"], first["view"]) == ("nih_cxr14", "frontal")
    normal = records["00000001_001.png"]
    assert normal["labels"][FINDINGS.index("No Finding")] == 1
    assert normal["report"] in [f"{o.format(view='PA')} {r}".strip()
                                for o, r in itertools.product(OPENINGS, NORMAL_REPORTS)]
    for record in records.values():
        assert labeler.label([record["report"]])[0].tolist() == record["labels"].tolist()
        assert record["image"].shape == (64, 64) and record["image"].dtype == np.uint8


def test_boxes_become_boxes_and_mask_channels(built):
    records = rf.records_by_id(built[1])
    boxed = records["00000003_000.png"]
    np.testing.assert_allclose(boxed["boxes"]["bbox"], [[10, 20, 25, 30], [40, 40, 45, 45]])
    assert [b.decode() for b in boxed["boxes"]["label"]] == ["Mass", "Nodule"]
    mask = boxed["mask"]
    assert mask.shape == (64, 64, len(BOX_CLASSES))
    want = np.zeros_like(mask)
    want[20:30, 10:25, BOX_CLASSES.index("Mass")] = 1
    want[40:45, 40:45, BOX_CLASSES.index("Nodule")] = 1
    np.testing.assert_array_equal(mask, want)
    plain = records["00000001_000.png"]
    assert len(plain["boxes"]["bbox"]) == 0 and not plain["mask"].any()


def test_missing_list_file_shows_the_layout(tmp_path):
    root = write_tree(str(tmp_path / "nih"))
    os.remove(os.path.join(root, "test_list.txt"))
    with pytest.raises(_common.ManualDirError) as error:
        rf.build(NihCxr14, _common.RealCxrConfig(name="test", image_size=64), root,
                 str(tmp_path / "data"))
    message = str(error.value)
    assert f"missing {os.path.join(root, 'test_list.txt')}" in message
    assert "├── Data_Entry_2017_v2020.csv  (or Data_Entry_2017.csv)" in message
    assert "images_001/" in message


def test_the_2017_table_name_and_its_trailing_header_comma_are_read(tmp_path):
    """Kaggle's mirror ships the table as Data_Entry_2017.csv, its header ending in a comma."""
    root = write_tree(str(tmp_path / "nih"))
    os.remove(os.path.join(root, "Data_Entry_2017_v2020.csv"))
    rows = [[image, labels, i, patient, "050Y", "M", view, 2500, 2048, 0.143, 0.143]
            for i, (image, labels, patient, view, _, _) in enumerate(ROWS)]
    rf.write_csv(os.path.join(root, "Data_Entry_2017.csv"), [*HEADER, ""], rows)
    _, records = rf.build(NihCxr14, _common.RealCxrConfig(name="test", image_size=64), root,
                          str(tmp_path / "data"))
    assert [r["id"] for r in records["test"]] == ["00000003_000.png"]
    assert len(records["train"]) == 2 and len(records["validation"]) == 1


def test_no_images_at_all_names_the_first_expected_image(tmp_path):
    root = write_tree(str(tmp_path / "nih"))
    for folder in ("images_001", "images_002"):
        for name in os.listdir(os.path.join(root, folder, "images")):
            os.remove(os.path.join(root, folder, "images", name))
    with pytest.raises(_common.ManualDirError, match="images_001/images/00000001_000.png"):
        rf.build(NihCxr14, _common.RealCxrConfig(name="test", image_size=64), root,
                 str(tmp_path / "data"))
