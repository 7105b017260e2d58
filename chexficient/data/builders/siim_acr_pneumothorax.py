"""TFDS builder `siim_acr_pneumothorax`: SIIM-ACR Pneumothorax (stage 1) from the user's copy.

Each image's pneumothorax mask is the union of its rows in train-rle.csv (SIIM's relative,
column-major run-length encoding; '-1' is an empty mask), resized with the image into a
1-channel `mask`. Labels: Pneumothorax 1 when the mask is not empty, else 0; the rest
unmentioned. Only the train images carry labels: train / validation / test are carved out of
them by image id (70 / 15 / 15 %, stable). There are no reports (report = '').
"""

from __future__ import annotations

import os
import numpy as np
import tensorflow_datasets as tfds

from chexficient.data.builders import _common as common
from chexficient.findings import FINDINGS, NEGATIVE, NUM_FINDINGS, POSITIVE, UNMENTIONED

RLE_CSV, DICOM_DIR = "train-rle.csv", "dicom-images-train"
EMPTY = "-1"

LABEL_MAP: dict[str, str] = {"pneumothorax mask": "Pneumothorax"}
"""SIIM's one label -> finding: a non-empty mask is Pneumothorax 1, an empty one 0; the
other findings are unmentioned (-2)."""

SPLIT_FRACTIONS = {"test": 0.15, "validation": 0.15}
"""Shares of images (by image id hash) carved out of the labeled train set; `train` is the rest."""

LAYOUT = common.Layout(
    dataset="siim_acr_pneumothorax",
    required=(RLE_CSV, f"{DICOM_DIR}/"),
    examples=(f"{DICOM_DIR}/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm",))


def parse_rle(cell: str, where: str) -> np.ndarray:
    """The integers of one EncodedPixels cell ((offset, length) pairs); '-1' gives none."""
    cell = cell.strip()
    if cell == EMPTY:
        return np.zeros(0, np.int64)
    try:
        values = np.array(cell.split(), dtype=np.int64)
        valid = values.size > 0 and values.size % 2 == 0 and (values >= 0).all()
    except ValueError:  # not integers
        valid = False
    if not valid:
        raise ValueError(f"{where}: EncodedPixels {cell[:40]!r} is not '-1' or pairs of "
                         "non-negative integers (offset, length)")
    return values


def decode_rle(pairs: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 height x width mask from SIIM's RLE: each pair is (offset from the end of the
    previous run, run length) over the image flattened column by column."""
    flat = np.zeros(width * height, np.uint8)
    position = 0
    for offset, length in np.reshape(pairs, (-1, 2)):
        position += int(offset)
        if position + length > flat.size:
            raise ValueError(f"run at {position} of length {length} passes the end of the "
                             f"{width} x {height} image")
        flat[position:position + length] = 1
        position += int(length)
    return flat.reshape(width, height).T


def labels_of(has_pneumothorax: bool) -> np.ndarray:
    """int8[14]: Pneumothorax 1 or 0 (see LABEL_MAP), all else unmentioned."""
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    finding = FINDINGS.index(LABEL_MAP["pneumothorax mask"])
    labels[finding] = POSITIVE if has_pneumothorax else NEGATIVE
    return labels


def find_dicoms(folder: str) -> dict[str, str]:
    """ImageId -> path of every .dcm under `folder` (nested study / series folders)."""
    found = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".dcm"):
                found[name[:-len(".dcm")]] = os.path.join(parent, name)
    return found


class SiimAcrPneumothorax(common.RealCxrBuilder):
    """SIIM-ACR Pneumothorax: 10,675 frontal radiographs with pneumothorax masks."""

    name = "chexficient_siim_acr_pneumothorax"
    MASK_CHANNELS = (LABEL_MAP["pneumothorax mask"],)
    """Names of the mask channels, in order (the segmentation adapter's targets name them)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the SIIM-ACR Pneumothorax Segmentation stage 1 data (train-rle.csv and
    dicom-images-train; e.g. Kaggle's siim-acr-pneumothorax-segmentation mirrors) and pass
    the folder holding them with --manual_dir:

    {LAYOUT.tree("MANUAL_DIR")}
    """
    LAYOUT = LAYOUT

    def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
        return {"mask": common.mask_feature(self.builder_config.image_size, 1)}

    def split_entries(self, root: str) -> dict[str, common.SplitEntries]:
        path = os.path.join(root, RLE_CSV)
        rows = common.read_csv(path)
        common.require_columns(rows, ("ImageId", "EncodedPixels"), path)
        self._runs: dict[str, list[np.ndarray]] = {}
        for line, row in enumerate(rows, start=2):
            pairs = parse_rle(row["EncodedPixels"], f"{path} line {line}")
            self._runs.setdefault(row["ImageId"].strip(), []).append(pairs)
        dicoms = find_dicoms(os.path.join(root, DICOM_DIR))
        if self._runs and not dicoms:
            first = next(iter(self._runs))
            raise LAYOUT.missing(root, f"{DICOM_DIR}/<StudyInstanceUID>/<SeriesInstanceUID>/"
                                       f"{first}.dcm")
        def entry_of(image_id: str, tally: common.SplitTally) -> common.Entry | None:
            if not tally.keep_view("frontal", "PA/AP", self.builder_config.views):
                return None  # SIIM holds frontal views only
            return common.Entry(
                id=image_id, report="", view="frontal",
                path=dicoms.get(image_id,
                                os.path.join(root, DICOM_DIR, "*", "*", f"{image_id}.dcm")),
                labels=labels_of(any(p.size for p in self._runs[image_id])))

        return common.entries_by_split(
            self._runs, lambda image_id: common.carve_split(image_id, SPLIT_FRACTIONS, "train"),
            entry_of)

    def load(self, entry: common.Entry) -> dict:
        image, mask, _ = common.image_and_mask(entry.path, self.builder_config.image_size,
                                               lambda shape: self._mask(entry, shape))
        return {**entry.record(image, self.dataset_name), "mask": mask}

    def _mask(self, entry: common.Entry, shape: tuple[int, int]) -> np.ndarray:
        """Union of the image's RLE rows at its own (rows, columns), as H x W x 1."""
        height, width = shape
        mask = np.zeros(shape, np.uint8)
        for pairs in self._runs[entry.id]:
            try:
                mask |= decode_rle(pairs, width, height)
            except ValueError as e:
                raise common.ImageError(f"{RLE_CSV} mask of {entry.id}: {e}") from None
        return mask[..., None]
