"""TFDS builder `rsna_pneumonia`: RSNA Pneumonia Detection Challenge (stage 2), user's copy.

stage_2_train_labels.csv has one row per box (Target 1) or one box-less row (Target 0) per
image. The boxes become `boxes` and a 1-channel `mask`, resized with the image. Labels come
from Target by `LABEL_MAP`. Only the train images carry labels: train / validation / test
are carved out of them by patientId (70 / 15 / 15 %, stable). There are no reports.
"""

from __future__ import annotations

import os
import numpy as np
import tensorflow_datasets as tfds

from chexficient.data.builders import _common as common
from chexficient.findings import FINDINGS, NEGATIVE, NUM_FINDINGS, POSITIVE, UNMENTIONED

LABELS_CSV, IMAGE_DIR = "stage_2_train_labels.csv", "stage_2_train_images"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
BOX_LABEL = "Lung Opacity"
"""RSNA's one box class: an opacity suspicious for pneumonia."""

LABEL_MAP: dict[str, tuple[str, ...]] = {"Target": ("Pneumonia", "Lung Opacity")}
"""Target 1 (opacities suspicious for pneumonia, boxed) makes both findings 1, Target 0 both
0; the other findings are unmentioned (-2). RSNA's Target 0 covers normal and abnormal
images alike, so No Finding stays unmentioned."""

SPLIT_FRACTIONS = {"test": 0.15, "validation": 0.15}
"""Shares of images (by patientId hash) carved out of the labeled train set; `train` is the rest."""

LAYOUT = common.Layout(
    dataset="rsna_pneumonia",
    required=(LABELS_CSV, f"{IMAGE_DIR}/"),
    examples=(f"{IMAGE_DIR}/<patientId>.dcm",))


def labels_of(target: int) -> np.ndarray:
    """int8[14] from Target by LABEL_MAP."""
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    for finding in LABEL_MAP["Target"]:
        labels[FINDINGS.index(finding)] = POSITIVE if target else NEGATIVE
    return labels


def read_labels(path: str) -> dict[str, tuple[int, common.Boxes]]:
    """patientId -> (Target, its boxes as x_min, y_min, x_max, y_max), in file order; a row
    that is not a box with Target 1 or a box-less Target 0, or an image with both, raises."""
    rows = common.read_csv(path)
    common.require_columns(rows, COLUMNS, path)
    targets: dict[str, int] = {}
    boxes: dict[str, list[list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        image_id, target = row["patientId"].strip(), row["Target"].strip()
        cells = [row[k].strip() for k in ("x", "y", "width", "height")]
        try:
            box = [float(v) for v in cells] if target == "1" else None
            valid = target in ("0", "1") and (box is not None or not any(cells))
        except ValueError:
            valid = False
        if not valid or targets.setdefault(image_id, int(target)) != int(target):
            raise ValueError(f"{path} line {line}: expected a box with Target 1 or a row without "
                             f"box with Target 0 (and one Target per patientId); got {row}")
        if box is not None:
            x, y, w, h = box
            boxes.setdefault(image_id, []).append([x, y, x + w, y + h])
    return {image_id: (target, _boxes(boxes.get(image_id, [])))
            for image_id, target in targets.items()}


def _boxes(xyxy: list[list[float]]) -> common.Boxes:
    return common.Boxes(np.array(xyxy, np.float32).reshape(-1, 4), (BOX_LABEL,) * len(xyxy),
                        (0,) * len(xyxy))


class RsnaPneumonia(common.RealCxrBuilder):
    """RSNA Pneumonia: 26,684 frontal radiographs, pneumonia Target and opacity boxes."""

    name = "chexficient_rsna_pneumonia"
    MASK_CHANNELS = (BOX_LABEL,)
    """Names of the mask channels, in order (the segmentation adapter's targets name them)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the RSNA Pneumonia Detection Challenge data from Kaggle
    (rsna-pneumonia-detection-challenge: stage_2_train_labels.csv and stage_2_train_images)
    and pass the folder holding them with --manual_dir:

    {LAYOUT.tree("MANUAL_DIR")}
    """
    LAYOUT = LAYOUT

    def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"boxes": common.boxes_feature(),
                "mask": common.mask_feature(self.builder_config.image_size, 1)}

    def split_entries(self, root: str) -> dict[str, common.SplitEntries]:
        self._labels = read_labels(os.path.join(root, LABELS_CSV))
        ids = list(self._labels)
        LAYOUT.check(root, probes=[f"{IMAGE_DIR}/{image_id}.dcm" for image_id in ids[:1]])

        def entry_of(image_id: str, tally: common.SplitTally) -> common.Entry | None:
            if not tally.keep_view("frontal", "PA/AP", self.builder_config.views):
                return None  # RSNA holds frontal (PA / AP) views only
            return common.Entry(id=image_id, report="", view="frontal",
                                path=os.path.join(root, IMAGE_DIR, f"{image_id}.dcm"),
                                labels=labels_of(self._labels[image_id][0]))

        return common.entries_by_split(
            ids, lambda image_id: common.carve_split(image_id, SPLIT_FRACTIONS, "train"), entry_of)

    def load(self, entry: common.Entry) -> dict:
        return common.record_with_boxes(entry, self._labels[entry.id][1],
                                        self.builder_config.image_size, self.dataset_name, 1)
