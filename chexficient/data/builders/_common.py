"""What the real-dataset builders share: config, features, manual-dir layout checks, image
reading (8/16-bit PNG, JPEG, DICOM windowing) with resize-and-pad, label tables, report
sections, and the per-split tally of skipped and filtered images.

Records follow the dataset contract (chexficient/data/records.py) plus `extra_labels`: a JSON
object whose "unmapped" list keeps the dataset's original labels that have no place among the
14 findings (never dropped silently); builders may add more keys to it.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import pydicom
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from chexficient.data.builders import BUILD_SOURCE, TFDS_PREFIX
from chexficient.findings import (FINDINGS, NEGATIVE, NO_FINDING, NUM_FINDINGS, POSITIVE,
                                  SUPPORT_DEVICES, UNCERTAIN, UNMENTIONED)
from chexficient.io import write_atomic

VIEWS = ("frontal", "lateral", "unknown")
"""Record views; `unknown` only where neither metadata nor pixels say (Open-I)."""

# ----------------------------------------------------------------------------- config, features


@dataclasses.dataclass(eq=False)
class RealCxrConfig(tfds.core.BuilderConfig):
    """Image side S (stored S x S, aspect kept by padding) and the views kept."""

    image_size: int = 256
    views: tuple[str, ...] = ("frontal",)

    def __post_init__(self):
        unknown = set(self.views) - set(VIEWS)
        if unknown or not self.views:
            raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {self.views}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must lie in [32, 1024], got {self.image_size}")


def default_configs(config_class: type[RealCxrConfig] = RealCxrConfig, **fields
                    ) -> list[RealCxrConfig]:
    """The two configs every real builder offers: `frontal` (default) and `all_views`."""
    return [config_class(name="frontal", description="Frontal views (PA / AP).", **fields),
            config_class(name="all_views", description="Frontal and lateral views.",
                         views=VIEWS, **fields)]


def features(image_size: int, **more: tfds.features.FeatureConnector
             ) -> tfds.features.FeaturesDict:
    """The record contract's features at `image_size`, plus `extra_labels` and `more`."""
    text = tfds.features.Text()
    return tfds.features.FeaturesDict({
        "id": text,
        "image": tfds.features.Tensor(shape=(image_size, image_size), dtype=np.uint8,
                                      encoding=tfds.features.Encoding.BYTES),
        "report": text,
        "labels": tfds.features.Tensor(shape=(NUM_FINDINGS,), dtype=np.int8),
        "view": text,
        "source": text,
        "extra_labels": text,
        **more,
    })


# ----------------------------------------------------------------------------- manual-dir layout


class ManualDirError(FileNotFoundError):
    """The manual directory lacks an expected file; the message draws the expected layout."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """Expected layout of a manual directory: `required` paths (checked in order), `optional`
    ones and `examples` (one of many files, placeholders in <>), drawn as a tree on error."""

    dataset: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    alternatives: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Other names a required path may have (another mirror's file name)."""

    def check(self, root: str, probes: Sequence[str] = ()) -> None:
        """Raises ManualDirError naming the first missing required path, then probe path
        (files the dataset's own index lists, e.g. its first image)."""
        for relative in (*self.required, *probes):
            if self.find(root, relative) is None:
                raise self.missing(root, relative)

    def find(self, root: str, relative: str) -> str | None:
        """The path of `relative` under `root`, or of the first of its alternatives there;
        None when none exists."""
        for name in (relative, *self.alternatives.get(relative, ())):
            if os.path.exists(os.path.join(root, name)):
                return os.path.join(root, name)
        return None

    def missing(self, root: str, relative: str) -> ManualDirError:
        """The error for `relative` (under `root`) not being there."""
        return ManualDirError(
            f"{self.dataset}: the manual directory is missing {os.path.join(root, relative)}\n"
            f"expected layout (--manual_dir={root}):\n{self.tree(root)}")

    def tree(self, root: str) -> str:
        """The layout as a tree drawing rooted at `root`."""
        nodes: dict[str, Any] = {}
        notes = {p: "" for p in self.required}
        notes.update({p: "  (optional)" for p in self.optional})
        notes.update({p: "  (one of many)" for p in self.examples})
        notes.update({p: f"  (or {' or '.join(names)})" for p, names in self.alternatives.items()})
        for path, note in notes.items():
            parts = path.rstrip("/").split("/")
            node = nodes
            for i, part in enumerate(parts):
                is_dir = i < len(parts) - 1 or path.endswith("/")
                node = node.setdefault(part + ("/" if is_dir else ""), {})
            node[""] = note
        return "\n".join([root.rstrip("/") + "/", *_draw(nodes, "")])


