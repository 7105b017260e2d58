"""Views read from the pixels: synthetic frontals and laterals of the same 3D phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from chexficient.data.views import infer_view, view_statistics
from real_fixtures import synthetic_radiographs


def test_laterals_are_never_called_frontal_nor_frontals_lateral():
    images, truth = synthetic_radiographs()
    got = np.array([infer_view(image) for image in images])
    assert (truth == "lateral").sum() >= 5 and (truth == "frontal").sum() >= 30
    assert not np.any((truth == "lateral") & (got == "frontal"))
    assert not np.any((truth == "frontal") & (got == "lateral"))
    assert (got[truth == "frontal"] == "frontal").mean() >= 0.8  # the rest: unknown
    assert (got[truth == "lateral"] == "lateral").mean() >= 0.6


def test_statistics_ignore_mirroring_padding_and_size():
    images, _ = synthetic_radiographs()
    for image in images[:8]:
        stats = view_statistics(image)
        padded = np.pad(image, ((10, 30), (40, 0)))
        for other in (image[:, ::-1], padded, np.kron(image, np.ones((2, 2), np.uint8))):
            assert view_statistics(other).ridge == pytest.approx(stats.ridge, abs=0.08)
            assert view_statistics(other).symmetry == pytest.approx(stats.symmetry, abs=0.08)


@pytest.mark.parametrize("image", [np.zeros((64, 64), np.uint8), np.full((64, 64), 200, np.uint8)])
def test_blank_images_show_no_view(image):
    assert infer_view(image) == "unknown"


def test_a_non_image_is_a_clear_error():
    with pytest.raises(ValueError, match="grey image"):
        view_statistics(np.zeros((64, 64, 3), np.uint8))
