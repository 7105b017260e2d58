"""TFDS builder `vindr_cxr`: VinDr-CXR (PhysioNet 1.0.0) from the user's copy.

Each train image was read by three radiologists (rows of image_labels_train.csv, one per
rad_id), each test image by a consensus (one row). Labels: per rater, the VinDr columns
map onto the 14 findings by `LABEL_MAP` (a finding is positive for a rater when any of its
columns is), then raters are aggregated by the config's rule: `majority` (positive when more
than half the raters say so; the default) or `any` (positive when one does). Findings VinDr
does not grade are unmentioned. Unmapped labels go to `extra_labels` ("unmapped": aggregated
positives; "votes": raters marking each label; "raters"). Boxes (annotations_*.csv) become
`boxes` and a `mask` with one channel per local class in `LOCAL_CLASSES`, a pixel set when
the raters whose boxes of that class cover it pass the same rule. Splits: train (less a 10 %
validation carve-out by image id) and the official test. There are no reports.
"""

from __future__ import annotations

import dataclasses
import os
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from chexficient.data.builders import _common as common
from chexficient.findings import FINDINGS, NEGATIVE, NUM_FINDINGS, POSITIVE, UNMENTIONED

LABEL_MAP: dict[str, str | None] = {
    "Aortic enlargement": None,
    "Atelectasis": "Atelectasis",
    "Calcification": None,
    "Cardiomegaly": "Cardiomegaly",
    "Clavicle fracture": "Fracture",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Emphysema": None,
    "Enlarged PA": None,
    "ILD": None,
    "Infiltration": "Lung Opacity",
    "Lung Opacity": "Lung Opacity",
    "Lung cavity": None,
    "Lung cyst": None,
    "Mediastinal shift": None,
    "Nodule/Mass": "Lung Lesion",
    "Pleural effusion": "Pleural Effusion",
    "Pleural thickening": "Pleural Other",
    "Pneumothorax": "Pneumothorax",
    "Pulmonary fibrosis": None,
    "Rib fracture": "Fracture",
    "Other lesion": None,
    "COPD": None,
    "Lung tumor": "Lung Lesion",
    "Pneumonia": "Pneumonia",
    "Tuberculosis": None,
    "Other disease": None,
    "Other diseases": None,
    "No finding": "No Finding",
}
"""VinDr label column -> finding (None: no counterpart, kept in extra_labels). Every rater
grades every column, so reached findings are 0 or 1; Enlarged Cardiomediastinum and Support
Devices are not graded (-2). Columns missing from this table are kept as unmapped."""

LOCAL_CLASSES = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung cavity",
    "Lung cyst", "Lung Opacity", "Mediastinal shift", "Nodule/Mass", "Other lesion",
    "Pleural effusion", "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture")
"""The 22 box classes of annotations_*.csv, in mask channel order."""

NO_BOX_CLASS = "No finding"
AGGREGATES = ("majority", "any")
KEY_COLUMNS = ("image_id", "rad_id")
BOX_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
VALIDATION_FRACTION = 0.1
"""Share of the train images (by image id hash: stable) moved to `validation`."""

LAYOUT = common.Layout(
    dataset="vindr_cxr",
    required=("annotations/image_labels_train.csv", "annotations/annotations_train.csv", "train/"),
    optional=("annotations/image_labels_test.csv", "annotations/annotations_test.csv", "test/"),
    examples=("train/<image_id>.dicom", "test/<image_id>.dicom"))


@dataclasses.dataclass(eq=False)
class VindrConfig(common.RealCxrConfig):
    """Adds how raters are combined: 'majority' (more than half) or 'any' (at least one)."""

    aggregate: str = "majority"

    def __post_init__(self):
        super().__post_init__()
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")


def passes(votes: np.ndarray, raters: int, aggregate: str) -> np.ndarray:
    """Whether `votes` of `raters` make a positive under the rule `aggregate`."""
    return votes * 2 > raters if aggregate == "majority" else votes >= 1


