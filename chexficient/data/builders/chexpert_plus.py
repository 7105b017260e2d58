"""TFDS builder `chexpert_plus`: CheXpert-Plus PNG images, report sections and CheXbert labels.

The report is section_findings + section_impression of df_chexpert_plus_240401.csv ('' when
the study has neither). Labels are the CheXbert labels of chexbert_labels/findings_fixed.json
(JSON lines keyed by path_to_image; an image without a line gets all -2). The CSV names
images `train/.../view1_frontal.jpg`; the PNG release stores them as
PNG/PNG/train/.../view1_frontal.png. Splits: the CSV's split column (train / valid).
"""

from __future__ import annotations

import json
import os

import numpy as np

from chexficient.data.builders import _common

TABLE = "df_chexpert_plus_240401.csv"
LABELS = "chexbert_labels/findings_fixed.json"
IMAGES = "PNG/PNG"
SPLITS = {"train": "train", "valid": "validation"}
"""The CSV's split value -> TFDS split name."""

LAYOUT = _common.Layout(
    "CheXpert-Plus",
    required=(TABLE, LABELS, f"{IMAGES}/train/"),
    optional=(f"{IMAGES}/valid/",),
    examples=(f"{IMAGES}/train/patient42142/study5/view1_frontal.png",))


def image_path(path_to_image: str) -> str:
    """Where the PNG release keeps the image the CSV calls `path_to_image` (.jpg)."""
    return f"{IMAGES}/{os.path.splitext(path_to_image.strip())[0]}.png"


def read_labels(path: str) -> dict[str, np.ndarray]:
    """path_to_image -> int8[14] from CheXbert's JSON lines (1 / 0 / -1 / null)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[row["path_to_image"].strip()] = _common.labels_from_columns(
                    row, f"{path} line {number}")
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path} line {number}: not a CheXbert label line "
                                 f"({type(e).__name__}: {e})") from None
    return out


class ChexpertPlus(_common.RealCxrBuilder):
    """CheXpert-Plus: CheXpert images with their radiology reports and CheXbert labels."""

    name = "chexficient_chexpert_plus"

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Register at https://stanfordaimi.azurewebsites.net/datasets (CheXpert-Plus), download
    {TABLE}, the chexbert_labels folder and the PNG images, and extract them into the
    manual dir:

    {LAYOUT.tree("chexpert_plus")}
    """
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        rows = _common.read_csv(os.path.join(root, TABLE), (
            "path_to_image", "frontal_lateral", "section_findings", "section_impression", "split"))
        unknown = {row["split"] for row in rows} - set(SPLITS)
        if unknown:
            raise ValueError(f"{os.path.join(root, TABLE)}: unknown split values {sorted(unknown)}")
        LAYOUT.check(root, probes=[image_path(row["path_to_image"]) for row in rows[:1]])
        labels = read_labels(os.path.join(root, LABELS))
        return {name: self._entries(root, [r for r in rows if r["split"] == value], labels)
                for value, name in SPLITS.items() if any(r["split"] == value for r in rows)}

    def _entries(self, root: str, rows: list[dict[str, str]], labels: dict[str, np.ndarray]
                 ) -> _common.SplitEntries:
        views = self.builder_config.views

        def entries(tally: _common.SplitTally):
            for row in rows:
                code = row["frontal_lateral"]
                view = _common.view_of(code)
                if tally.keep_view(view, code, views):
                    key = row["path_to_image"].strip()
                    yield _common.Entry(
                        id=os.path.splitext(key)[0], path=os.path.join(root, image_path(key)),
                        report=_common.join_report(row["section_findings"],
                                                   row["section_impression"]),
                        labels=labels.get(key, _common.UNLABELED), view=view)
        return entries
