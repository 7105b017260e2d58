"""TFDS builder `padchest`: PadChest's 16-bit PNGs, Spanish reports and label lists.

The report is the CSV's preprocessed Spanish Report text, kept as is. Labels come from the
Labels column (a Python-list string such as "['normal', 'cardiomegaly']") through
`LABEL_TABLE`; labels with no counterpart among the 14 findings are kept in extra_labels. A row
whose Labels cell is blank or not a list gets all -2. PadChest has no official split: every
image is in `train`. View from Projection (PA / AP / AP_horizontal frontal, L lateral).
"""

from __future__ import annotations

import ast
import os

from chexficient.data.builders import _common

TABLE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"

LAYOUT = _common.Layout(
    "PadChest",
    required=(TABLE,),
    examples=("0/<ImageID>.png", "54/<ImageID>.png"))

_DEVICES = ("pacemaker", "dual chamber device", "single chamber device", "electrical device",
            "endotracheal tube", "nsg tube", "tracheostomy tube", "chest drain tube",
            "ventriculoperitoneal drain tube", "catheter", "central venous catheter",
            "central venous catheter via jugular vein",
            "central venous catheter via subclavian vein",
            "central venous catheter via umbilical vein", "reservoir central venous catheter",
            "artificial heart valve", "artificial mitral heart valve",
            "artificial aortic heart valve", "heart valve present")

LABEL_TABLE: dict[str, str] = {
    "normal": "No Finding",
    "mediastinal enlargement": "Enlarged Cardiomediastinum",
    "superior mediastinal enlargement": "Enlarged Cardiomediastinum",
    "cardiomegaly": "Cardiomegaly",
    "infiltrates": "Lung Opacity",
    "alveolar pattern": "Lung Opacity",
    "ground glass pattern": "Lung Opacity",
    "increased density": "Lung Opacity",
    "nodule": "Lung Lesion",
    "multiple nodules": "Lung Lesion",
    "pulmonary mass": "Lung Lesion",
    "mass": "Lung Lesion",
    "lung metastasis": "Lung Lesion",
    "cavitation": "Lung Lesion",
    "pulmonary edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "atypical pneumonia": "Pneumonia",
    "atelectasis": "Atelectasis",
    "laminar atelectasis": "Atelectasis",
    "lobar atelectasis": "Atelectasis",
    "segmental atelectasis": "Atelectasis",
    "round atelectasis": "Atelectasis",
    "total atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural effusion": "Pleural Effusion",
    "loculated pleural effusion": "Pleural Effusion",
    "pleural thickening": "Pleural Other",
    "apical pleural thickening": "Pleural Other",
    "calcified pleural thickening": "Pleural Other",
    "pleural plaques": "Pleural Other",
    "calcified pleural plaques": "Pleural Other",
    "rib fracture": "Fracture",
    "clavicle fracture": "Fracture",
    "humeral fracture": "Fracture",
    "vertebral fracture": "Fracture",
    "callus rib fracture": "Fracture",
    **{device: "Support Devices" for device in _DEVICES},
}
"""PadChest label (lower case) -> finding. Everything else (e.g. 'costophrenic angle blunting',
'hilar congestion', 'granuloma', 'scoliosis', 'emphysema', 'exclude') goes to extra_labels."""


def parse_labels(cell: str) -> list[str] | None:
    """The label names of a Labels cell, stripped and lower-cased, blanks dropped; None when
    the cell is blank or not a list literal."""
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, (list, tuple)):
        return None
    return [name for name in (str(v).strip().lower() for v in value) if name]


def image_dir(cell: str) -> str:
    """The ImageDir cell as a folder name ('0'..'54'; '3.0' written by some tools -> '3')."""
    cell = cell.strip()
    try:
        return str(int(float(cell)))
    except ValueError:
        return cell


class Padchest(_common.RealCxrBuilder):
    """PadChest chest radiographs with Spanish reports and mapped labels."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Request PadChest at https://bimcv.cipf.es/bimcv-projects/padchest/, download the label
    CSV and the image zips (0.zip .. 54.zip), and extract each zip into a folder named after
    its ImageDir beside the CSV:

    {LAYOUT.tree("padchest")}
    """
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        rows = _common.read_csv(os.path.join(root, TABLE),
                                ("ImageID", "ImageDir", "Projection", "Report", "Labels"))
        LAYOUT.check(root, probes=[os.path.join(image_dir(r["ImageDir"]), r["ImageID"])
                                   for r in rows[:1]])
        return {"train": self._entries(root, rows)}

    def _entries(self, root: str, rows: list[dict[str, str]]) -> _common.SplitEntries:
        views = self.builder_config.views

        def entries(tally: _common.SplitTally):
            for row in rows:
                code = row["Projection"]
                view = _common.view_of(code)
                if not tally.keep_view(view, code, views):
                    continue
                names = parse_labels(row["Labels"])
                if names is None:
                    labels, extra = _common.UNLABELED, _common.extra_json(raw=row["Labels"])
                else:
                    labels, unmapped = _common.labels_from_names(names, LABEL_TABLE)
                    extra = _common.extra_json(unmapped)
                yield _common.Entry(
                    id=row["ImageID"],
                    path=os.path.join(root, image_dir(row["ImageDir"]), row["ImageID"]),
                    report=row["Report"].strip(), labels=labels, view=view, extra_labels=extra)
        return entries
