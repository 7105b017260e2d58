"""Radiology reports written from labels: FINDINGS + IMPRESSION, in several site styles.

Positive labels (1) are stated with severity, laterality and location, uncertain ones (-1)
are hedged ("possible", "cannot be excluded", "may represent", "questionable"), negative
ones (0) are negated ("No pneumothorax.", "Heart size is normal.") and unmentioned ones (-2)
are not mentioned at all, so a rule-based labeler can recover the labels from the text.
Each sentence names one finding with its standard term (opacity, nodule/mass, edema,
consolidation, pneumonia, atelectasis, pneumothorax, pleural effusion, pleural thickening,
fracture, tubes/catheters/pacemaker, cardiomegaly, widened mediastinum); only grouped
negations ("No pleural effusion or pneumothorax.") name several.
"""

from __future__ import annotations

import numpy as np

from chexficient.data.synthetic.details import (
    Details, degree_word, present, sample_details, size_word)
from chexficient.findings import FINDINGS, NEGATIVE, NO_FINDING, POSITIVE, UNCERTAIN

STYLES = ("academic", "community", "terse", "shift")
"""Writing styles ("sites"); `shift` is the held-out site of the test_shift split."""

_CODE = {"academic": "a", "community": "c", "terse": "t", "shift": "s"}

# Each template lists the styles (by letter) that use it.
_POSITIVE: dict[str, list[tuple[str, str]]] = {
    "Enlarged Cardiomediastinum": [
        ("The mediastinum is widened.", "ac"),
        ("The superior mediastinum is {adv} widened.", "ac"),
        ("Enlarged cardiomediastinal silhouette.", "act"),
        ("Widened mediastinum.", "t"),
        ("{Deg} widening of the mediastinum.", "ct"),
        ("Widening of the superior mediastinum is demonstrated.", "s"),
        ("The mediastinum appears widened.", "s"),
    ],
    "Cardiomegaly": [
        ("The heart is {adv} enlarged.", "acs"),
        ("{Deg} cardiomegaly.", "act"),
        ("There is {deg} cardiomegaly.", "ac"),
        ("Heart size is {adv} enlarged.", "ct"),
        ("{Deg} enlargement of the cardiac silhouette.", "a"),
        ("{Deg} cardiomegaly is noted.", "s"),
        ("The cardiac silhouette is enlarged.", "s"),
    ],
    "Lung Opacity": [
        ("There {o_is} {o_a}{patchy} opacit{y} in the {lobe}.", "ac"),
        ("{Patchy} opacit{y} at the {region}.", "act"),
        ("{Patchy} {adj} opacit{y}.", "ct"),
        ("Ill-defined opacit{y} in the {lobe}.", "at"),
        ("{O_a}{patchy} opacit{y} {o_is} seen in the {lobe}.", "s"),
        ("{Patchy} opacit{y} {o_is} demonstrated at the {region}.", "s"),
    ],
    "Lung Lesion": [
        ("There is a {cm} {kind} in the {lobe}.", "acs"),
        ("{Cm} {lobe} {kind}.", "ct"),
        ("A {cm} pulmonary {kind} projects over the {region}.", "a"),
        ("{Cm} {kind} at the {region}.", "t"),
        ("A well-circumscribed {cm} {kind} is demonstrated in the {lobe}.", "s"),
    ],
    "Edema": [
        ("{Deg} pulmonary edema.", "act"),
        ("There is {deg} interstitial edema.", "ac"),
        ("Findings are consistent with {deg} pulmonary edema.", "ac"),
        ("{Deg} perihilar edema.", "t"),
        ("Appearances are in keeping with {deg} pulmonary edema.", "s"),
        ("{Deg} interstitial pulmonary edema is demonstrated.", "s"),
    ],
    "Consolidation": [
        ("There is consolidation in the {lobe}.", "ac"),
        ("{Lobe} consolidation.", "act"),
        ("Dense consolidation at the {region}.", "ct"),
        ("Focal consolidation in the {lobe}.", "a"),
        ("Consolidation is seen in the {lobe}.", "s"),
        ("There is airspace consolidation within the {lobe}.", "s"),
    ],
    "Pneumonia": [
        ("{Lobe} pneumonia.", "act"),
        ("Findings are consistent with {lobe} pneumonia.", "ac"),
        ("There is pneumonia in the {lobe}.", "c"),
        ("Pneumonia, {lobe}.", "t"),
        ("Appearances are in keeping with pneumonia in the {lobe}.", "s"),
    ],
    "Atelectasis": [
        ("Plate-like atelectasis at the {region}.", "act"),
        ("{Adj} atelectasis.", "act"),
        ("There is subsegmental atelectasis in the {lobe}.", "ac"),
        ("{Deg} atelectasis of the {lobe} with volume loss.", "a"),
        ("{Adj} atelectasis is noted.", "s"),
        ("Linear atelectasis is seen at the {region}.", "s"),
    ],
    "Pneumothorax": [
        ("There is a {size} {side} pneumothorax.", "ac"),
        ("{Size} {side} {zone} pneumothorax.", "act"),
        ("{Side} pneumothorax, {size} in size, with a visible pleural line.", "a"),
        ("{Size} {side} PTX.", "t"),
        ("A {size} {side} {zone} pneumothorax is demonstrated.", "s"),
        ("There is a {size} {side} pneumothorax with a visible visceral pleural edge.", "s"),
    ],
    "Pleural Effusion": [
        ("There {is} {a}{size} {side} pleural effusion{s}.", "acs"),
        ("{Size} {side} pleural effusion{s}.", "act"),
        ("{Size} {side} effusion{s} with blunting of the costophrenic angle{s}.", "ac"),
        ("{Size} {side} effusion{s}.", "t"),
        ("{A}{size} {side} pleural effusion{s} {is} demonstrated.", "s"),
    ],
    "Pleural Other": [
        ("{Side} {zone} pleural thickening.", "act"),
        ("Pleural thickening at the {side} {site}.", "ac"),
        ("There is {side} pleural thickening.", "ac"),
        ("{Side} pleural thickening.", "t"),
        ("{Side} pleural thickening is noted.", "s"),
    ],
    "Fracture": [
        ("Acute {disp} fracture of the {side} {rib} rib.", "act"),
        ("There is a {disp} fracture of the {side} {rib} rib.", "ac"),
        ("{Side} {rib} rib fracture.", "ct"),
        ("A {disp} fracture of the {side} {rib} rib is demonstrated.", "s"),
    ],
}