def _draw(nodes: dict[str, Any], indent: str) -> list[str]:
    names = [n for n in nodes if n]
    lines = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        branch = "└── " if last else "├── "
        lines.append(f"{indent}{branch}{name}{nodes[name].get('', '')}")
        lines += _draw(nodes[name], indent + ("    " if last else "│   "))
    return lines


def manual_dir(dl_manager: tfds.download.DownloadManager, layout: Layout) -> str:
    """The manual directory as a string; a missing or empty one raises the layout error."""
    # tfds exposes the path only through a property that raises a bare AssertionError when
    # the folder is missing or empty: read the configured path to draw the layout instead.
    root = os.fspath(dl_manager._manual_dir or "")  # noqa: SLF001
    if not root or not os.path.isdir(root) or not os.listdir(root):
        error = layout.missing(root or "MANUAL_DIR", layout.required[0])
        raise ManualDirError(f"{error}\n(give the folder holding your copy with --manual_dir)")
    return root


# ----------------------------------------------------------------------------- tables, files


def open_text(path: str) -> io.TextIOBase:
    """A text handle on `path`, gunzipped when it ends in .gz (MIMIC's .csv.gz)."""
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@contextlib.contextmanager
def utf8_named(path: str) -> Iterator[None]:
    """Turns a UnicodeDecodeError while reading `path` into a ValueError naming the file."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.object[e.start:e.end]!r} at "
                         f"offset {e.start} of a chunk): re-save it as UTF-8") from None


def csv_header(path: str) -> list[str]:
    """The column names of a CSV (optionally gzipped), stripped of surrounding spaces (SIIM's
    ' EncodedPixels'); an unnamed first column (PadChest's index) is ''."""
    with utf8_named(path), open_text(path) as f:
        return [name.strip() for name in next(csv.reader(f), [])]


def read_csv(path: str, required: Sequence[str] | None = None, optional: Sequence[str] = ()
             ) -> list[dict[str, str]]:
    """The rows of `numbered_rows` without their line numbers."""
    return [row for _, row in numbered_rows(path, required, optional)]


def numbered_rows(path: str, required: Sequence[str] | None = None,
                  optional: Sequence[str] = ()) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV (optionally gzipped), rows as dicts keyed by `csv_header`.
    With `required`, only those columns and the `optional` ones present are kept (big tables
    stay small); a missing required column, or a row with too few or too many cells (a stray comma would
    shift the columns), raises ValueError naming the file and line. Unnamed columns at the
    end of the header (a trailing comma) may be absent from rows and are never kept."""
    header = csv_header(path)
    named = len(header)
    while named and not header[named - 1]:
        named -= 1
    names = header[:named] if required is None else [
        *required, *(c for c in optional if c in header)]
    lacking = [c for c in names if c not in header]
    if lacking:
        raise ValueError(f"{path}: missing columns {lacking}; it has {header}")
    columns = [header.index(c) for c in names]
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # long report cells
    rows = []
    with utf8_named(path), open_text(path) as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if not row:
                continue
            if not named <= len(row) <= len(header):
                raise ValueError(f"{path} line {reader.line_num}: {len(row)} cells, the header "
                                 f"has {len(header)}{_cell_hint(len(row) > len(header))}")
            rows.append((reader.line_num, {name: row[i] for name, i in zip(names, columns)}))
    return rows


def _cell_hint(too_many: bool) -> str:
    """What to look for in a row of the wrong width."""
    return (" (a comma in a cell that is not quoted? quote that cell)" if too_many else
            " (a truncated or hand-edited line?)")


def require_columns(rows: list[dict[str, str]], columns: Iterable[str], path: str) -> None:
    """Raises ValueError naming the file and the columns a table read whole lacks."""
    have = set(rows[0]) if rows else set()
    lacking = [c for c in columns if c not in have]
    if rows and lacking:
        raise ValueError(f"{path}: missing columns {lacking}; it has {sorted(have)}")


UNLABELED = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
UNLABELED.flags.writeable = False
"""Labels of an image its dataset did not label: all unmentioned."""

_LABEL_VALUES = {"1": POSITIVE, "1.0": POSITIVE, "0": NEGATIVE, "0.0": NEGATIVE,
                 "-1": UNCERTAIN, "-1.0": UNCERTAIN, "": UNMENTIONED}


def label_value(value: str | float | int | None, where: str = "") -> int:
    """A CheXpert-style cell (1.0 / 0.0 / -1.0 / blank, or numbers and None from JSON) as the
    record encoding; anything else raises ValueError naming `where`."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNMENTIONED
    key = str(value).strip()
    if key in _LABEL_VALUES:
        return _LABEL_VALUES[key]
    try:
        return _LABEL_VALUES[str(float(key))]
    except (ValueError, KeyError):
        raise ValueError(f"{where}: label {value!r} is not one of 1, 0, -1 or blank") from None


def labels_from_columns(row: Mapping[str, Any], where: str = "") -> np.ndarray:
    """int8[14] from a row keyed by the 14 finding names (a CheXpert-style label table)."""
    return np.array([label_value(row.get(name), f"{where} column {name!r}") for name in FINDINGS],
                    dtype=np.int8)


def labels_from_names(names: Iterable[str], table: Mapping[str, str | None]
                      ) -> tuple[np.ndarray, list[str]]:
    """Labels from a dataset's list of positive label names and its mapping table (name ->
    finding, or None for no counterpart). Findings the table can express are negative unless
    named, the others unmentioned; No Finding is negative when another finding other than
    Support Devices is positive. Returns (labels, names with no finding, in order)."""
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    labels[[FINDINGS.index(f) for f in set(table.values()) if f]] = NEGATIVE
    unmapped = []
    for name in names:
        finding = table.get(name)
        if finding:
            labels[FINDINGS.index(finding)] = POSITIVE
        elif name not in unmapped:
            unmapped.append(name)
    return no_finding_consistent(labels), unmapped


def no_finding_consistent(labels: np.ndarray) -> np.ndarray:
    """Sets No Finding to negative when a finding other than Support Devices is positive or
    uncertain (the CheXpert rule); leaves it alone otherwise."""
    labels = labels.copy()
    others = np.delete(labels, [NO_FINDING, SUPPORT_DEVICES])
    if np.any((others == POSITIVE) | (others == UNCERTAIN)):
        labels[NO_FINDING] = NEGATIVE
    return labels


def extra_json(unmapped: Sequence[str] = (), **more: Any) -> str:
    """The `extra_labels` text: {"unmapped": [...], **more} as compact, key-sorted JSON."""
    return json.dumps({"unmapped": list(unmapped), **more}, sort_keys=True, ensure_ascii=False)


_VIEW_CODES = {
    "frontal": ("PA", "AP", "FRONTAL", "AP_HORIZONTAL", "AP HORIZONTAL", "PA LLD", "PA RLD",
                "AP LLD", "AP RLD", "AP AXIAL", "AP_AXIAL", "POSTEROANTERIOR", "ANTEROPOSTERIOR"),
    "lateral": ("LATERAL", "LL", "RL", "L", "XTABLE LATERAL", "LAT"),
}
_VIEW_OF = {code: view for view, codes in _VIEW_CODES.items() for code in codes}


def view_of(code: str) -> str | None:
    """'frontal' / 'lateral' from a dataset's projection code (MIMIC ViewPosition, PadChest
    Projection, CheXpert Frontal/Lateral, ...); None for oblique, swimmer's or unknown codes."""
    return _VIEW_OF.get(code.strip().upper())


# ----------------------------------------------------------------------------- reports

_UNDERSCORE_LINE = re.compile(r"^[ \t]*_{8,}[ \t]*$", re.MULTILINE)
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]*[A-Z)])[ \t]*:", re.MULTILINE)
_SECTION_ALIASES = {"FINDING": "FINDINGS", "FINDINGS": "FINDINGS", "IMPRESSION": "IMPRESSION",
                    "IMPRESSIONS": "IMPRESSION", "CONCLUSION": "IMPRESSION",
                    "CONCLUSIONS": "IMPRESSION", "FINAL IMPRESSION": "IMPRESSION",
                    "SUMMARY": "IMPRESSION", "FINDINGS AND IMPRESSION": "IMPRESSION",
                    "FINDINGS/IMPRESSION": "IMPRESSION", "FINDINGS / IMPRESSION": "IMPRESSION",
                    "IMPRESSION AND FINDINGS": "IMPRESSION", "ADDENDUM": "ADDENDUM"}
