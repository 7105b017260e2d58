"""TFDS builder `padchest`: PadChest's 16-bit PNGs, Spanish reports and label lists.

The report is the CSV's preprocessed Spanish Report text, kept as is. Labels come from the
Labels column (a Python-list string such as "['normal', 'cardiomegaly']") through
`LABEL_TABLE`, which places every one of PadChest's 193 terms; terms with no counterpart
among the 14 findings are kept in extra_labels["unmapped"], terms the table does not know in
extra_labels["unknown"] (and then nothing on that row is negative). A row whose Labels cell is
blank, not a list or an empty list (`[]`) gets all -2. PadChest has no official split: every
image is in `train`. View from Projection (PA / AP / AP_horizontal frontal, L lateral).
"""

from __future__ import annotations

import ast
import os

import numpy as np

from chexficient.data.builders import _common
from chexficient.findings import (FINDINGS, NEGATIVE, NUM_FINDINGS, POSITIVE, UNCERTAIN,
                                  UNMENTIONED)

TABLE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"

LAYOUT = _common.Layout(
    "PadChest",
    required=(TABLE,),
    examples=("0/<ImageID>.png", "54/<ImageID>.png"))

# The 14 findings against PadChest's 193 label terms, read with the PadChest label tree
# (Bustos et al. 2020: a child term implies its parents, e.g. 'hydropneumothorax' ->
# pleural effusion and pneumothorax, 'air bronchogram' -> consolidation -> infiltrates).
_POSITIVE: dict[str, tuple[str, ...]] = {
    "No Finding": ("normal",),
    "Enlarged Cardiomediastinum": (
        "mediastinal enlargement", "superior mediastinal enlargement", "mediastinal mass",
        "goiter", "aortic aneurysm"),
    "Cardiomegaly": ("cardiomegaly",),
    "Lung Opacity": (
        "infiltrates", "alveolar pattern", "ground glass pattern", "increased density",
        "interstitial pattern", "reticular interstitial pattern",
        "reticulonodular interstitial pattern", "miliary opacities", "consolidation",
        "air bronchogram", "fibrotic band", "pulmonary fibrosis", "lymphangitis carcinomatosa"),
    "Lung Lesion": (
        "nodule", "multiple nodules", "pulmonary mass", "mass", "lung metastasis", "cavitation",
        "abscess", "granuloma", "calcified granuloma", "lepidic adenocarcinoma"),
    "Edema": ("pulmonary edema", "heart insufficiency", "kerley lines"),
    "Consolidation": ("consolidation", "air bronchogram"),
    "Pneumonia": ("pneumonia", "atypical pneumonia"),
    "Atelectasis": (
        "atelectasis", "atelectasis basal", "laminar atelectasis", "lobar atelectasis",
        "segmental atelectasis", "round atelectasis", "total atelectasis"),
    "Pneumothorax": ("pneumothorax", "hydropneumothorax"),
    "Pleural Effusion": (
        "pleural effusion", "loculated pleural effusion", "loculated fissural effusion",
        "hydropneumothorax", "empyema"),
    "Pleural Other": (
        "pleural thickening", "apical pleural thickening", "calcified pleural thickening",
        "pleural plaques", "calcified pleural plaques", "pleural mass"),
    "Fracture": (
        "fracture", "rib fracture", "callus rib fracture", "clavicle fracture", "humeral fracture",
        "vertebral fracture"),
    "Support Devices": (
        "pacemaker", "dual chamber device", "single chamber device", "electrical device", "dai",
        "endotracheal tube", "nsg tube", "tracheostomy tube", "chest drain tube",
        "gastrostomy tube", "nephrostomy tube", "ventriculoperitoneal drain tube", "catheter",
        "central venous catheter", "central venous catheter via jugular vein",
        "central venous catheter via subclavian vein",
        "central venous catheter via umbilical vein", "reservoir central venous catheter",
        "artificial heart valve", "artificial mitral heart valve",
        "artificial aortic heart valve", "double j stent", "aortic endoprosthesis",
        "endoprosthesis", "prosthesis", "humeral prosthesis", "osteosynthesis material",
        "suture material", "bone cement"),
}
"""Terms that make a finding positive."""

