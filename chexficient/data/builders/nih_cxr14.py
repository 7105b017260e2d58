"""TFDS builder `nih_cxr14`: NIH ChestX-ray14 from the user's copy, with template pseudo-reports.

The 14 NIH labels map onto the 14 findings by `LABEL_MAP`; Emphysema, Fibrosis and Hernia
have no counterpart and stay in `extra_labels`. NIH has no reports, so each image gets a
pseudo-report written from its labels (`pseudo_report`: varied templates, fixed per image
id) that the project's labeler reads back to the same labels. Splits: the official
train_val / test lists, with validation carved out of train_val by patient. The boxes of
BBox_List_2017.csv become `boxes` and an 8-channel `mask` (one channel per box class).
"""

from __future__ import annotations

import csv
import glob
import os
import random
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from chexficient.data.builders import _common as common
from chexficient.findings import FINDINGS, NEGATIVE, NO_FINDING, NUM_FINDINGS, POSITIVE, UNMENTIONED

NAME = "nih_cxr14"
NO_FINDING_LABEL = "No Finding"

LABEL_MAP: dict[str, str | None] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion",
    "Infiltration": "Lung Opacity",  # NIH "infiltration": a parenchymal opacity, of any cause
    "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pleural_Thickening": "Pleural Other",
    "Emphysema": None,  # no counterpart among the 14: kept in extra_labels
    "Fibrosis": None,
    "Hernia": None,
    NO_FINDING_LABEL: "No Finding",
}
"""NIH label -> finding (None: no counterpart). A listed label is positive; the others are
unmentioned (-2), except on 'No Finding' rows, where every finding this table reaches is
negative (NIH's labels cover these classes exhaustively) and No Finding positive. Any
positive NIH label, mapped or not, makes No Finding negative."""

BOX_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule",
               "Pneumonia", "Pneumothorax")
"""The box labels of BBox_List_2017.csv (note "Infiltrate"), in mask channel order."""

SENTENCES: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("There is atelectasis.", "Atelectasis is present.",
                    "Findings compatible with atelectasis."),
    "Cardiomegaly": ("The heart is enlarged.", "Cardiomegaly is present.",
                     "There is cardiomegaly."),
    "Effusion": ("There is a pleural effusion.", "Pleural effusion is present.",
                 "Findings compatible with pleural effusion."),
    "Infiltration": ("There is an infiltrate.", "Pulmonary infiltrates are present.",
                     "Findings compatible with infiltration."),
    "Mass": ("There is a pulmonary mass.", "A mass is present.",
             "Findings compatible with a lung mass."),
    "Nodule": ("There is a pulmonary nodule.", "A nodule is present.",
               "Findings compatible with a pulmonary nodule."),
    "Pneumonia": ("There is pneumonia.", "Pneumonia is present.",
                  "Findings compatible with pneumonia."),
    "Pneumothorax": ("There is a pneumothorax.", "Pneumothorax is present.",
                     "Findings compatible with pneumothorax."),
    "Consolidation": ("There is consolidation.", "Consolidation is present.",
                      "Findings compatible with consolidation."),
    "Edema": ("There is pulmonary edema.", "Edema is present.",
              "Findings compatible with pulmonary edema."),
    "Emphysema": ("Emphysema is present.", "The lungs are emphysematous.",
                  "Findings compatible with emphysema."),
    "Fibrosis": ("There is pulmonary fibrosis.", "Fibrosis is present.",
                 "Findings compatible with pulmonary fibrosis."),
    "Pleural_Thickening": ("There is pleural thickening.", "Pleural thickening is present.",
                           "Findings compatible with pleural thickening."),
    "Hernia": ("There is a hernia.", "A hiatal hernia is present.",
               "Findings compatible with a hernia."),
}
"""Pseudo-report sentences per NIH label: no laterality, size or severity that NIH does not give."""

