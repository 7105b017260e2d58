"""Frontal or lateral from the pixels of a chest radiograph, or unknown when they do not say.

For datasets whose metadata give no view (Open-I). A frontal (PA / AP) radiograph shows two
dark lung fields either side of a bright mediastinum and spine, mirror-symmetric about the
midline; a lateral shows one lung field across the middle, the spine to one side and the
heart low and in front. Two statistics of column profiles (mean grey level per column, on
the body's bounding box) measure that:

* `ridge`, over the upper chest (rows 25-55 % of the body's height, above a lateral's heart
  and domes): how far the middle tenth of the width rises above the darker of the two lung
  troughs (the minima over 15-45 % and 55-85 % of the width), over the profile's range:
  about 0.6 on frontals, under 0.1 on most laterals.
* `symmetry`, over the mid chest (rows 30-65 %): the correlation of the profile with its
  mirror image: about 0.9 on frontals, 0.3 on laterals.

`infer_view` calls a radiograph frontal only when both say so, lateral only when the ridge
is missing, and unknown otherwise: a builder never states a view the image does not show.
Thresholds and measured accuracy on synthetic frontals and laterals, as rendered and
perturbed: `python benchmarks/view_inference.py` (docs/datasets.md, Open-I).
"""

from __future__ import annotations

import dataclasses

import numpy as np

FRONTAL_RIDGE, FRONTAL_SYMMETRY = 0.3, 0.7
"""A frontal has a ridge and a symmetry at least these."""
LATERAL_RIDGE = 0.1
"""A lateral has a ridge below this."""
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
        if self.ridge < LATERAL_RIDGE:
            return "lateral"
        return "unknown"


_BLANK = ViewStatistics(float("nan"), float("nan"))
"""What a (nearly) blank or flat image shows: nothing (NaN statistics, view unknown)."""


def _profile(body: np.ndarray, top: float, bottom: float) -> np.ndarray:
    """Mean grey level per column of rows top..bottom (fractions of the height), smoothed
    over an odd window with the edges repeated (which keeps a profile's mirror symmetry and
    a flat profile flat)."""
    h, w = body.shape
    profile = body[int(top * h):max(int(bottom * h), int(top * h) + 1)].mean(0)
    k = 2 * (w // 64) + 1
    return np.convolve(np.pad(profile, k // 2, mode="edge"), np.ones(k) / k, mode="valid")


def view_statistics(image: np.ndarray) -> ViewStatistics:
    """The ridge and symmetry of a grey uint8 H x W radiograph (any size, padded or not)."""
    x = np.asarray(image, np.float64)
    if x.ndim != 2 or min(x.shape) < 16:
        raise ValueError(f"expected a grey image of at least 16 x 16 pixels, got {x.shape}")
    rows, cols = np.flatnonzero(x.mean(1) > _BACKGROUND), np.flatnonzero(x.mean(0) > _BACKGROUND)
    if rows.size < 16 or cols.size < 16:
        return _BLANK
    body = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    upper, middle = _profile(body, 0.25, 0.55), _profile(body, 0.30, 0.65)
    span = upper.max() - upper.min()
    if span < 1e-6 or np.ptp(middle) < 1e-6:
        return _BLANK
    at = (np.arange(body.shape[1]) + 0.5) / body.shape[1]
    troughs = max(upper[(at > 0.15) & (at < 0.45)].min(), upper[(at > 0.55) & (at < 0.85)].min())
    ridge = (upper[(at > 0.45) & (at < 0.55)].mean() - troughs) / span
    return ViewStatistics(float(ridge), float(np.corrcoef(middle, middle[::-1])[0, 1]))


def infer_view(image: np.ndarray) -> str:
    """'frontal', 'lateral' or 'unknown' for a grey uint8 radiograph."""
    return view_statistics(image).view()
