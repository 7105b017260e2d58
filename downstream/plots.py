"""The suite's figures: AUROC per finding across checkpoints, and segmentation overlays.

Headless (Agg) matplotlib; files are written atomically (chexficient.io).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from chexficient.io import write_atomic  # noqa: E402

OVERLAY_COLOURS = ((0.1, 0.6, 1.0), (1.0, 0.3, 0.2), (0.2, 0.9, 0.3), (1.0, 0.8, 0.1))


def _save(fig: plt.Figure, path: str) -> None:
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    write_atomic(path, buffer.getvalue())


def auroc_per_finding(path: str, values: dict[str, dict[str, float]], title: str) -> None:
    """Grouped horizontal bars: one group per finding, one bar per checkpoint (NaN bars empty)."""
    columns = list(values)
    names = list(dict.fromkeys(n for col in columns for n in values[col]))
    height = 0.8 / max(len(columns), 1)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) * max(len(columns), 1) + 1.5))
    y = np.arange(len(names))
    for i, col in enumerate(columns):
        ax.barh(y + i * height, [values[col].get(n, np.nan) for n in names], height, label=col)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y + 0.4 - height / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AUROC")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    _save(fig, path)


def segmentation_overlays(path: str, images: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                          target_names: Sequence[str]) -> None:
    """Rows of images: ground-truth contours (left) and predicted masks (right), per target."""
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(5, 2.5 * n), squeeze=False)
    for row, (image, t, p) in enumerate(zip(images, truth, pred)):
        for col, (mask, label) in enumerate(((t, "truth"), (p, "prediction"))):
            ax = axes[row, col]
            ax.imshow(image[..., 0], cmap="gray")
            overlay = np.zeros(image.shape[:2] + (4,))
            for k in range(mask.shape[-1]):
                overlay[mask[..., k].astype(bool)] = (*OVERLAY_COLOURS[k % 4], 0.35)
            ax.imshow(overlay)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(f"{label}: " + ", ".join(target_names), fontsize="small")
    _save(fig, path)