NORMAL_REPORTS = (
    "No pleural effusion, pneumothorax, consolidation or edema. The heart size is normal. "
    "No pulmonary nodule or mass. No atelectasis, infiltrate, pleural thickening or pneumonia.",
    "The heart is normal in size. The lungs are clear without consolidation, infiltrate, "
    "atelectasis, nodule, mass or edema. There is no pleural effusion, pleural thickening or "
    "pneumothorax. No evidence of pneumonia.",
    "Normal heart size. No focal consolidation, infiltrate or atelectasis. No pulmonary edema. "
    "No nodules or masses. No pneumothorax or pleural effusion. No pleural thickening. "
    "No pneumonia.",
    "Heart size is within normal limits. There is no consolidation, infiltrate, atelectasis, "
    "edema, nodule or mass, and no pneumonia. There is no pneumothorax, pleural effusion or "
    "pleural thickening.",
)
"""Pseudo-reports of 'No Finding' rows: each negates every finding `LABEL_MAP` reaches."""

OPENINGS = ("", "{view} chest radiograph.", "{view} view of the chest.",
            "Single {view} view of the chest.")

DATA_ENTRY = "Data_Entry_2017_v2020.csv"
DATA_ENTRY_2017 = "Data_Entry_2017.csv"
"""The table's name in the 2017 release and Kaggle's mirror (same columns; a trailing comma
ends its header)."""
TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST = "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv"
IMAGE_GLOB = os.path.join("images_*", "images", "*.png")
COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "View Position")

LAYOUT = common.Layout(
    dataset=NAME,
    required=(DATA_ENTRY, TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST),
    alternatives={DATA_ENTRY: (DATA_ENTRY_2017,)},
    examples=("images_001/images/00000001_000.png", "images_012/images/00030805_000.png"))


def finding_names(cell: str, where: str) -> list[str]:
    """The NIH labels of a 'Finding Labels' cell ('A|B' or 'No Finding'); unknown ones raise."""
    names = [n.strip() for n in cell.split("|") if n.strip()]
    unknown = [n for n in names if n not in LABEL_MAP]
    if unknown or not names or (NO_FINDING_LABEL in names and len(names) > 1):
        raise ValueError(f"{where}: Finding Labels {cell!r} is not 'No Finding' or labels "
                         f"from {sorted(n for n in LABEL_MAP if n != NO_FINDING_LABEL)}")
    return names