@dataclasses.dataclass(frozen=True)
class Reading:
    """One image's graded labels: columns, 0/1 votes per rater [raters, columns], rater ids."""

    columns: tuple[str, ...]
    votes: np.ndarray
    raters: tuple[str, ...]


def read_readings(path: str) -> dict[str, Reading]:
    """image_labels_*.csv -> each image's rows (one per rad_id; a consensus file may have no
    rad_id column) as 0/1 votes; a cell that is not 0 or 1 raises, naming file and line."""
    rows = common.read_csv(path)
    common.require_columns(rows, ("image_id",), path)
    columns = tuple(c for c in (rows[0] if rows else {}) if c not in KEY_COLUMNS)
    for column in columns:
        if column not in LABEL_MAP:
            logging.warning("%s: column %r is not in the VinDr label table; kept as unmapped",
                            path, column)
    grouped: dict[str, tuple[list[str], list[list[int]]]] = {}
    for line, row in enumerate(rows, start=2):
        values = []
        for column in columns:
            value = common.label_value(row[column], f"{path} line {line} column {column!r}")
            if value not in (POSITIVE, NEGATIVE):
                raise ValueError(f"{path} line {line} column {column!r}: expected 0 or 1, "
                                 f"got {row[column]!r}")
            values.append(value)
        raters, votes = grouped.setdefault(row["image_id"].strip(), ([], []))
        raters.append(row.get("rad_id", "").strip())
        votes.append(values)
    return {image_id: Reading(columns, np.array(votes, np.int64), tuple(raters))
            for image_id, (raters, votes) in grouped.items()}


def aggregate_labels(reading: Reading, aggregate: str) -> tuple[np.ndarray, str]:
    """int8[14] labels and the extra_labels JSON of one image (see the module docstring)."""
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    n = len(reading.raters)
    for finding in {f for c in reading.columns if (f := LABEL_MAP.get(c))}:
        mapped = [i for i, c in enumerate(reading.columns) if LABEL_MAP.get(c) == finding]
        votes = reading.votes[:, mapped].max(axis=1).sum()  # a rater votes once per finding
        labels[FINDINGS.index(finding)] = POSITIVE if passes(votes, n, aggregate) else NEGATIVE
    column_votes = reading.votes.sum(axis=0)
    unmapped = [c for c, v in zip(reading.columns, column_votes)
                if not LABEL_MAP.get(c) and passes(v, n, aggregate)]
    votes = {c: int(v) for c, v in zip(reading.columns, column_votes) if v}
    return (common.no_finding_consistent(labels),
            common.extra_json(unmapped, votes=votes, raters=n, aggregate=aggregate))


@dataclasses.dataclass(frozen=True)
class RaterBoxes:
    """One image's boxes and, for each, the rater who drew it."""

    boxes: common.Boxes
    raters: tuple[str, ...]


