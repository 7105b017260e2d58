"""TFDS builder `chexpert`: CheXpert v1.0 or v1.0-small from the user's copy.

Splits: train (train.csv), validation (valid.csv) and, when the 500-study test labels are
there, test. Labels are the CSV's own 14 columns (CheXpert defines the 14 findings: no
mapping table), uncertain (-1) kept and blanks unmentioned; there are no reports (report = '').
"""

from __future__ import annotations

import glob
import os

import numpy as np

from chexficient.data.builders import _common
from chexficient.findings import FINDINGS

CSV_PREFIX = "CheXpert-v1.0"
"""Path / Study cells start with the release folder (CheXpert-v1.0 or CheXpert-v1.0-small),
which is the manual dir itself: it is cut off."""

TEST_LABELS = "test_labels.csv"

LAYOUT = _common.Layout(
    "CheXpert",
    required=("train.csv", "valid.csv", "train/", "valid/"),
    optional=(TEST_LABELS, "test/"),
    examples=("train/patient00001/study1/view1_frontal.jpg",
              "valid/patient64541/study1/view1_frontal.jpg",
              "test/patient64741/study1/view1_frontal.jpg"))

def relative(cell: str) -> str:
    """A Path / Study cell relative to the manual dir (release folder cut off)."""
    first, _, rest = cell.strip().partition("/")
    return rest if first.startswith(CSV_PREFIX) else cell.strip()


def view_from_filename(path: str) -> str:
    """'frontal' / 'lateral' from CheXpert's file name (view1_frontal.jpg), '' otherwise."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return next((v for v in _common.VIEWS if stem.endswith("_" + v)), "")


class Chexpert(_common.RealCxrBuilder):
    """CheXpert chest radiographs with their 14 labels (no reports)."""

    name = "chexficient_chexpert"

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Register at https://stanfordaimi.azurewebsites.net/datasets (CheXpert) and download
    CheXpert-v1.0 or CheXpert-v1.0-small. Pass the release folder itself (the one holding
    train.csv and valid.csv) as --manual_dir. For the test split, put the 500-study test
    labels there as {TEST_LABELS} (column Study or Path, then the 14 findings) and the test
    images under test/.

    {LAYOUT.tree("CheXpert-v1.0-small")}
    """
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        tables = {"train": "train.csv", "validation": "valid.csv"}
        if os.path.exists(os.path.join(root, TEST_LABELS)):
            tables["test"] = TEST_LABELS
        out = {}
        for split, name in tables.items():
            path = os.path.join(root, name)
            key = "Study" if "Study" in _common.csv_header(path) else "Path"
            rows = [(row, _common.labels_from_columns(row, f"{path} line {line}"))
                    for line, row in _common.numbered_rows(path, (key, *FINDINGS),
                                                           optional=("Frontal/Lateral",))]
            LAYOUT.check(root, probes=[relative(row[key]) for row, _ in rows[:1]])
            out[split] = self._entries(root, rows, key)
        return out

    def _entries(self, root: str, rows: list[tuple[dict[str, str], np.ndarray]], key: str
                 ) -> _common.SplitEntries:
        """A split's entries from its (row, labels) pairs (labels checked when read)."""
        views = self.builder_config.views

        def entries(tally: _common.SplitTally):
            for row, labels in rows:
                images = images_of(root, row, key)
                if not images:
                    tally.skip(row[key], os.path.join(root, relative(row[key])),
                               "no view*.jpg image in the study folder")
                for path, code in images:
                    view = _common.view_of(code)
                    if tally.keep_view(view, code, views):
                        yield _common.Entry(
                            id=os.path.splitext(path)[0], path=os.path.join(root, path),
                            report="", labels=labels, view=view)
        return entries


def images_of(root: str, row: dict[str, str], key: str) -> list[tuple[str, str]]:
    """(path relative to root, view code) of each image of a row: its Path, or every image in
    the folder of its Study (the test labels are per study)."""
    if key == "Path":
        path = relative(row["Path"])
        return [(path, row.get("Frontal/Lateral") or view_from_filename(path))]
    images = sorted(glob.glob(os.path.join(root, relative(row["Study"]), "view*.jpg")))
    return [(os.path.relpath(image, root), view_from_filename(image)) for image in images]
