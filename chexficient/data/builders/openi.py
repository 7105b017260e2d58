"""TFDS builder `openi`: the Indiana University chest X-ray collection (Open-I), XML reports.

Each ecgen-radiology/<n>.xml report gives FINDINGS and IMPRESSION (AbstractText elements by
Label), MeSH major / minor terms and its images (parentImage ids, PNGs in NLMCXR_png/).
Labels: MeSH terms mapped by `MESH_TABLE` are positive; every other finding takes the
rule-based labeler's reading of the report text, and findings neither mentions are negative
when the table can express them (MeSH indexes what was seen), else unmentioned. Unmapped MeSH
terms go to extra_labels. Neither the XML nor the file order gives the view: it is read from
the pixels (`chexficient.data.views`: frontal, lateral, or unknown when they do not say) and
its statistics kept in extra_labels["view_statistics"]. No official split: `train`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import xml.etree.ElementTree as ElementTree
from typing import Any

import numpy as np

from chexficient import labeler
from chexficient.data import views
from chexficient.data.builders import _common
from chexficient.findings import POSITIVE, UNMENTIONED

REPORTS = "ecgen-radiology"
IMAGES = "NLMCXR_png"

LAYOUT = _common.Layout(
    "Open-I (Indiana University CXR)",
    required=(f"{REPORTS}/", f"{IMAGES}/"),
    examples=(f"{REPORTS}/1.xml", f"{IMAGES}/CXR1_1_IM-0001-3001.png"))

MESH_TABLE: dict[str, str | None] = {
    "normal": "No Finding",
    "cardiomegaly": "Cardiomegaly",
    "cardiac shadow/enlarged": "Cardiomegaly",
    "mediastinum/enlarged": "Enlarged Cardiomediastinum",
    "opacity": "Lung Opacity",
    "infiltrate": "Lung Opacity",
    "airspace disease": "Lung Opacity",
    "nodule": "Lung Lesion",
    "mass": "Lung Lesion",
    "pulmonary edema": "Edema",
    "edema": "Edema",
    "consolidation": "Consolidation",
    "pneumonia": "Pneumonia",
    "pulmonary atelectasis": "Atelectasis",
    "atelectases": "Atelectasis",
    "atelectasis": "Atelectasis",
    "pneumothorax": "Pneumothorax",
    "pleural effusion": "Pleural Effusion",
    "pleura/thickening": "Pleural Other",
    "thickening/pleura": "Pleural Other",
    "fractures, bone": "Fracture",
    "catheters, indwelling": "Support Devices",
    "implanted medical device": "Support Devices",
    "medical device": "Support Devices",
    "tube, inserted": "Support Devices",
    "pacemaker, artificial": "Support Devices",
    "granulomatous disease": None,
    "calcified granuloma": None,
}
"""MeSH term (lower case; a key matches a term equal to it or starting with it + '/', the
longest key winning: 'Opacity/lung/base/left' -> Lung Opacity) -> finding, None for a term
known to have no counterpart. Unmatched terms go to extra_labels as well."""


def mesh_heading(term: str) -> str | None:
    """The MESH_TABLE key that matches `term` (longest first), None when none does."""
    term = term.strip().lower()
    keys = [k for k in MESH_TABLE if term == k or term.startswith(k + "/")]
    return max(keys, key=len) if keys else None


def mesh_labels(terms: list[str], text_labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(labels, unmapped terms): MeSH positives first, then the text's labels, then the
    MeSH table's negatives (see the module docstring)."""
    names = [mesh_heading(term) or term for term in terms]
    mesh, _ = _common.labels_from_names(names, MESH_TABLE)
    labels = np.where(mesh == POSITIVE, mesh, np.where(text_labels != UNMENTIONED, text_labels,
                                                       mesh)).astype(np.int8)
    unmapped = [term for term, name in zip(terms, names) if not MESH_TABLE.get(name)]
    return _common.no_finding_consistent(labels), unmapped


def parse_xml(path: str) -> tuple[str, list[str], list[str]]:
    """(findings + impression, MeSH major and minor terms, parentImage ids) of one report."""
    root = ElementTree.parse(path).getroot()
    sections = {e.get("Label", "").upper(): e.text or "" for e in root.iter("AbstractText")}
    report = _common.join_report(sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""))
    terms = [e.text.strip() for tag in ("major", "minor") for e in root.iter(tag)
             if e.text and e.text.strip()]
    images = [e.get("id", "") for e in root.iter("parentImage") if e.get("id")]
    return report, terms, images


class Openi(_common.RealCxrBuilder):
    """Open-I: Indiana University chest radiographs with reports and MeSH-derived labels."""

    name = "chexficient_openi"

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download NLMCXR_reports.tgz and NLMCXR_png.tgz from
    https://openi.nlm.nih.gov/faq (collection "Indiana University Chest X-ray"); extract the
    reports so that the XML files are in {REPORTS}/ and the PNGs into {IMAGES}/:

    {LAYOUT.tree("openi")}
    """
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        paths = sorted(glob.glob(os.path.join(root, REPORTS, "*.xml")),
                       key=lambda p: (len(os.path.basename(p)), os.path.basename(p)))
        if not paths:
            raise LAYOUT.missing(root, f"{REPORTS}/1.xml")
        return {"train": self._entries(root, paths)}

    def load(self, entry: _common.Entry) -> dict[str, Any]:
        """The record with the view its pixels show; a view the config does not keep is
        filtered out here, once the image is read."""
        image = _common.load_image(entry.path, self.builder_config.image_size)
        statistics = views.view_statistics(image)
        view = statistics.view()
        if view not in self.builder_config.views:
            raise _common.Filtered(f"view {view} (from the pixels)")
        extra = {**json.loads(entry.extra_labels), "view_statistics": {
            name: round(value, 3) if math.isfinite(value) else None
            for name, value in dataclasses.asdict(statistics).items()}}
        entry = dataclasses.replace(entry, view=view, extra_labels=_common.extra_json(**extra))
        return entry.record(image, self.dataset_name)

    def _entries(self, root: str, paths: list[str]) -> _common.SplitEntries:
        def entries(tally: _common.SplitTally):
            for path in paths:
                try:
                    report, terms, images = parse_xml(path)
                except ElementTree.ParseError as e:
                    tally.skip(os.path.basename(path), path, f"cannot parse the XML report: {e}")
                    continue
                if not images:
                    tally.filter("report without images")
                    continue
                labels, unmapped = mesh_labels(terms, labeler.label([report])[0])
                extra = _common.extra_json(unmapped, mesh=terms)
                for image_id in images:  # the view is read from the pixels in `load`
                    yield _common.Entry(
                        id=image_id, path=os.path.join(root, IMAGES, image_id + ".png"),
                        report=report, labels=labels, view="unknown", extra_labels=extra)
        return entries
