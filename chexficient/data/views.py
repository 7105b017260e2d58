"""Frontal or lateral from the pixels of a chest radiograph, or unknown when they do not say.

For datasets whose metadata give no view (Open-I). A frontal (PA / AP) radiograph shows two
dark lung fields either side of a bright mediastinum and spine, mirror-symmetric about the
midline; a lateral shows one lung field across the middle, the spine to one side. Two
statistics of the column profile of the mid-chest band (the rows from 30 to 65 % of the
body's height, on the body's bounding box) measure that:

* `ridge`: how far the brightest column of the middle fifth rises above the darker of the
  two lung troughs (15-45 % and 55-85 % of the width), over the profile's range: about 0.7
  on frontals, 0.1 on laterals.
* `symmetry`: the correlation of the profile with its mirror image: about 0.9 on frontals,
  0.3 on laterals.

`infer_view` calls a radiograph frontal only when both say so, lateral only when both say
so, and unknown otherwise: a builder never states a view the image does not show. The
thresholds and the measured accuracy on synthetic frontals and laterals, clean and
perturbed: `python benchmarks/view_inference.py` (docs/datasets.md, Open-I).
"""

from __future__ import annotations

import dataclasses

import numpy as np

FRONTAL_RIDGE, FRONTAL_SYMMETRY = 0.35, 0.6
"""A frontal has a ridge and a symmetry at least these."""
LATERAL_RIDGE, LATERAL_SYMMETRY = 0.25, 0.6
"""A lateral has a ridge below LATERAL_RIDGE and a symmetry below LATERAL_SYMMETRY."""
_BACKGROUND = 8.0
"""Rows and columns darker than this on average (8-bit) are padding or collimation."""


@dataclasses.dataclass(frozen=True)
class ViewStatistics:
    """The two statistics `infer_view` decides on (see the module docstring)."""

    ridge: float
    symmetry: float

    def view(self) -> str:
        """'frontal', 'lateral' or 'unknown'."""
        if self.ridge >= FRONTAL_RIDGE and self.symmetry >= FRONTAL_SYMMETRY:
            return "frontal"
        if self.ridge < LATERAL_RIDGE and self.symmetry < LATERAL_SYMMETRY:
            return "lateral"
        return "unknown"


_BLANK = ViewStatistics(float("nan"), float("nan"))
"""What a (nearly) blank or flat image shows: nothing (NaN statistics, view unknown)."""


def view_statistics(image: np.ndarray) -> ViewStatistics:
    """The ridge and symmetry of a grey uint8 H x W radiograph (any size, padded or not)."""
    x = np.asarray(image, np.float64)
    if x.ndim != 2 or min(x.shape) < 16:
        raise ValueError(f"expected a grey image of at least 16 x 16 pixels, got {x.shape}")
    rows, cols = np.flatnonzero(x.mean(1) > _BACKGROUND), np.flatnonzero(x.mean(0) > _BACKGROUND)
    if rows.size < 16 or cols.size < 16:
        return _BLANK
    x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape
    profile = x[int(0.30 * h):max(int(0.65 * h), int(0.30 * h) + 1)].mean(0)
    k = 2 * (w // 64) + 1  # odd: the smoothing keeps the profile's mirror symmetry
    profile = np.convolve(profile, np.ones(k) / k, mode="same")
    at = (np.arange(w) + 0.5) / w
    span = profile.max() - profile.min()
    if span < 1e-6:
        return _BLANK
    troughs = max(profile[(at > 0.15) & (at < 0.45)].min(), profile[(at > 0.55) & (at < 0.85)].min())
    ridge = (profile[(at > 0.4) & (at < 0.6)].max() - troughs) / span
    symmetry = float(np.corrcoef(profile, profile[::-1])[0, 1])
    return ViewStatistics(float(ridge), symmetry)


def infer_view(image: np.ndarray) -> str:
    """'frontal', 'lateral' or 'unknown' for a grey uint8 radiograph."""
    return view_statistics(image).view()