def read_boxes(path: str) -> dict[str, RaterBoxes]:
    """annotations_*.csv -> boxes per image ('No finding' rows carry none); an unknown class
    or a class row without coordinates raises, naming file and line."""
    rows = common.read_csv(path)
    common.require_columns(rows, BOX_COLUMNS, path)
    found: dict[str, list[tuple[list[float], str, str]]] = {}
    for line, row in enumerate(rows, start=2):
        name = row["class_name"].strip()
        if name == NO_BOX_CLASS:
            continue
        try:
            box = [float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
            LOCAL_CLASSES.index(name)
        except ValueError:
            raise ValueError(f"{path} line {line}: expected a class of {LOCAL_CLASSES} or "
                             f"{NO_BOX_CLASS!r} with x_min, y_min, x_max, y_max; got {row}"
                             ) from None
        found.setdefault(row["image_id"].strip(), []).append(
            (box, name, row.get("rad_id", "").strip()))
    return {image_id: RaterBoxes(
        common.Boxes(np.array([b for b, _, _ in items], np.float32),
                     tuple(n for _, n, _ in items),
                     tuple(LOCAL_CLASSES.index(n) for _, n, _ in items)),
        tuple(r for _, _, r in items)) for image_id, items in found.items()}


def vote_mask(xyxy: np.ndarray, boxes: RaterBoxes, raters: int, aggregate: str, size: int
              ) -> np.ndarray:
    """size x size x len(LOCAL_CLASSES) from the image's boxes `xyxy` (mapped onto the stored
    image): 1 where the raters whose boxes of the class cover the pixel pass the rule (each
    rater counted once, however many of its boxes overlap)."""
    votes = np.zeros((size, size, len(LOCAL_CLASSES)), np.int64)
    for rater in dict.fromkeys(boxes.raters):
        own = [i for i, r in enumerate(boxes.raters) if r == rater]
        votes += common.rasterize_boxes(xyxy[own], [boxes.boxes.channels[i] for i in own],
                                        (size, size), len(LOCAL_CLASSES))
    return passes(votes, raters, aggregate).astype(np.uint8)


class VindrCxr(common.RealCxrBuilder):
    """VinDr-CXR: 18,000 frontal radiographs graded by radiologists, with lesion boxes."""

    name = "chexficient_vindr_cxr"
    MASK_CHANNELS = LOCAL_CLASSES
    """Names of the mask channels, in order (the segmentation adapter's targets name them)."""

    BUILDER_CONFIGS = common.default_configs(VindrConfig) + [
        VindrConfig(name="frontal_any", description="Frontal views; a label or box pixel is "
                    "positive when any rater marks it.", aggregate="any")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download VinDr-CXR 1.0.0 from PhysioNet (https://physionet.org/content/vindr-cxr/, after
    credentialing and signing its data use agreement) and pass the release folder with
    --manual_dir:

    {LAYOUT.tree("MANUAL_DIR")}
    """
    LAYOUT = LAYOUT

    def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"boxes": common.boxes_feature(),
                "mask": common.mask_feature(self.builder_config.image_size, len(LOCAL_CLASSES))}

    def split_entries(self, root: str) -> dict[str, common.SplitEntries]:
        self._readings: dict[str, Reading] = {}
        self._boxes: dict[str, RaterBoxes] = {}
        folders: dict[str, str] = {}  # image id -> its folder: train or test
        for part in ("train", "test"):
            labels_path = os.path.join(root, "annotations", f"image_labels_{part}.csv")
            if part == "test" and not os.path.exists(labels_path):
                continue
            readings = read_readings(labels_path)
            LAYOUT.check(root, probes=[f"{part}/{i}.dicom" for i in list(readings)[:1]])
            boxes_path = os.path.join(root, "annotations", f"annotations_{part}.csv")
            if os.path.exists(boxes_path):  # required for train by LAYOUT
                self._boxes.update(read_boxes(boxes_path))
            self._readings.update(readings)
            folders.update(dict.fromkeys(readings, part))

        def split_of(image_id: str) -> str:
            if folders[image_id] == "test":
                return "test"
            return common.carve_split(image_id, {"validation": VALIDATION_FRACTION}, "train")

        def entry_of(image_id: str, tally: common.SplitTally) -> common.Entry | None:
            if not tally.keep_view("frontal", "PA", self.builder_config.views):
                return None  # VinDr holds frontal (PA) views only
            labels, extra = aggregate_labels(self._readings[image_id],
                                             self.builder_config.aggregate)
            return common.Entry(id=image_id, report="", view="frontal", labels=labels,
                                path=os.path.join(root, folders[image_id], f"{image_id}.dicom"),
                                extra_labels=extra)

        return common.entries_by_split(folders, split_of, entry_of)

    def load(self, entry: common.Entry) -> dict:
        boxes = self._boxes.get(entry.id, RaterBoxes(common.Boxes.empty(), ()))
        raters = len(self._readings[entry.id].raters)
        size, aggregate = self.builder_config.image_size, self.builder_config.aggregate
        return common.record_with_boxes(
            entry, boxes.boxes, size, self.dataset_name, len(LOCAL_CLASSES),
            mask_of=lambda xyxy: vote_mask(xyxy, boxes, raters, aggregate, size))