"""Header -> section; a combined findings-and-impression header is IMPRESSION, as in MIT-LCP's
MIMIC-CXR section parser (the report text joins both sections either way)."""
_TOP_LEVEL = frozenset({
    *_SECTION_ALIASES, "INDICATION", "INDICATIONS", "CLINICAL INDICATION", "HISTORY",
    "CLINICAL HISTORY", "PATIENT HISTORY", "CLINICAL INFORMATION", "REASON FOR EXAM",
    "REASON FOR EXAMINATION", "COMPARISON", "COMPARISONS", "COMPARISON EXAM", "COMPARISON FILM",
    "REFERENCE EXAM", "TECHNIQUE", "EXAMINATION", "EXAM", "TYPE OF EXAMINATION", "NOTIFICATION",
    "RECOMMENDATION", "RECOMMENDATIONS", "RECOMMENDATION(S)", "WET READ", "DATE", "COMMENT",
    "PROCEDURE"})
"""Headers that open a section of their own; any other header after FINDINGS, IMPRESSION or
ADDENDUM (LUNGS:, PLEURA:, LINES/TUBES:) is a sub-header whose text stays in that section."""
_BODY_SECTIONS = frozenset(("FINDINGS", "IMPRESSION", "ADDENDUM"))


def clean_text(text: str) -> str:
    """Whitespace runs (newlines, indentation) collapsed to single spaces, ends stripped."""
    return " ".join(text.split())