_UNCERTAIN: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": ("costophrenic angle blunting",),
    "Edema": ("vascular redistribution", "central vascular redistribution", "hilar congestion",
              "pulmonary venous hypertension"),
}
"""Terms that make a finding uncertain (-1), as the CheXpert labeler reads the same words."""

_UNSETTLED: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        "supra aortic elongation", "descendent aortic elongation", "ascendent aortic elongation",
        "hiatal hernia", "mediastinic lipomatosis"),
    "Cardiomegaly": ("pericardial effusion",),
    "Lung Opacity": ("bronchovascular markings", "post radiotherapy changes", "miliary opacities",
                     "respiratory distress", "tuberculosis", "tuberculosis sequelae"),
    "Lung Lesion": ("calcified densities", "cyst", "miliary opacities", "tuberculosis sequelae"),
    "Edema": ("respiratory distress",),
    "Pneumonia": ("abscess", "tuberculosis"),
    "Atelectasis": ("hypoexpansion basal", "volume loss"),
    "Pleural Other": ("fissure thickening", "minor fissure thickening", "major fissure thickening",
                      "asbestosis signs"),
    "Fracture": ("vertebral compression", "vertebral anterior compression"),
    "Support Devices": ("metal", "sternotomy", "surgery", "surgery heart", "surgery lung",
                        "surgery neck", "surgery humeral", "mammary prosthesis"),
}
"""Terms that bear on a finding without settling it (the PadChest tree puts them under it, or
they often come with it): the finding stays unmentioned (-2) instead of negative."""

_NO_COUNTERPART = (
    "copd signs", "chilaiditi sign", "abnormal foreign body", "adenopathy", "air fluid level",
    "air trapping", "aortic atheromatosis", "aortic button enlargement", "aortic elongation",
    "axial hyperostosis", "azygoesophageal recess shift", "azygos lobe", "blastic bone lesion",
    "bone metastasis", "breast mass", "bronchiectasis", "bullas", "calcified adenopathy",
    "calcified fibroadenoma", "calcified mediastinal adenopathy", "cervical rib",
    "chronic changes", "costochondral junction hypertrophy", "dextrocardia",
    "diaphragmatic eventration", "emphysema", "end on vessel", "esophagic dilatation",
    "external foreign body", "flattened diaphragm", "gynecomastia", "heart valve calcified",
    "hemidiaphragm elevation", "hilar enlargement", "hyperinflated lung", "hypoexpansion",
    "kyphosis", "lipomatosis", "lung vascular paucity", "lytic bone lesion", "mastectomy",
    "mediastinal shift", "nipple shadow", "non axial articular degenerative changes", "obesity",
    "osteopenia", "osteoporosis", "pectum carinatum", "pectum excavatum", "pneumomediastinum",
    "pneumoperitoneo", "pseudonodule", "pulmonary artery enlargement",
    "pulmonary artery hypertension", "pulmonary hypertension", "right sided aortic arch",
    "sclerotic bone lesion", "scoliosis", "soft tissue mass",
    "sternoclavicular junction hypertrophy",
    "subacromial space narrowing", "subcutaneous emphysema", "suboptimal study", "surgery breast",
    "thoracic cage deformation", "tracheal shift", "vascular hilar enlargement",
    "vertebral degenerative changes")
"""Terms with no counterpart among the 14 findings (kept in extra_labels["unmapped"])."""

NOT_EXHAUSTIVE = ("exclude", "unchanged")
"""Terms after which a row's list is no inventory of the image ('unchanged' from the prior
study, 'exclude'd from reading): no finding is negative on such a row."""


def _table() -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {term: {} for term in (*_NO_COUNTERPART, *NOT_EXHAUSTIVE)}
    for value, groups in ((UNMENTIONED, _UNSETTLED), (UNCERTAIN, _UNCERTAIN),
                          (POSITIVE, _POSITIVE)):
        for finding, terms in groups.items():
            for term in terms:
                table.setdefault(term, {})[finding] = value
    return table