_UNCERTAIN: dict[str, list[tuple[str, str]]] = {
    "Enlarged Cardiomediastinum": [
        ("Possible widening of the mediastinum.", "act"),
        ("The mediastinum may be widened.", "ac"),
        ("Questionable mediastinal widening.", "t"),
        ("Mediastinal widening cannot be excluded.", "s"),
    ],
    "Cardiomegaly": [
        ("Possible mild cardiomegaly.", "act"),
        ("Cardiomegaly cannot be excluded.", "acs"),
        ("The heart may be mildly enlarged.", "c"),
        ("Questionable cardiomegaly.", "t"),
    ],
    "Lung Opacity": [
        ("Possible faint opacity in the {lobe}.", "act"),
        ("Questionable opacity at the {region}.", "ct"),
        ("A subtle opacity in the {lobe} cannot be excluded.", "as"),
    ],
    "Lung Lesion": [
        ("Possible {cm} nodule in the {lobe}.", "act"),
        ("Questionable nodule at the {region}.", "ct"),
        ("A small nodule in the {lobe} cannot be excluded.", "as"),
    ],
    "Edema": [
        ("Possible mild pulmonary edema.", "act"),
        ("Mild interstitial edema cannot be excluded.", "acs"),
        ("Findings may represent mild edema.", "c"),
    ],
    "Consolidation": [
        ("Possible {lobe} consolidation.", "act"),
        ("Consolidation in the {lobe} cannot be excluded.", "acs"),
        ("Questionable consolidation at the {region}.", "t"),
    ],
    "Pneumonia": [
        ("Possible {lobe} pneumonia.", "act"),
        ("Early pneumonia in the {lobe} cannot be excluded.", "acs"),
        ("Findings may represent pneumonia in the {lobe}.", "c"),
    ],
    "Atelectasis": [
        ("Possible {adj} atelectasis.", "act"),
        ("Findings at the {region} may represent atelectasis.", "ac"),
        ("Atelectasis at the {region} cannot be excluded.", "s"),
    ],
    "Pneumothorax": [
        ("Possible tiny {side} apical pneumothorax.", "act"),
        ("A small {side} pneumothorax cannot be excluded.", "acs"),
        ("Questionable {side} pneumothorax.", "t"),
    ],
    "Pleural Effusion": [
        ("Possible small {side} pleural effusion{s}.", "act"),
        ("A small {side} pleural effusion cannot be excluded.", "acs"),
        ("Questionable {side} effusion{s}.", "t"),
    ],
    "Pleural Other": [
        ("Possible {side} pleural thickening.", "act"),
        ("{Side} pleural thickening cannot be excluded.", "cs"),
    ],
    "Fracture": [
        ("Possible nondisplaced fracture of the {side} {rib} rib.", "act"),
        ("Questionable fracture of the {side} {rib} rib.", "ct"),
        ("A fracture of the {side} {rib} rib cannot be excluded.", "as"),
    ],
    "Support Devices": [
        ("Possible retained catheter fragment over the {side} chest.", "acts"),
    ],
}

