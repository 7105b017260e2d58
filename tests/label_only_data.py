"""Label-only real datasets in their real layouts, big enough to train and bench on: a CheXpert
release (train.csv, valid.csv, test_labels.csv and JPEGs) and an RSNA Pneumonia copy (the
labels CSV with boxes and DICOMs), built into a data dir as `chexficient data build` does."""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from chexficient.data import registry
from chexficient.findings import FINDINGS
from tests import real_fixtures as rf

CHEXPERT, RSNA = "chexpert/frontal", "rsna_pneumonia/frontal"
CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]
RSNA_HEADER = ["patientId", "x", "y", "width", "height", "Target"]


def _picture(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    image = rf.gradient(size, size)
    y, x = rng.integers(4, size // 2, 2)
    image[y: y + size // 4, x: x + size // 4] = 250  # a bright patch, somewhere else each time
    return image


def write_chexpert(root: str, *, train: int = 24, valid: int = 4, test: int = 12,
                   seed: int = 0) -> str:
    """A CheXpert-v1.0-small release of frontal images with seeded random labels (both
    classes of every finding in each split); returns the release folder."""
    rng = np.random.default_rng(seed)
    release = os.path.join(root, "CheXpert-v1.0-small")

    def rows(split: str, count: int, first: int) -> list[list]:
        out = []
        for k in range(count):
            path = f"{split}/patient{first + k:05d}/study1/view1_frontal.jpg"
            rf.write_jpeg(os.path.join(release, path), _picture(rng))
            cells = [("1.0" if k % 2 else "0.0") if rng.random() < 0.5 else
                     rng.choice(["1.0", "0.0"]) for _ in FINDINGS]
            out.append([f"CheXpert-v1.0-small/{path}", "Female", 60, "Frontal", "AP", *cells])
        return out

    rf.write_csv(os.path.join(release, "train.csv"), CHEXPERT_HEADER, rows("train", train, 1))
    rf.write_csv(os.path.join(release, "valid.csv"), CHEXPERT_HEADER, rows("valid", valid, 64541))
    studies = []
    for k in range(test):
        study = f"test/patient{64741 + k:05d}/study1"
        rf.write_jpeg(os.path.join(release, study, "view1_frontal.jpg"), _picture(rng))
        studies.append([f"CheXpert-v1.0/{study}", *[(k + j) % 2 for j in range(len(FINDINGS))]])
    rf.write_csv(os.path.join(release, "test_labels.csv"), ["Study", *FINDINGS], studies)
    return release


def write_rsna(root: str, count: int = 48, seed: int = 0) -> str:
    """An RSNA Pneumonia copy: every other image with one opacity box (Target 1), the rest
    Target 0 rows without a box; returns the folder."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        image_id = f"{k:08x}-14fd-4e49-80ba-63a80b6bddd6"
        rf.write_dicom(os.path.join(root, "stage_2_train_images", f"{image_id}.dcm"),
                       _picture(rng, 64).astype(np.uint16) * 16, window=(2048, 4096),
                       ViewPosition="PA")
        rows.append([image_id, 10, 12, 24, 20, 1] if k % 2 else [image_id, "", "", "", "", 0])
    rf.write_csv(os.path.join(root, "stage_2_train_labels.csv"), RSNA_HEADER, rows)
    return root


def build(name: str, manual_dir: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds dataset `name` from `manual_dir` into `data_dir`, as `chexficient data build`."""
    builder = registry.get_builder(name, data_dir)
    builder.download_and_prepare(file_format=registry.FILE_FORMAT,
                                 download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def tokenizer_files(builder: tfds.core.DatasetBuilder) -> list[str]:
    """The tokenizers stored in a built dataset's folder (none for a label-only one)."""
    return [f for f in os.listdir(builder.data_dir) if f.startswith("tokenizer")]