def map_labels(names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """int8[14] labels and the unmapped NIH labels of one image (see `LABEL_MAP`)."""
    if list(names) == [NO_FINDING_LABEL]:
        return common.labels_from_names(names, LABEL_MAP)
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    unmapped = []
    for name in names:
        if LABEL_MAP[name]:
            labels[FINDINGS.index(LABEL_MAP[name])] = POSITIVE
        else:
            unmapped.append(name)
    labels[NO_FINDING] = NEGATIVE
    return labels, unmapped


def pseudo_report(image_id: str, names: Sequence[str], view_code: str) -> str:
    """A short report stating exactly the image's labels, its wording drawn from the
    templates by a generator seeded with the image id (the same text on every build)."""
    rng = random.Random(f"{NAME} report {image_id}")
    opening = rng.choice(OPENINGS).format(view=view_code.strip().upper() or "Frontal")
    if list(names) == [NO_FINDING_LABEL]:
        body = [rng.choice(NORMAL_REPORTS)]
    else:
        body = [rng.choice(SENTENCES[name]) for name in rng.sample(list(names), len(names))]
    return " ".join(s for s in [opening, *body] if s)


def read_id_list(path: str) -> set[str]:
    """Image ids listed one a line (train_val_list.txt, test_list.txt)."""
    with open(path) as f:
        return {line.strip() for line in f if line.strip()}


def read_boxes(path: str) -> dict[str, common.Boxes]:
    """BBox_List_2017.csv (Image Index, Finding Label, then x, y, w, h under the header
    'Bbox [x,y,w,h]' and unnamed columns) -> boxes per image as (x_min, y_min, x_max, y_max)."""
    found: dict[str, list[tuple[list[float], str, int]]] = {}
    with common.open_text(path) as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if line == 1 or not any(cell.strip() for cell in row):
                continue
            try:
                image_id, label = row[0].strip(), row[1].strip()
                x, y, w, h = (float(v) for v in row[2:6])
                channel = BOX_CLASSES.index(label)
            except (IndexError, ValueError):
                raise ValueError(f"{path} line {line}: expected Image Index, one of "
                                 f"{BOX_CLASSES}, then x, y, w, h; got {row}") from None
            found.setdefault(image_id, []).append(([x, y, x + w, y + h], label, channel))
    return {image_id: common.Boxes(np.array([b for b, _, _ in rows], np.float32),
                                   tuple(lab for _, lab, _ in rows), tuple(c for _, _, c in rows))
            for image_id, rows in found.items()}


class NihCxr14(common.RealCxrBuilder):
    """NIH ChestX-ray14: 112,120 frontal radiographs, 14 text-mined labels, 984 boxes."""

    name = "chexficient_nih_cxr14"
    MASK_CHANNELS = BOX_CLASSES
    """Names of the mask channels, in order (the segmentation adapter's targets name them)."""
    EMPTY_MASK_MEANS_UNANNOTATED = True
    """Only some images have boxes: an empty mask means "not annotated", not "normal"."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download ChestX-ray14 from https://nihcc.app.box.com/v/ChestXray-NIHCC (or Kaggle's
    nih-chest-xrays/data), extract the twelve image archives in place and pass the folder
    holding them with --manual_dir:

    {LAYOUT.tree("MANUAL_DIR")}
    """
    LAYOUT = LAYOUT
    VALIDATION_FRACTION = 0.1
    """Share of train_val patients moved to `validation` (by patient id hash: stable)."""

    def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"boxes": common.boxes_feature(),
                "mask": common.mask_feature(self.builder_config.image_size, len(BOX_CLASSES))}

    def split_entries(self, root: str) -> dict[str, common.SplitEntries]:
        path = LAYOUT.find(root, DATA_ENTRY)
        rows = common.read_csv(path)
        common.require_columns(rows, COLUMNS, path)
        images = {os.path.basename(p): p for p in glob.glob(os.path.join(root, IMAGE_GLOB))}
        if rows and not images:
            raise LAYOUT.missing(root, f"images_001/images/{rows[0]['Image Index']}")
        test = read_id_list(os.path.join(root, TEST_LIST))
        train_val = read_id_list(os.path.join(root, TRAIN_VAL_LIST))
        self._boxes = read_boxes(os.path.join(root, BBOX_LIST))

        def split_of(item: tuple[int, dict[str, str]]) -> str | None:
            row = item[1]
            image_id = row["Image Index"].strip()
            if image_id in test:
                return "test"
            if image_id in train_val:
                return common.carve_split(row["Patient ID"].strip(),
                                          {"validation": self.VALIDATION_FRACTION}, "train")
            self.unsplit[f"in neither {TRAIN_VAL_LIST} nor {TEST_LIST}"] += 1
            return None

        def entry_of(item: tuple[int, dict[str, str]], tally: common.SplitTally
                     ) -> common.Entry | None:
            line, row = item
            image_id, code = row["Image Index"].strip(), row["View Position"]
            view = common.view_of(code)
            if not tally.keep_view(view, code, self.builder_config.views):
                return None
            names = finding_names(row["Finding Labels"], f"{path} line {line}")
            labels, unmapped = map_labels(names)
            return common.Entry(
                id=image_id, labels=labels, view=view,
                path=images.get(image_id, os.path.join(root, "images_*", "images", image_id)),
                report=pseudo_report(image_id, names, code),
                extra_labels=common.extra_json(unmapped))

        return common.entries_by_split(enumerate(rows, start=2), split_of, entry_of)

    def load(self, entry: common.Entry) -> dict:
        return common.record_with_boxes(entry, self._boxes.get(entry.id, common.Boxes.empty()),
                                        self.builder_config.image_size, self.dataset_name, len(BOX_CLASSES))