_NEGATIVE: dict[str, list[tuple[str, str]]] = {
    "Enlarged Cardiomediastinum": [
        ("The mediastinum is not widened.", "ac"),
        ("No mediastinal widening.", "act"),
        ("There is no widening of the mediastinum.", "s"),
    ],
    "Cardiomegaly": [
        ("Heart size is normal.", "act"),
        ("The heart is not enlarged.", "ac"),
        ("No cardiomegaly.", "ct"),
        ("There is no cardiomegaly.", "s"),
    ],
    "Lung Opacity": [("No focal opacity.", "act"), ("No focal airspace opacity is seen.", "s")],
    "Lung Lesion": [
        ("No suspicious pulmonary nodule.", "act"),
        ("No pulmonary nodules or masses.", "ac"),
        ("No pulmonary nodule or mass is seen.", "s"),
    ],
    "Edema": [("No pulmonary edema.", "act"), ("There is no pulmonary edema.", "s")],
    "Consolidation": [("No focal consolidation.", "act"), ("No consolidation is seen.", "s")],
    "Pneumonia": [("No evidence of pneumonia.", "ac"), ("No pneumonia.", "t"),
                  ("There is no evidence of pneumonia.", "s")],
    "Atelectasis": [("No atelectasis.", "act"), ("No atelectasis is seen.", "s")],
    "Pneumothorax": [("No pneumothorax.", "act"), ("No pneumothorax is seen.", "s")],
    "Pleural Effusion": [("No pleural effusion.", "act"), ("No effusion.", "t"),
                         ("There is no pleural effusion.", "s")],
    "Pleural Other": [("No pleural thickening.", "act"), ("No pleural thickening is seen.", "s")],
    "Fracture": [("No displaced rib fracture.", "act"), ("No acute fracture.", "ac"),
                 ("No rib fracture is demonstrated.", "s")],
    "Support Devices": [("No lines or tubes.", "act"), ("No support devices are seen.", "s")],
}

# Noun phrases for grouped negations ("No pleural effusion, pneumothorax, or focal consolidation.").
_NEGATION_NOUN = {
    "Lung Opacity": "focal opacity",
    "Lung Lesion": "suspicious pulmonary nodule",
    "Edema": "pulmonary edema",
    "Consolidation": "focal consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
}

_DEVICE_SENTENCES: dict[str, list[tuple[str, str]]] = {
    "ett": [
        ("Endotracheal tube terminates {ett_cm} cm above the carina.", "act"),
        ("The endotracheal tube tip is {ett_cm} cm above the carina.", "ac"),
        ("ET tube {ett_cm} cm above the carina.", "t"),
        ("An endotracheal tube is demonstrated with its tip {ett_cm} cm above the carina.", "s"),
    ],
    "ng": [
        ("Enteric tube courses below the diaphragm with its tip in the stomach.", "ac"),
        ("Nasogastric tube tip projects over the stomach.", "act"),
        ("NG tube in the stomach.", "t"),
        ("A nasogastric tube is seen with its tip in the stomach.", "s"),
    ],
    "cvc": [
        ("{Cvc_side} internal jugular central venous catheter with tip in the superior vena cava.", "ac"),
        ("{Cvc_side} central venous catheter terminates at the cavoatrial junction.", "act"),
        ("{Cvc_side} IJ central line, tip in the SVC.", "t"),
        ("A {cvc_side} internal jugular central venous catheter is demonstrated, tip in the SVC.", "s"),
    ],
    "pacemaker": [
        ("{Pm_side}-sided pacemaker with leads in the right atrium and right ventricle.", "act"),
        ("Dual-chamber pacemaker over the {pm_side} chest wall with leads in expected position.", "ac"),
        ("{Pm_side} chest wall pacemaker.", "t"),
        ("A {pm_side}-sided cardiac pacemaker is noted, with leads in the right heart.", "s"),
    ],
}

