"""A picture of records: a grid of images with mask outlines and the start of each impression."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence

import numpy as np

from chexficient.io import write_atomic

MASK_COLORS = ("#4fc3f7", "#81c784", "#ffb74d", "#e57373")
"""Outline colours of mask channels (synthetic: left lung, right lung, heart, pathology)."""


def save_grid(records: Sequence[dict], path: str, n: int = 16, *, caption_chars: int = 90) -> None:
    """Draws the first `n` records in a square grid and writes a PNG to `path` atomically.

    Each cell shows the image, its mask channels as outlines (when the record has a mask)
    and a caption: the record id, its quality when not good, and the impression's start.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = list(records)[:n]
    if not records:
        raise ValueError(f"no records to draw into {path}")
    cols = math.ceil(math.sqrt(len(records)))
    rows = math.ceil(len(records) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, records):
        ax.imshow(np.asarray(record["image"]), cmap="gray", vmin=0, vmax=255)
        if "mask" in record:
            mask = np.asarray(record["mask"])
            mask = mask[..., None] if mask.ndim == 2 else mask
            for c in range(mask.shape[-1]):
                if mask[..., c].any():
                    ax.contour(mask[..., c], levels=[0.5], colors=MASK_COLORS[c % len(MASK_COLORS)],
                               linewidths=0.6)
        ax.set_title(_caption(record, caption_chars), fontsize=6.5, loc="left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def _caption(record: dict, chars: int) -> str:
    text = _text(record.get("report", ""))
    impression = text.split("IMPRESSION:", 1)[-1].strip() or text
    head = _text(record.get("id", ""))
    quality = _text(record.get("quality", "good"))
    if quality and quality != "good":
        head += f" [{quality}]"
    body = impression if len(impression) <= chars else impression[: chars - 1] + "…"
    return head + "\n" + "\n".join(textwrap.wrap(body, 42)[:3])


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
