"""siim_acr_pneumothorax on a tiny tree in the real layout: relative column-major RLE (union of
rows, '-1' empty, the CSV header's leading space), DICOM in nested folders, masks resized with
their images, stable carve-out splits, skips and layout errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chexficient.data.builders import _common
from chexficient.data.builders.siim_acr_pneumothorax import (SPLIT_FRACTIONS, SiimAcrPneumothorax,
                                                             decode_rle, parse_rle)
from chexficient.findings import FINDINGS
from tests import real_fixtures as rf

ROWS, COLS = 48, 64  # not square: a transposed decode or a wrong pad would show
IDS = [f"1.2.276.0.7230010.3.1.4.8323329.{n}.1517875{n}.{n}" for n in (5597, 4440, 1211, 3030, 77)]
PNEUMO, EMPTY, GARBAGE, MISSING, OVERFLOW = IDS


def encode_rle(mask: np.ndarray) -> str:
    """SIIM's encoding of an H x W 0/1 mask: column-major runs as (offset, length) pairs."""
    flat = np.concatenate([[0], mask.T.ravel(), [0]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[0::2], edges[1::2]
    offsets = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{o} {n}" for o, n in zip(offsets, ends - starts))


def _box(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[rows, cols] = 1
    return mask


def _dicom(root: str, image_id: str) -> str:
    return os.path.join(root, "dicom-images-train", f"1.2.276.0.7230010.3.1.2.{image_id[-4:]}",
                        f"1.2.276.0.7230010.3.1.3.{image_id[-4:]}", f"{image_id}.dcm")


def write_tree(root: str) -> str:
    rows = [(PNEUMO, " " + encode_rle(_box(slice(8, 16), slice(10, 20)))),
            (EMPTY, " -1"),
            (PNEUMO, " " + encode_rle(_box(slice(30, 38), slice(40, 50)))),  # a second row
            (GARBAGE, " -1"), (MISSING, " 1 5"), (OVERFLOW, f" {ROWS * COLS - 2} 5")]
    rf.write_csv(os.path.join(root, "train-rle.csv"), ["ImageId", " EncodedPixels"], rows)
    picture = rf.gradient(ROWS, COLS)
    rf.write_dicom(_dicom(root, PNEUMO), picture, ViewPosition="PA")
    rf.write_dicom(_dicom(root, EMPTY), 255 - picture, photometric="MONOCHROME1")
    rf.write_dicom(_dicom(root, OVERFLOW), picture)
    rf.write_dicom(_dicom(root, "1.2.3.unlabeled"), picture)  # no CSV row: not a record
    rf.write_garbage(_dicom(root, GARBAGE))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_tree(str(tmp_path_factory.mktemp("siim")))
    config = _common.RealCxrConfig(name="test", image_size=32)
    return rf.build(SiimAcrPneumothorax, config, root, str(tmp_path_factory.mktemp("data")))


def test_decode_is_relative_column_major_reshape_then_transpose():
    # width 3, height 4: runs cover flat 1-2 and 6, i.e. column 0 rows 1-2 and column 1 row 2
    mask = decode_rle(parse_rle(" 1 2 3 1", "x"), width=3, height=4)
    np.testing.assert_array_equal(mask, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    shape = np.random.default_rng(0).random((ROWS, COLS)) < 0.3
    np.testing.assert_array_equal(
        decode_rle(parse_rle(encode_rle(shape), "x"), COLS, ROWS), shape)
    assert parse_rle(" -1", "x").size == 0


@pytest.mark.parametrize("cell", ["1 2 3", "a b", "", "4 -2"])
def test_malformed_rle_names_the_line(cell):
    with pytest.raises(ValueError, match="train-rle.csv line 9: EncodedPixels"):
        parse_rle(cell, "train-rle.csv line 9")


def test_records_splits_and_skips(built):
    builder, records = built
    kept = {PNEUMO, EMPTY}
    for split, rows in records.items():
        for r in rows:
            assert _common.carve_split(r["id"], SPLIT_FRACTIONS, "train") == split
    assert set(rf.records_by_id(records)) == kept
    skipped = []
    for split in builder.info.splits:
        path = _common.build_skips_path(builder.data_dir, split)
        if os.path.exists(path):
            with open(path) as f:
                skipped += [line.split("\t") for line in f.read().splitlines()[1:]]
    assert sorted(s[0] for s in skipped) == sorted([GARBAGE, MISSING, OVERFLOW])
    assert any(s[0] == OVERFLOW and "passes the end" in s[2] for s in skipped)


def test_labels_and_fields(built):
    records = rf.records_by_id(built[1])
    pneumothorax = FINDINGS.index("Pneumothorax")
    for image_id, value in ((PNEUMO, 1), (EMPTY, 0)):
        labels = records[image_id]["labels"]
        assert labels[pneumothorax] == value
        assert (np.delete(labels, pneumothorax) == -2).all()
        assert records[image_id]["report"] == "" and records[image_id]["view"] == "frontal"
        assert json.loads(records[image_id]["extra_labels"]) == {"unmapped": []}


def test_mask_is_the_union_of_rows_resized_with_the_image(built):
    records = rf.records_by_id(built[1])
    # 48 x 64 -> 24 x 32 centred on 32 x 32: rows shift down by 4, everything halves
    want = np.zeros((32, 32, 1), np.uint8)
    want[4 + 4:4 + 8, 5:10] = 1
    want[4 + 15:4 + 19, 20:25] = 1
    np.testing.assert_array_equal(records[PNEUMO]["mask"], want)
    assert not records[EMPTY]["mask"].any()
    image = records[PNEUMO]["image"]
    assert not image[:4].any() and not image[-4:].any() and image[4:-4].any()
    # MONOCHROME1 stores bright as low: read back it matches the MONOCHROME2 picture
    np.testing.assert_allclose(records[EMPTY]["image"].astype(int), image.astype(int), atol=2)


def test_no_dicoms_names_the_first_expected_file(tmp_path):
    root = write_tree(str(tmp_path / "siim"))
    for parent, _, files in os.walk(os.path.join(root, "dicom-images-train")):
        for name in files:
            os.remove(os.path.join(parent, name))
    with pytest.raises(_common.ManualDirError, match=f"<SeriesInstanceUID>/{PNEUMO}.dcm"):
        rf.build(SiimAcrPneumothorax, _common.RealCxrConfig(name="test", image_size=32), root,
                 str(tmp_path / "data"))


def test_missing_csv_shows_the_layout(tmp_path):
    root = write_tree(str(tmp_path / "siim"))
    os.remove(os.path.join(root, "train-rle.csv"))
    with pytest.raises(_common.ManualDirError) as error:
        rf.build(SiimAcrPneumothorax, _common.RealCxrConfig(name="test", image_size=32), root,
                 str(tmp_path / "data"))
    assert f"missing {os.path.join(root, 'train-rle.csv')}" in str(error.value)
    assert "dicom-images-train/" in str(error.value)