_TECHNIQUE = [
    ("PA and lateral views of the chest.", "a"),
    ("Portable AP view of the chest.", "ac"),
    ("Single frontal view of the chest.", "ct"),
    ("Comparison is made to the prior study.", "a"),
    ("Frontal chest radiograph.", "s"),
]
_NORMAL_IMPRESSION = [
    ("No acute cardiopulmonary process.", "ac"),
    ("No acute cardiopulmonary abnormality.", "act"),
    ("Normal chest radiograph.", "t"),
    ("No acute intrathoracic abnormality is demonstrated.", "s"),
]
_DEVICES_ONLY_IMPRESSION = [
    ("Lines and tubes as described above.", "ac"),
    ("Support devices as above.", "t"),
    ("Support devices in satisfactory position.", "s"),
]

_ORDER = ("Support Devices", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
          "Consolidation", "Pneumonia", "Edema", "Atelectasis", "Lung Lesion", "Pneumothorax",
          "Pleural Effusion", "Pleural Other", "Fracture")
"""Reading order of a findings section: devices, heart and mediastinum, lungs, pleura, bones."""

_LOBES = {("right", "upper"): "right upper lobe", ("right", "middle"): "right middle lobe",
          ("right", "lower"): "right lower lobe", ("left", "upper"): "left upper lobe",
          ("left", "middle"): "lingula", ("left", "lower"): "left lower lobe",
          ("bilateral", "upper"): "bilateral upper lobes",
          ("bilateral", "middle"): "bilateral mid lungs",
          ("bilateral", "lower"): "bilateral lower lobes"}
_REGION = {"upper": "{side} upper lung", "middle": "{side} mid lung", "lower": "{side} lung base"}
_REGION_BILATERAL = {"upper": "upper lungs", "middle": "mid lungs", "lower": "lung bases"}
_PLEURAL_SITE = {"apical": "apex", "lateral": "lateral chest wall"}
_ADJ = {"upper": "{side} upper lung", "middle": "{side} mid lung", "lower": "{side} basilar",
        "apical": "{side} apical", "lateral": "{side} lateral"}
_ORDINAL = {1: "1st", 2: "2nd", 3: "3rd"}
_ADVERB = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}


def style_name(style: str | int) -> str:
    """The style name for a style name or index; unknown styles list the valid ones."""
    if isinstance(style, (int, np.integer)):
        if not 0 <= style < len(STYLES):
            raise ValueError(f"style index {style} out of range 0..{len(STYLES) - 1}")
        return STYLES[int(style)]
    if style not in STYLES:
        raise ValueError(f"unknown report style {style!r}; valid: {', '.join(STYLES)}")
    return style


def write_report(labels: np.ndarray, rng: np.random.Generator, style: str | int = 0,
                 details: Details | None = None) -> str:
    """A "FINDINGS: ... IMPRESSION: ..." report whose wording encodes `labels` (int8[14]).

    `details` (from details.sample_details, sampled here when None) gives side, location and
    severity of each finding present, so the text matches the rendered phantom.
    """
    labels = np.asarray(labels)
    if labels.shape != (len(FINDINGS),):
        raise ValueError(f"labels must have shape ({len(FINDINGS)},), got {labels.shape}")
    code = _CODE[style_name(style)]
    if details is None:
        details = sample_details(labels, rng)
    missing = [n for n in present(labels) if n not in details]
    if missing:
        raise ValueError(f"details lack findings present in labels: {missing}")

    value = {name: labels[FINDINGS.index(name)] for name in _ORDER}
    findings, impression = [], []
    if rng.random() < 0.5:
        findings.append(_pick(_TECHNIQUE, code, rng))
    for name in _ORDER:
        if value[name] not in (POSITIVE, UNCERTAIN):
            continue
        fields = _fields(name, details[name])
        findings += _mentions(name, value[name], fields, code, rng)
        if name != "Support Devices":
            impression += _mentions(name, value[name], fields, code, rng)
    findings += _negations([n for n in _ORDER if value[n] == NEGATIVE], code, rng)

    if not impression:
        normal = labels[NO_FINDING] == POSITIVE or value["Support Devices"] not in (POSITIVE, UNCERTAIN)
        impression.append(_pick(_NORMAL_IMPRESSION if normal else _DEVICES_ONLY_IMPRESSION, code, rng))
    elif code in "as" and len(impression) > 1:
        impression = [f"{i}. {s}" for i, s in enumerate(impression, 1)]
    return f"FINDINGS: {' '.join(findings)} IMPRESSION: {' '.join(impression)}"


