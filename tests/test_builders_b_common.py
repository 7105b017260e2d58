"""The shared builder helpers for splits by key, boxes and masks (_common, NIH / RSNA / SIIM /
VinDr section): stable carve-outs, pixel-centre box painting, the resize-with-pad box map."""

from __future__ import annotations

import numpy as np

from chexficient.data.builders import _common


def test_carve_split_is_stable_and_takes_its_share():
    keys = [f"patient{i}" for i in range(20000)]
    fractions = {"test": 0.15, "validation": 0.15}
    splits = [_common.carve_split(k, fractions, "train") for k in keys]
    assert splits == [_common.carve_split(k, fractions, "train") for k in keys]
    shares = {s: splits.count(s) / len(keys) for s in ("train", "validation", "test")}
    assert abs(shares["test"] - 0.15) < 0.01 and abs(shares["validation"] - 0.15) < 0.01
    assert abs(shares["train"] - 0.70) < 0.015
    assert _common.key_fraction("patient1") != _common.key_fraction("patient2")


def test_rasterize_paints_pixels_whose_centres_lie_in_the_box():
    mask = _common.rasterize_boxes(np.array([[0.4, 0.6, 2.5, 3.4], [3, -2, 9, 1]]), [0, 1],
                                   (4, 5), 2)
    want = np.zeros((4, 5, 2), np.uint8)
    want[1:3, 0:2, 0] = 1  # centres 0.5, 1.5 in x; 1.5, 2.5 in y
    want[0:1, 3:5, 1] = 1  # clipped to the image
    np.testing.assert_array_equal(mask, want)


def test_resized_boxes_follow_resize_with_pad():
    boxes = np.array([[0, 0, 64, 48], [10, 8, 20, 16]], np.float32)
    np.testing.assert_allclose(_common.resized_boxes(boxes, (48, 64), 32),
                               [[0, 4, 32, 28], [5, 8, 10, 12]])
    image = np.zeros((48, 64), np.uint8)
    image[8:16, 10:20] = 255
    resized = _common.resize_with_pad(image, 32)
    rows, cols = np.nonzero(resized > 127)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (8, 12, 5, 10)


def test_entries_by_split_groups_filters_and_orders():
    made = _common.entries_by_split(
        range(6), lambda i: (None, "test", "train", "extra", "validation", "train")[i],
        lambda i, tally: None if i == 5 else _common.Entry(
            id=str(i), path="", report="", labels=np.zeros(14, np.int8), view="frontal"))
    assert list(made) == ["train", "validation", "test", "extra"]
    tally = _common.SplitTally("/nonexistent", "d", "train")
    assert [e.id for e in made["train"](tally)] == ["2"]
    assert [e.id for e in made["test"](tally)] == ["1"]