def section_headers(text: str) -> list[tuple[re.Match, str]]:
    """The headers of `text` that open a section, each with its section name (aliases
    folded); sub-headers inside FINDINGS / IMPRESSION / ADDENDUM are left out (see
    _TOP_LEVEL), so their text, header included, stays in that section."""
    out, current = [], ""
    for match in _HEADER.finditer(text):
        header = clean_text(match.group(1))
        if current in _BODY_SECTIONS and header not in _TOP_LEVEL:
            continue
        current = _SECTION_ALIASES.get(header, header)
        out.append((match, current))
    return out


def sections(text: str) -> dict[str, str]:
    """Sections of a free-text report keyed by their upper-case header (`FINDINGS:` at the
    start of a line; aliases such as IMPRESSIONS / CONCLUSION folded), text before the first
    header under ''. A header seen twice has its texts joined."""
    out: dict[str, str] = {}
    headers = section_headers(text)
    matches = [m for m, _ in headers]
    names = [""] + [name for _, name in headers]
    bodies = [text[:matches[0].start() if matches else len(text)]]
    bodies += [text[m.end():(matches[i + 1].start() if i + 1 < len(matches) else len(text))]
               for i, m in enumerate(matches)]
    for name, body in zip(names, bodies):
        body = clean_text(body)
        if body:
            out[name] = f"{out[name]} {body}" if name in out else body
    return out


@dataclasses.dataclass(frozen=True)
class ReportParts:
    """Findings, impression and addenda of one report (each '' when absent)."""

    findings: str
    impression: str
    addenda: str

    def text(self) -> str:
        """Pretraining text: findings, impression, then addenda; '' when neither of the
        first two is there (an addendum alone does not make a report)."""
        if not (self.findings or self.impression):
            return ""
        return join_report(self.findings, self.impression, self.addenda)


def parse_report(text: str) -> ReportParts:
    """FINDINGS and IMPRESSION of a free-text report, and its addenda: each block after a line
    of underscores. An addendum's own FINDINGS / IMPRESSION join the report's; the rest of its
    text (bar 'FINAL REPORT' / 'FINAL ADDENDUM' banners) is kept as addendum text."""
    findings, impression, addenda = [], [], []
    for i, block in enumerate(_UNDERSCORE_LINE.split(text)):
        parts = sections(re.sub(r"(?m)^[ \t]*FINAL (?:REPORT|ADDENDUM)[ \t]*$", "", block))
        findings.append(parts.get("FINDINGS", ""))
        impression.append(parts.get("IMPRESSION", ""))
        if i and not (parts.get("FINDINGS") or parts.get("IMPRESSION")):
            addenda.append(join_report(parts.get("", ""), parts.get("ADDENDUM", "")))
        elif "ADDENDUM" in parts:
            addenda.append(parts["ADDENDUM"])
    return ReportParts(join_report(*findings), join_report(*impression), join_report(*addenda))


def join_report(*parts: str) -> str:
    """Non-empty parts, cleaned, joined by single spaces."""
    return " ".join(p for p in (clean_text(part) for part in parts) if p)


# ----------------------------------------------------------------------------- images


class ImageError(ValueError):
    """An image file that cannot be read or decoded; the message names it."""