def _mentions(name: str, value: int, fields: dict, code: str, rng: np.random.Generator) -> list[str]:
    """The sentences stating (or hedging) one present finding."""
    if name == "Support Devices" and value == POSITIVE:
        return [_fill(_pick(_DEVICE_SENTENCES[d], code, rng), fields) for d in fields["devices"]]
    table = _POSITIVE if value == POSITIVE else _UNCERTAIN
    return [_fill(_pick(table[name], code, rng), fields)]


def _negations(names: list[str], code: str, rng: np.random.Generator) -> list[str]:
    """Negation sentences; non-terse styles group some lung and pleura negations in one."""
    groupable = [n for n in names if n in _NEGATION_NOUN]
    grouped = groupable if code in "ac" and len(groupable) >= 2 and rng.random() < 0.6 else []
    out = [_pick(_NEGATIVE[n], code, rng) for n in names if n not in grouped]
    if grouped:
        nouns = [_NEGATION_NOUN[n] for n in grouped[:4]]
        listed = nouns[0] if len(nouns) == 1 else (
            f"{nouns[0]} or {nouns[1]}" if len(nouns) == 2 else f"{', '.join(nouns[:-1])}, or {nouns[-1]}")
        out.append(f"No {listed}.")
        out += [_pick(_NEGATIVE[n], code, rng) for n in grouped[4:]]
    return out


def _pick(templates: list[tuple[str, str]], code: str, rng: np.random.Generator) -> str:
    choices = [t for t, styles in templates if code in styles]
    return choices[int(rng.integers(len(choices)))]


class _Fields(dict):
    """Template fields where `{Key}` is the value of `key` capitalised."""

    def __missing__(self, key: str) -> str:
        return _cap(self[key[:1].lower() + key[1:]])


def _fill(template: str, fields: dict) -> str:
    return _cap(template.format_map(_Fields(fields)))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fields(name: str, d: dict) -> dict:
    """Template fields of one finding's details (side, lobe, region, severity words...)."""
    severity = d.get("severity", 0.3)
    side = d.get("side", "right")
    zone = d.get("zone", "lower")
    bilateral = side == "bilateral"
    fields = {
        "side": side, "zone": zone, "size": size_word(severity), "deg": degree_word(severity),
        "adv": _ADVERB[degree_word(severity)],
        "lobe": _LOBES.get((side, zone), f"{side} lung"),
        "region": (_REGION_BILATERAL.get(zone, "lungs") if bilateral
                   else _REGION.get(zone, "{side} lung").format(side=side)),
        "site": _PLEURAL_SITE.get(zone, "lateral chest wall"),
        "adj": ("bibasilar" if bilateral and zone == "lower"
                else _ADJ.get(zone, "{side}").format(side=side)),
        "s": "s" if bilateral else "", "is": "are" if bilateral else "is",
        "a": "" if bilateral else "a ", "patchy": "patchy" if severity < 0.6 else "confluent",
    }
    several = bilateral or severity > 0.6  # opacities: plural when bilateral or confluent
    fields.update(y="ies" if several else "y", o_is="are" if several else "is", o_a="" if several else "a ")
    if name == "Lung Lesion":
        size_cm = d.get("size_cm", 1.5)
        fields.update(cm=f"{size_cm:.1f} cm", kind="mass" if size_cm >= 3.0 else "nodule")
    if name == "Fracture":
        rib = int(d.get("rib", 6))
        fields.update(rib=_ORDINAL.get(rib, f"{rib}th"),
                      disp="displaced" if d.get("displaced", False) else "nondisplaced")
    if name == "Support Devices":
        fields.update(devices=d.get("devices", ("ett",)), ett_cm=f"{d.get('ett_cm', 4.0):.0f}",
                      cvc_side=d.get("cvc_side", "right"), pm_side=d.get("pacemaker_side", "left"))
    return fields