LABEL_TABLE: dict[str, dict[str, int]] = _table()
"""PadChest term (lower case) -> {finding: 1 positive, -1 uncertain, -2 unsettled}; {} for no
counterpart. A finding the table grades is negative on a row unless one of its terms says
otherwise, and unless the row has a term the table does not know or a NOT_EXHAUSTIVE one
(then it is -2: unmapped is "not mentioned", never negative)."""

GRADED = tuple(sorted({f for effects in LABEL_TABLE.values() for f in effects},
                      key=FINDINGS.index))
"""The findings the table can express: negative on a row whose terms say nothing of them."""

_RANK = {UNMENTIONED: 1, UNCERTAIN: 2, POSITIVE: 3}


def labels_of_terms(names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """(labels, unmapped terms, unknown terms) of one row's parsed Labels list: unmapped are
    the terms that make no finding positive or uncertain, unknown those not in the table."""
    unknown = [n for n in dict.fromkeys(names) if n not in LABEL_TABLE]
    labels = np.full(NUM_FINDINGS, UNMENTIONED, np.int8)
    if not unknown and not any(n in NOT_EXHAUSTIVE for n in names):
        labels[[FINDINGS.index(f) for f in GRADED]] = NEGATIVE
    rank = np.zeros(NUM_FINDINGS, np.int8)
    for name in names:
        for finding, value in LABEL_TABLE.get(name, {}).items():
            j = FINDINGS.index(finding)
            if _RANK[value] > rank[j]:
                rank[j], labels[j] = _RANK[value], value
    unmapped = [n for n in dict.fromkeys(names)
                if not any(v != UNMENTIONED for v in LABEL_TABLE.get(n, {}).values())]
    return _common.no_finding_consistent(labels), unmapped, unknown


def parse_labels(cell: str) -> list[str] | None:
    """The label names of a Labels cell, stripped and lower-cased, blanks dropped; None when
    the cell is blank, not a list literal or an empty list (`[]`: no inventory of the image,
    so no finding is negative)."""
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(value, (list, tuple)):
        return None
    return [name for name in (str(v).strip().lower() for v in value) if name] or None


def image_dir(cell: str) -> str:
    """The ImageDir cell as a folder name ('0'..'54'; '3.0' written by some tools -> '3')."""
    cell = cell.strip()
    try:
        return str(int(float(cell)))
    except ValueError:
        return cell


class Padchest(_common.RealCxrBuilder):
    """PadChest chest radiographs with Spanish reports and mapped labels."""

    name = "chexficient_padchest"

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Request PadChest at https://bimcv.cipf.es/bimcv-projects/padchest/, download the label
    CSV and the image zips (0.zip .. 54.zip), and extract each zip into a folder named after
    its ImageDir beside the CSV:

    {LAYOUT.tree("padchest")}
    """
    LAYOUT = LAYOUT

    def split_entries(self, root: str) -> dict[str, _common.SplitEntries]:
        rows = _common.read_csv(os.path.join(root, TABLE),
                                ("ImageID", "ImageDir", "Projection", "Report", "Labels"))
        LAYOUT.check(root, probes=[os.path.join(image_dir(r["ImageDir"]), r["ImageID"])
                                   for r in rows[:1]])
        return {"train": self._entries(root, rows)}

    def _entries(self, root: str, rows: list[dict[str, str]]) -> _common.SplitEntries:
        views = self.builder_config.views

        def entries(tally: _common.SplitTally):
            for row in rows:
                code = row["Projection"]
                view = _common.view_of(code)
                if not tally.keep_view(view, code, views):
                    continue
                names = parse_labels(row["Labels"])
                if names is None:
                    labels, extra = _common.UNLABELED, _common.extra_json(raw=row["Labels"])
                else:
                    labels, unmapped, unknown = labels_of_terms(names)
                    extra = _common.extra_json(unmapped, unknown=unknown)
                yield _common.Entry(
                    id=row["ImageID"],
                    path=os.path.join(root, image_dir(row["ImageDir"]), row["ImageID"]),
                    report=row["Report"].strip(), labels=labels, view=view, extra_labels=extra)
        return entries