def resize_with_pad(array: np.ndarray, size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """`array` (uint8 H x W, or H x W x C of 0/1 masks with resample=NEAREST) scaled so its
    long side is `size`, aspect kept, centred on a zero S x S (x C) canvas."""
    h, w = array.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    channels = array[..., None] if array.ndim == 2 else array
    out = np.zeros((size, size, channels.shape[-1]), np.uint8)
    for c in range(channels.shape[-1]):
        resized = Image.fromarray(np.ascontiguousarray(channels[..., c], np.uint8)).resize(
            (new_w, new_h), resample)
        out[top:top + new_h, left:left + new_w, c] = np.asarray(resized)
    return out[..., 0] if array.ndim == 2 else out


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 as is; any other range stretched linearly from its min..max onto 0..255."""
    if pixels.dtype == np.uint8:
        return pixels
    pixels = pixels.astype(np.float64)
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if high <= low:
        return np.zeros(pixels.shape, np.uint8)
    return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)


def read_picture(path: str, size: int | None = None) -> np.ndarray:
    """Grayscale pixels of a PNG / JPEG (8 or 16 bit), as uint8 or uint16 H x W. With `size`,
    JPEGs decode at the smallest DCT scale still at least `size` on each side (much faster)."""
    try:
        with Image.open(path) as image:
            if size and image.format == "JPEG":
                image.draft("L", (size, size))
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(image)
            return np.asarray(image.convert("L"))
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def read_dicom(path: str) -> np.ndarray:
    """uint8 H x W from a DICOM file: modality LUT (rescale), then the VOI LUT or the first
    window (center / width, DICOM's linear function) onto 0..255, else a min..max stretch;
    MONOCHROME1 (bright = low values) inverted so that bone is bright. A VOI LUT's output range
    (its descriptor's bit depth) maps onto 0..255."""
    try:
        ds = pydicom.dcmread(path)
        raw = ds.pixel_array
    except Exception as e:  # noqa: BLE001  (pydicom raises many types for a bad file)
        raise ImageError(f"cannot read DICOM {path}: {type(e).__name__}: {e}") from None
    if raw.ndim != 2:
        raise ImageError(f"DICOM {path}: expected one grayscale frame, got shape {raw.shape}")
    pixels = apply_modality_lut(raw, ds)
    if ds.get("VOILUTSequence"):  # a lookup table: indexed by whole numbers
        indices = np.round(pixels).astype(np.int64) if pixels.dtype.kind == "f" else pixels
        top = 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1.0  # its output range
        image = np.round(apply_voi_lut(indices, ds) * (255.0 / top)).astype(np.uint8)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        image = window(pixels, _first(ds.WindowCenter), _first(ds.WindowWidth))
    else:
        image = to_uint8(pixels)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        image = 255 - image
    return image


def _first(value: Any) -> float:
    """The first of a multi-valued DICOM element, else the value, as a float."""
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's linear VOI window (PS3.3 C.11.2.1.2.1) onto 0..255."""
    x = (pixels.astype(np.float64) - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_image(path: str, size: int) -> np.ndarray:
    """uint8 size x size from a PNG / JPEG / DICOM file, aspect kept by padding."""
    if not os.path.isfile(path):
        raise ImageError(f"image file not found: {path}")
    pixels = read_dicom(path) if path.lower().endswith((".dcm", ".dicom")) else to_uint8(
        read_picture(path, size))
    return resize_with_pad(pixels, size)


# ----------------------------------------------------------------------------- emitting records


class Filtered(Exception):
    """Raised by a builder's `load` for a record left out once its image is seen (a view read
    from the pixels that the config does not keep); the message is the reason counted."""


@dataclasses.dataclass
class Entry:
    """One record to emit, all but its pixels (read at write time from `path`)."""

    id: str
    path: str
    report: str
    labels: np.ndarray
    view: str
    extra_labels: str = dataclasses.field(default_factory=extra_json)

    def record(self, image: np.ndarray, source: str) -> dict[str, Any]:
        """The contract's record with `image` (already S x S) and the dataset name."""
        return {"id": self.id, "image": image, "report": self.report, "labels": self.labels,
                "view": self.view, "source": source, "extra_labels": self.extra_labels}


def build_skips_path(builder_dir: str, split: str) -> str:
    """Where a build lists the images of `split` it skipped."""
    return os.path.join(builder_dir, f"build_skipped_{split}.tsv")


def build_summary_path(builder_dir: str, split: str) -> str:
    """Where a build stores what `split` kept, skipped and filtered out (JSON)."""
    return os.path.join(builder_dir, f"build_summary_{split}.json")


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in `path`; None when there is no such file (a build before these
    files existed, or a synthetic dataset)."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def build_notes(builder_dir: str, split: str) -> str:
    """What the build of `split` left out: ', N skipped at build time (listed in PATH),
    filtered out: {reason: count}'; '' for a dataset built without a summary."""
    summary = read_json(build_summary_path(builder_dir, split))
    if summary is None:
        return ""
    listed = f" (listed in {build_skips_path(builder_dir, split)})" if summary["skipped"] else ""
    return (f", {summary['skipped']} skipped at build time{listed}, filtered out: "
            f"{summary['filtered'] or 'none'}")


def unsplit_note(builder_dir: str) -> str:
    """'N rows in no split (reason: count, ...)' when the build's tables put rows in no
    split (NIH images in neither official list), else ''."""
    source = read_json(os.path.join(builder_dir, BUILD_SOURCE)) or {}
    unsplit = source.get("in_no_split") or {}
    if not unsplit:
        return ""
    reasons = ", ".join(f"{why}: {n}" for why, n in unsplit.items())
    return f"{sum(unsplit.values())} rows in no split, left out ({reasons})"


class SplitTally:
    """Counts what one split kept, filtered out (by reason) and skipped; lists each skip as
    `id<TAB>file<TAB>why` in <folder>/build_skipped_<split>.tsv (written atomically at close)."""

    def __init__(self, folder: str, dataset: str, split: str):
        self.path = build_skips_path(folder, split)
        self.dataset, self.split = dataset, split
        self.kept = 0
        self.filtered: collections.Counter[str] = collections.Counter()
        self.skipped: list[tuple[str, str, str]] = []

    def filter(self, reason: str) -> None:
        self.filtered[reason] += 1

    def skip(self, record_id: str, file: str, why: str) -> None:
        logging.warning("%s %s: skipping %s (%s): %s", self.dataset, self.split, record_id, file,
                        why)
        self.skipped.append((record_id, file, why))

    def keep_view(self, view: str | None, code: str, views: Sequence[str]) -> bool:
        """Whether a record of `view` (from projection `code`) is kept; counts the others."""
        if view in views:
            return True
        self.filter(f"view {view}" if view else f"view code {code!r}")
        return False

    def nothing_kept(self) -> str:
        """Why a split came out empty (TFDS cannot write an empty split)."""
        reasons = "; ".join(f"{i} ({f}): {why}" for i, f, why in self.skipped[:3])
        return (f"{self.dataset} {self.split}: no record to write; {len(self.skipped)} skipped"
                f"{' (first: ' + reasons + ')' if reasons else ''}, filtered out: "
                f"{dict(self.filtered) or 'none'}")

    def close(self) -> None:
        """Logs the summary and stores it beside the skip list (written when anything was
        skipped), for `chexficient data build` and `data stats` to show."""
        if self.skipped:
            lines = ["\t".join(s.replace("\t", " ").replace("\n", " ") for s in row)
                     for row in self.skipped]
            write_atomic(self.path, "id\tfile\twhy\n" + "\n".join(lines) + "\n")
        summary = {"records": self.kept, "skipped": len(self.skipped),
                   "filtered": dict(self.filtered.most_common())}
        write_atomic(build_summary_path(os.path.dirname(self.path), self.split),
                     json.dumps(summary, sort_keys=True) + "\n")
        logging.info("%s %s: %d records, %d skipped%s, filtered out: %s", self.dataset, self.split,
                     self.kept, len(self.skipped),
                     f" (listed in {self.path})" if self.skipped else "",
                     dict(self.filtered) or "none")


T = TypeVar("T")


def ordered_map(fn: Callable[[T], Any], items: Iterable[T], workers: int = 8,
                lookahead: int = 64) -> Iterator[tuple[T, Any]]:
    """(item, fn(item) or the exception it raised) in input order, computed by a thread pool
    (image decoding releases the GIL) with at most `lookahead` items in flight."""

    def call(item: T) -> Any:
        try:
            return fn(item)
        except Exception as e:  # noqa: BLE001  (handed back to the caller, which decides)
            return e

    iterator = iter(items)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque((item, pool.submit(call, item))
                                    for item in itertools.islice(iterator, lookahead))
        while pending:
            item, future = pending.popleft()
            for nxt in itertools.islice(iterator, 1):
                pending.append((nxt, pool.submit(call, nxt)))
            yield item, future.result()


def generate(entries: Iterable[Entry], tally: SplitTally, load: Callable[[Entry], dict[str, Any]]
             ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(id, load(entry)) per entry, in order, loaded in parallel; an entry whose image cannot be
    read (`load` raised ImageError) or whose id came before is skipped and tallied, one `load`
    left out after seeing its image (raised Filtered) is counted. Closes the tally at the end."""
    try:
        for entry, result in ordered_map(load, unique_ids(entries, tally)):
            if isinstance(result, ImageError):
                tally.skip(entry.id, entry.path, str(result))
                continue
            if isinstance(result, Filtered):
                tally.filter(str(result))
                continue
            if isinstance(result, Exception):
                raise result
            tally.kept += 1
            yield entry.id, result
        if not tally.kept:
            raise ManualDirError(tally.nothing_kept())
    finally:
        tally.close()


def unique_ids(entries: Iterable[Entry], tally: SplitTally) -> Iterator[Entry]:
    """`entries` less those whose id an earlier one has (a table listing an image twice), each
    skipped and tallied with the file of the first."""
    first: dict[str, str] = {}
    for entry in entries:
        if entry.id in first:
            tally.skip(entry.id, entry.path, f"duplicate id, first read from {first[entry.id]}")
            continue
        first[entry.id] = entry.path
        yield entry


SplitEntries = Callable[[SplitTally], Iterable[Entry]]
"""A split's entries, produced lazily; what is filtered (views) or skipped is tallied."""


class RealCxrBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the real-dataset builders: checks the manual dir against `LAYOUT`, asks
    `split_entries` for each split's entries and writes their records in order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = default_configs()
    LAYOUT: Layout

    @property
    def dataset_name(self) -> str:
        """Our name of the dataset (records' `source`): the TFDS name less `chexficient_`."""
        return self.name.removeprefix(TFDS_PREFIX)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features(self.builder_config.image_size, **self.extra_features()),
            disable_shuffling=True)

    def extra_features(self) -> dict[str, tfds.features.FeatureConnector]:
        """Features beyond the common ones (e.g. masks); none by default."""
        return {}

    @abc.abstractmethod
    def split_entries(self, root: str) -> dict[str, SplitEntries]:
        """Each split's entries, from the manual dir `root` (already checked against LAYOUT);
        rows put in no split are counted by reason in `self.unsplit`."""

    def load(self, entry: Entry) -> dict[str, Any]:
        """The record of `entry`: its image read, resized and padded; more fields in overrides."""
        return entry.record(load_image(entry.path, self.builder_config.image_size),
                            self.dataset_name)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = manual_dir(dl_manager, self.LAYOUT)
        self.LAYOUT.check(root)
        self.unsplit: collections.Counter[str] = collections.Counter()
        splits = self.split_entries(root)
        if self.unsplit:
            logging.warning("%s: rows in no split, left out: %s", self.dataset_name,
                            dict(self.unsplit))
        source = {"manual_dir": os.path.abspath(root), "in_no_split": dict(self.unsplit)}
        write_atomic(os.path.join(self.data_dir, BUILD_SOURCE),
                     json.dumps(source, sort_keys=True) + "\n")
        return {split: self._generate_examples(split, entries)
                for split, entries in splits.items()}

    def _generate_examples(self, split: str, entries: SplitEntries):
        tally = SplitTally(self.data_dir, self.dataset_name, split)
        yield from generate(entries(tally), tally, self.load)


# ------------------------------------------------------------------------ split by key, boxes, masks
# (appended by the builders of NIH ChestX-ray14, RSNA Pneumonia, SIIM-ACR and VinDr-CXR)


def key_fraction(key: str) -> float:
    """A stable number in [0, 1) from `key` (SHA-256; the same on every machine and run)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0 ** 64


def carve_split(key: str, fractions: Mapping[str, float], rest: str) -> str:
    """The split of `key` (a patient or image id): `fractions` (split -> share, in order) take
    consecutive slices of [0, 1) by `key_fraction`, `rest` takes what is left. Records of one
    key always land together, whatever else the dataset holds."""
    u, start = key_fraction(key), 0.0
    for split, share in fractions.items():
        if start <= u < start + share:
            return split
        start += share
    return rest


def boxes_feature() -> tfds.features.Sequence:
    """Boxes of a record: `bbox` float32 (x_min, y_min, x_max, y_max) in stored-image pixels
    (x right, y down, pixel i spanning [i, i + 1)) and the finding `label` of each."""
    return tfds.features.Sequence({"bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                                   "label": tfds.features.Text()})


def mask_feature(image_size: int, channels: int) -> tfds.features.Tensor:
    """uint8 S x S x C masks of 0/1, zlib-compressed (mostly zeros)."""
    return tfds.features.Tensor(shape=(image_size, image_size, channels), dtype=np.uint8,
                                encoding=tfds.features.Encoding.ZLIB)


def rasterize_boxes(boxes: np.ndarray, channels: Sequence[int], shape: tuple[int, int],
                    num_channels: int) -> np.ndarray:
    """uint8 H x W x C mask: 1 in channel `channels[i]` at the pixels whose centres lie in
    box i (x_min, y_min, x_max, y_max, in pixels); boxes are clipped to the image."""
    h, w = shape
    mask = np.zeros((h, w, num_channels), np.uint8)
    for (x0, y0, x1, y1), c in zip(np.reshape(boxes, (-1, 4)), channels):
        c0, c1 = (int(np.clip(np.ceil(v - 0.5), 0, w)) for v in (x0, x1))
        r0, r1 = (int(np.clip(np.ceil(v - 0.5), 0, h)) for v in (y0, y1))
        mask[r0:r1, c0:c1, c] = 1
    return mask


def resized_boxes(boxes: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Boxes (x_min, y_min, x_max, y_max) of an H x W image mapped as `resize_with_pad` maps
    its pixels onto the size x size canvas; float32 [n, 4]."""
    h, w = shape
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    factor = np.array([new_w / w, new_h / h] * 2, np.float64)
    shift = np.array([left, top] * 2, np.float64)
    return (np.reshape(boxes, (-1, 4)) * factor + shift).astype(np.float32)


def read_pixels(path: str) -> np.ndarray:
    """uint8 H x W at the file's own resolution (DICOM windowed, PNG / JPEG 8 or 16 bit). A
    DICOM file is known by its suffix or, whatever its name, by the DICM mark at byte 128."""
    if not os.path.isfile(path):
        raise ImageError(f"image file not found: {path}")
    if path.lower().endswith((".dcm", ".dicom")) or is_dicom(path):
        return read_dicom(path)
    return to_uint8(read_picture(path))


def is_dicom(path: str) -> bool:
    """Whether the file starts as a DICOM Part 10 file does: a 128-byte preamble, then b'DICM'."""
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def image_and_mask(path: str, size: int, mask_of: Callable[[tuple[int, int]], np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The image at `path` and the mask `mask_of(original (H, W))` (H x W x C of 0/1), both
    resized with pad to size x size by the same transform; also returns the original shape."""
    pixels = read_pixels(path)
    mask = mask_of(pixels.shape)
    if mask.shape[:2] != pixels.shape:
        raise ImageError(f"{path}: image is {pixels.shape} but its mask is {mask.shape[:2]}")
    return (resize_with_pad(pixels, size),
            resize_with_pad(mask, size, Image.NEAREST), pixels.shape)


@dataclasses.dataclass(frozen=True)
class Boxes:
    """Boxes of one image in its own pixels: (x_min, y_min, x_max, y_max) [n, 4], the label
    of each as the dataset writes it, and the mask channel each one paints."""

    xyxy: np.ndarray
    labels: tuple[str, ...]
    channels: tuple[int, ...]

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4), np.float32), (), ())


def record_with_boxes(entry: Entry, boxes: Boxes, size: int, source: str, num_channels: int,
                      mask_of: Callable[[np.ndarray], np.ndarray] | None = None
                      ) -> dict[str, Any]:
    """The entry's record plus `boxes` mapped onto the stored image as `resize_with_pad` maps
    its pixels, and `mask` painted from those mapped boxes at the stored size (never at the
    full resolution): by default each box into its channel, else `mask_of(mapped xyxy)`."""
    pixels = read_pixels(entry.path)
    mapped = resized_boxes(boxes.xyxy, pixels.shape, size)
    mask = (mask_of(mapped) if mask_of else
            rasterize_boxes(mapped, boxes.channels, (size, size), num_channels))
    return {**entry.record(resize_with_pad(pixels, size), source), "mask": mask,
            "boxes": {"bbox": mapped, "label": list(boxes.labels)}}


SPLIT_ORDER = ("train", "validation", "test")


def entries_by_split(items: Iterable[T], split_of: Callable[[T], str | None],
                     entry_of: Callable[[T, SplitTally], Entry | None]) -> dict[str, SplitEntries]:
    """Each split's lazy entries: items grouped by `split_of` (None: in no split, which
    `split_of` counts in the builder's `unsplit`), each made by `entry_of(item, tally)` when
    the split is written (None: filtered out, which `entry_of` counts in the tally). Splits
    come train, validation, test, then any other."""
    groups: dict[str, list[T]] = {}
    for item in items:
        split = split_of(item)
        if split is not None:
            groups.setdefault(split, []).append(item)

    def lazy(members: list[T]) -> SplitEntries:
        def entries(tally: SplitTally) -> Iterator[Entry]:
            for item in members:
                entry = entry_of(item, tally)
                if entry is not None:
                    yield entry
        return entries

    order = [s for s in SPLIT_ORDER if s in groups] + [s for s in groups if s not in SPLIT_ORDER]
    return {split: lazy(groups[split]) for split in order}
