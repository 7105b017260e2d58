"""TFDS builder `mimic_cxr`: MIMIC-CXR-JPG 2.x images with the MIMIC-CXR free-text reports.

Splits follow the official split file (train / validate / test -> train / validation / test).
The report is FINDINGS + IMPRESSION (+ addenda, the blocks after underscore lines); a study
with neither section, or without its report file, is skipped and listed. Labels come from
mimic-cxr-2.0.0-chexpert.csv.gz (or -negbio with config `*_negbio`) per study; a study the
label file lacks gets all -2. View from the metadata's ViewPosition.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from chexficient.data.builders import _common
from chexficient.findings import FINDINGS

METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
LABEL_FILES = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz",
               "negbio": "mimic-cxr-2.0.0-negbio.csv.gz"}
SPLITS = {"train": "train", "validate": "validation", "test": "test"}
"""Official split name -> TFDS split name."""

LAYOUT = _common.Layout(
    "MIMIC-CXR-JPG",
    required=(METADATA, SPLIT, LABEL_FILES["chexpert"], "files/"),
    optional=(LABEL_FILES["negbio"],),
    examples=("files/p10/p10000032/s50414267/<dicom_id>.jpg",
              "files/p10/p10000032/s50414267.txt"))


@dataclasses.dataclass(eq=False)
class MimicCxrConfig(_common.RealCxrConfig):
    """Adds the label source: 'chexpert' or 'negbio' (the two label files of MIMIC-CXR-JPG)."""

    label_source: str = "chexpert"

    def __post_init__(self):
        super().__post_init__()
        if self.label_source not in LABEL_FILES:
            raise ValueError(f"label_source must be one of {sorted(LABEL_FILES)}, "
                             f"got {self.label_source!r}")


def study_folder(subject_id: str, study_id: str) -> str:
    """files/p10/p10000032/s50414267: folder `p` + the subject id's first two digits."""
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


def read_report(path: str) -> _common.ReportParts | None:
    """The sections of a report file; None when it does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        return _common.parse_report(f.read())


class MimicCxr(_common.RealCxrBuilder):
    """MIMIC-CXR chest radiographs, report findings + impression, CheXpert / NegBio labels."""

    name = "chexficient_mimic_cxr"

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Credentialed access at https://physionet.org/content/mimic-cxr-jpg/ (images, metadata,
    split and label files) and https://physionet.org/content/mimic-cxr/ (mimic-cxr-reports.zip).
    Put MIMIC-CXR-JPG's files in the manual dir and unzip the reports into it, so that each
    report sXXXX.txt lies beside its study folder sXXXX/:

    {LAYOUT.tree("mimic-cxr-jpg/2.1.0")}
    """
    BUILDER_CONFIGS = [*_common.default_configs(MimicCxrConfig),
                       MimicCxrConfig(name="frontal_negbio", label_source="negbio",
                                      description="Frontal views, NegBio labels.")]
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        label_file = LABEL_FILES[self.builder_config.label_source]
        LAYOUT.check(root, probes=[label_file])
        rows = _common.read_csv(os.path.join(root, SPLIT),
                                ("dicom_id", "study_id", "subject_id", "split"))
        unknown = {row["split"] for row in rows} - set(SPLITS)
        if unknown:
            raise ValueError(f"{os.path.join(root, SPLIT)}: unknown split names {sorted(unknown)}")
        views = self._view_positions(root)
        labels = self._labels(root, label_file)
        first = rows[0] if rows else None
        if first:
            folder = study_folder(first["subject_id"], first["study_id"])
            LAYOUT.check(root, probes=[f"{folder}.txt", f"{folder}/{first['dicom_id']}.jpg"])
        return {name: self._entries(root, [r for r in rows if r["split"] == official], views,
                                    labels)
                for official, name in SPLITS.items() if any(r["split"] == official for r in rows)}

    def _view_positions(self, root: str) -> dict[str, str]:
        """dicom_id -> ViewPosition code (blank when the metadata leaves it out)."""
        rows = _common.read_csv(os.path.join(root, METADATA), ("dicom_id", "ViewPosition"))
        return {row["dicom_id"]: row["ViewPosition"] for row in rows}

    def _labels(self, root: str, label_file: str) -> dict[tuple[str, str], np.ndarray]:
        """(subject_id, study_id) -> int8[14] from a CheXpert-style label table."""
        rows = _common.read_csv(os.path.join(root, label_file),
                                ("subject_id", "study_id", *FINDINGS))
        return {(row["subject_id"], row["study_id"]): _common.labels_from_columns(
            row, f"{label_file} study {row['study_id']}") for row in rows}

    def _entries(self, root: str, rows: list[dict[str, str]], view_positions: dict[str, str],
                 labels: dict[tuple[str, str], np.ndarray]) -> _common.SplitEntries:
        views = self.builder_config.views

        def entries(tally: _common.SplitTally):
            report_path, report = "", None  # a study's images are adjacent: read its report once
            for row in rows:
                code = view_positions.get(row["dicom_id"], "")
                view = _common.view_of(code)
                if not tally.keep_view(view, code, views):
                    continue
                folder = os.path.join(root, study_folder(row["subject_id"], row["study_id"]))
                if report_path != folder + ".txt":
                    report_path, report = folder + ".txt", read_report(folder + ".txt")
                text = report.text() if report else ""
                if not text:
                    tally.skip(row["dicom_id"], folder + ".txt",
                               "no FINDINGS or IMPRESSION section" if report else "no report file")
                    continue
                study = (row["subject_id"], row["study_id"])
                yield _common.Entry(
                    id=row["dicom_id"], path=os.path.join(folder, row["dicom_id"] + ".jpg"),
                    report=text, labels=labels.get(study, _common.UNLABELED), view=view)
        return entries
