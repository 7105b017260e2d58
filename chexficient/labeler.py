"""Rule-based radiology report labeler: mentions, negation and uncertainty -> 14 CheXpert labels.

Works like the CheXpert labeler (mention extraction, then classification by cues, then
aggregation per report) with regular expressions instead of a dependency parse, so that
it labels thousands of reports a second on one core. Everything is driven by three tables
below: `_MENTIONS` (phrases per observation), `_CUES` (negation / uncertainty cues) and
`_BREAK_WORDS` (where a cue's scope ends). Conventions chosen, where real reports are ambiguous:

* Scope. A cue before its target ("no", "possible", "concerning for") reaches forward, a cue
  after it ("is not seen", "has resolved", "cannot be excluded") reaches back, "versus" /
  "vs" / "or" / "and/or" make the nearest mention on each side uncertain. Scope ends at a
  sentence end, a contrast or relative word ("but", "however", "although", "which", "with",
  "except", "there is"...), a finite verb ("is", "are", "has"...) or a comma that opens a
  new statement (", stable ..."), so that "no effusion, pneumothorax or consolidation"
  negates all three while "no pneumothorax, the heart is enlarged" and "no pneumothorax,
  stable small effusion" do not negate the heart or the effusion. A cue that lies inside a
  mention ("heart is not enlarged") applies to that mention only. "History of" negates (a
  past finding is not in this image).
* Precedence within one mention: negation beats uncertainty ("no consolidation to suggest
  pneumonia" -> Pneumonia 0). Double negations are matched first as uncertainty ("cannot be
  excluded", "not ruled out"), and change statements are not negations ("no change in the
  small effusion" -> 1). "No new consolidation" is negative (CheXpert marks it uncertain).
* Aggregation over the mentions of one report (CheXpert): positive beats uncertain beats
  negative; an observation never mentioned is -2.
* State words keep their meaning: "stable / improved / decreased effusion" is positive,
  "resolved effusion" and "removed tube" negative. Some phrases are uncertain by default
  (CheXpert): "blunting of the costophrenic angle" (effusion or thickening), "pulmonary
  vascular congestion" (Edema), "borderline heart size".
* Heart and mediastinum are labeled only from what is said about them: "heart size is
  normal" / "normal cardiomediastinal silhouette" -> 0 (the latter for both Cardiomegaly and
  Enlarged Cardiomediastinum), "enlarged cardiac silhouette" -> Cardiomegaly 1, while a bare
  "stable cardiomediastinal silhouette" says nothing and leaves both unmentioned.
* Hedges: "may represent", "could be", "perhaps", "vague", "differential (for X) includes",
  "is a possibility", "is thought to be less likely" make a mention uncertain, and so does a
  limited evaluation ("evaluation for pneumothorax is limited", "would be difficult to
  detect", "cannot be assessed"). "X, Y, or Z" makes every item of the comma list uncertain;
  "opacity, atelectasis vs pneumonia" only the two compared.
* Where real reports' readers differ from the CheXpert labeler's lists: calcified nodules and
  granulomas (and granulomatous disease, fibronodular change) are Lung Lesion, pneumonitis is
  Pneumonia, and a device is named by its kind (shunt tubing, port, tip by location, clips,
  anchors, wires, sutures, staples, rods, prostheses) while postoperative change that names
  none ("status post sternotomy", "postsurgical changes") is no device.
* "The lungs are clear" labels no single observation (as CheXpert), but counts as a normal
  statement for No Finding.
* No Finding: 0 when any observation other than Support Devices is positive or uncertain,
  or when the report asserts some other abnormality outside the 14 (emphysema, granuloma,
  scoliosis, hernia... as CheXpert's No Finding list); otherwise 1 when the report mentions
  any observation or makes a normal statement ("no acute cardiopulmonary process", "normal
  chest radiograph", "lungs are clear"); otherwise -2: an empty report, or one that says
  nothing about any observation, is all -2 including No Finding (nothing was reported, so
  normality is unknown rather than asserted).
* Sections named INDICATION, HISTORY, COMPARISON, TECHNIQUE... are not labeled when the
  report carries section headers ("eval for pneumonia" is a question, not a finding).
"""

from __future__ import annotations

import bisect
import re
import re._constants as sre  # the regex parser of `re`, to index phrases by first character
import re._parser as sre_parse
from collections.abc import Sequence

import numpy as np

from chexficient import findings

_NEG, _UNC, _POS = 1, 2, 3
"""Mention states as ranks, so that aggregation is a max (0 = no mention)."""
_RANK_TO_LABEL = np.array([findings.UNMENTIONED, findings.NEGATIVE, findings.UNCERTAIN,
                           findings.POSITIVE], dtype=np.int8)
_OTHER, _NORMAL = "other abnormality", "normal statement"
"""Pseudo-observations for the No Finding rule: other abnormalities, normal statements."""
_COLUMNS = findings.FINDINGS + (_OTHER, _NORMAL)
_EXCLUDED: tuple[str, ...] = ()
"""Observations of phrases matched only to hide a shorter phrase: "pleural line" is no line."""

# Building blocks of the heart / mediastinum phrases: subject, copula, adverb, predicate.
_COP = (r"(?:(?:is|are|was|were|has been|have been|has become|remains?|appears?(?: to be)?|"
        r"seems?(?: to be)?|looks?|again|now|still|also|overall|otherwise|stably|persistently|"
        r"likely|probably|possibly|questionably|may be|might be|could be|unchanged and|"
        r"stable and|unchanged,|stable,) )*")
_ADV = r"(?:(?:\w+ly|slightly|mild|moderate|severe|at least)(?: to \w+ly)? )?"
_HEART = (r"(?:the )?(?:heart(?: size)?|cardiac (?:size|silhouette(?: size)?|shadow|contours?|"
          r"diameter|dimensions?)|size of the heart|heart shadow)")
_CARDIOMEDIASTINAL = (r"(?:the )?(?:cardiomediastinal(?: and hilar)? (?:silhouettes?|contours?|"
                      r"structures|shadows?|borders?)|cardiomediastinum|heart and mediastinum|"
                      r"(?:cardiac|heart)(?: size| silhouette)?,? (?:and )?(?:the )?mediastinal"
                      r"(?:,? and hilar)? (?:silhouettes?|contours?|structures|width)|"
                      r"mediastinal and cardiac (?:silhouettes?|contours?))")
_MEDIASTINUM = (r"(?:the )?(?:(?:superior )?mediastinum|mediastinal(?:,? and hilar)? "
                r"(?:silhouettes?|contours?|configuration|width|shadows?|structures)|"
                r"hilar and mediastinal (?:silhouettes?|contours?))")
_NORMAL_SIZE = (r"(?:normal(?: in (?:size|contour|configuration|appearance))?(?: size)?|"
                r"within normal limits|unremarkable|not (?:\w+ly )?(?:enlarged|widened)|"
                r"no longer (?:enlarged|widened)|normalized|top[- ]normal(?: in size)?|"
                r"(?:at |within )?(?:the )?upper (?:limits?|range|end) of normal(?: in size)?|"
                r"upper normal)")
_BORDERLINE = (r"(?:borderline(?: enlarged| in size)?|prominent|(?:(?:at |within )?(?:the )?upper "
               r"(?:limits?|range) of normal|top[- ]normal|normal) to (?:\w+ly )?enlarged)")
_HEART_BIG = r"(?:enlarged|enlarging|increased(?: in size)?|large|big)"
_MEDIASTINUM_WIDE = r"(?:widened|wide|widening|enlarged)"


def _said_of(subject: str, predicate: str) -> str:
    """Phrase `subject (copula) (adverb) predicate`, e.g. "heart size is mildly enlarged"."""
    return rf"{subject} {_COP}{_ADV}{predicate}"


_MENTIONS: tuple[tuple[tuple[str, ...], int, tuple[str, ...]], ...] = (
    # (observations, state when no cue applies, phrases). Earlier rows win when phrases start
    # at the same place, so longer and excluding phrases come first.
    (_EXCLUDED, _POS, (
        r"pleural lines?", r"skin (?:folds?|lines?)", r"midline", r"mass effect",
        r"(?:ecg|ekg|monitoring|telemetry|cardiac monitor(?:ing)?) (?:leads?|wires?|electrodes?)",
        r"(?:bone|soft[- ]tissue) densit(?:y|ies)", r"joint effusions?",
        r"(?:left|right)[- ]to[- ](?:left|right) shunts?", r"(?:scapular|xiphoid) tips?",
        r"(?:azygoesophageal|paratracheal|paraspinal|fissural|(?:anterior |posterior )?junction) "
        r"lines?")),
    (("Lung Lesion", "Lung Opacity"), _POS, (
        r"nodular(?:[- ]appearing)? (?:opacit(?:y|ies)|densit(?:y|ies)|opacification|"
        r"infiltrat(?:e|es|ion))",
        r"fibronodular(?: (?:changes?|scar\w*|opacit(?:y|ies)|densit(?:y|ies)|disease))?")),
    (("Lung Lesion",), _POS, (
        r"(?:densely |partially )?calcified (?:granulomas?|nodules?)", r"granulomas?",
        r"granulomatous(?: disease| changes?| process)?")),
    (("Consolidation", "Lung Opacity"), _POS, (
        r"consolidative (?:opacit(?:y|ies)|changes?|process)",)),
    (("Pneumothorax", "Pleural Effusion"), _POS, (r"hydro-?pneumothora(?:x|ces)",)),
    ((_OTHER,), _POS, (
        r"pericardial effusions?", r"(?:soft[- ]tissue|subcutaneous|chest wall|body wall) edema",
        r"(?:lytic|sclerotic|blastic|bone|osseous|skin) lesions?",
        r"calcified (?:hilar |mediastinal )?lymph nodes?", r"emphysema(?:tous)?", r"hyperinflat\w*",
        r"hyperexpan\w*", r"copd", r"chronic obstructive pulmonary disease", r"bullae",
        r"bullous", r"blebs?", r"(?:dextro|levo|rotary )?scolio\w*", r"kypho\w*",
        r"(?:hiatal |hiatus )?hernias?",
        r"pneumomediastinum", r"pneumoperitoneum",
        r"free (?:intraperitoneal |sub-?diaphragmatic )?air",
        r"(?:elevated|elevation of the) (?:right |left )?hemidiaphragms?",
        r"hemidiaphragm (?:is |remains )?elevated", r"eventration",
        r"degenerative (?:changes?|disease)", r"spondylo\w*", r"osteophyt\w*", r"osteopeni\w*",
        r"osteoporo\w*", r"tortuous (?:thoracic )?aorta",
        r"(?:thoracic )?aorta (?:is |remains )?(?:\w+ly )?(?:tortuous|unfolded|calcified)",
        r"(?:aortic )?tortuosity",
        r"atheroscler\w*", r"calcifi\w*", r"calcific", r"(?:lymph)?adenopathy",
        r"bronchiectasis", r"fibrosis", r"aspiration", r"contusions?", r"hematomas?",
        r"hemorrhage", r"deformit(?:y|ies)", r"(?:metallic )?foreign bod(?:y|ies)",
        r"bullet(?: fragments?)?", r"shrapnel", r"volume loss", r"hyperlucen\w*",
        r"bronchitis", r"bronchiolitis", r"(?:reactive )?airways? disease", r"asthma")),
    ((_NORMAL,), _NEG, (
        r"(?:acute|active) (?:\w+ )?(?:process|abnormalit(?:y|ies)|disease|findings?|pathology)",
        r"(?:normal|negative|unremarkable) (?:chest|study|exam(?:ination)?|(?:chest )?radiograph|"
        r"chest (?:x-?ray|film))",
        r"(?:chest|study|exam(?:ination)?|radiograph) (?:is |appears )?(?:normal|unremarkable|"
        r"within normal limits)",
        r"lungs? (?:(?:are|is|appear|remain|otherwise|again|now|well[- ]expanded and) )*clear",
        r"clear lungs", r"within normal limits")),
    # Heart and mediastinum: what is said of them.
    (("Enlarged Cardiomediastinum", "Cardiomegaly"), _NEG, (
        _said_of(_CARDIOMEDIASTINAL, _NORMAL_SIZE),
        rf"normal(?: size)? {_CARDIOMEDIASTINAL}")),
    (("Enlarged Cardiomediastinum",), _NEG, (
        _said_of(_MEDIASTINUM, _NORMAL_SIZE), rf"normal {_MEDIASTINUM}")),
    (("Cardiomegaly",), _UNC, (
        _said_of(_HEART, _BORDERLINE), rf"(?:borderline|prominent) (?:enlarged )?"
        rf"(?:cardiomegaly|{_HEART})", r"prominence of the (?:heart|cardiac silhouette)")),
    (("Cardiomegaly",), _NEG, (
        _said_of(_HEART, _NORMAL_SIZE), rf"normal(?:[- ]sized?)? {_HEART}",
        r"(?:top|upper)[- ]normal (?:heart|cardiac) size", r"normal[- ]sized heart")),
    (("Enlarged Cardiomediastinum",), _UNC, (
        _said_of(_CARDIOMEDIASTINAL, _BORDERLINE), _said_of(_MEDIASTINUM, _BORDERLINE),
        r"(?:mediastinal|cardiomediastinal) prominence",
        r"prominen(?:t|ce of the) (?:superior )?mediastin(?:um|al contours?)")),
    (("Enlarged Cardiomediastinum",), _POS, (
        _said_of(_CARDIOMEDIASTINAL, _MEDIASTINUM_WIDE), _said_of(_MEDIASTINUM, _MEDIASTINUM_WIDE),
        r"(?:widened|enlarged|wide) (?:superior )?(?:mediastinum|(?:cardio)?mediastinal "
        r"(?:silhouette|contours?|shadow))", r"(?:cardio)?mediastinal (?:widening|enlargement)",
        r"(?:widening|enlargement) of the (?:superior )?(?:mediastinum|cardiomediastinal "
        r"silhouette)", r"enlarged cardiomediastinum")),
    (("Cardiomegaly",), _POS, (
        r"cardiomegaly", _said_of(_HEART, _HEART_BIG),
        r"(?:enlarged|increased|large) (?:heart(?: size)?|cardiac (?:silhouette|shadow|"
        r"size|contours?))", r"(?:heart|cardiac) enlargement",
        r"enlargement of the (?:\w+ )?(?:heart|cardiac (?:silhouette|shadow|contour))")),
    # Pleura.
    (("Pleural Effusion",), _NEG, (
        r"(?:costophrenic|cp) (?:angles?|sulci|sulcus) (?:(?:is|are|remains?|again) )*"
        r"(?:sharp(?:ly defined)?|clear|preserved|normal)",
        r"sharp (?:costophrenic|cp) (?:angles?|sulci)")),
    (("Pleural Effusion",), _UNC, (
        r"blunting of the (?:\w+ ){0,3}?(?:costophrenic|cp) (?:angles?|sulci|sulcus|recess(?:es)?)",
        r"(?:costophrenic|cp) (?:angle|sulcus) blunting",
        r"blunted (?:\w+ ){0,2}?(?:costophrenic|cp) (?:angles?|sulci|sulcus)",
        r"(?:costophrenic|cp) (?:angles?|sulci|sulcus) (?:(?:is|are|remains?|again) )*"
        rf"{_ADV}blunted")),
    (("Pleural Effusion",), _POS, (
        r"effusions?", r"pleural fluid", r"hydrothorax", r"hemothorax", r"empyema",
        r"(?:layering|loculated|fissural|subpulmonic) fluid",
        r"fluid (?:in|within|along|tracking along) the (?:\w+ )?(?:fissures?|pleural spaces?)")),
    (("Pleural Other",), _POS, (
        r"pleural (?:thickening|plaques?|scar\w*|calcifications?|fibrosis)",
        r"pleuro-?(?:parenchymal|pericardial) (?:scar\w*|thickening|changes?)",
        r"pleural[- ]parenchymal (?:scar\w*|thickening|changes?)", r"fibrothorax",
        r"(?:bi)?apical (?:pleural )?(?:thickening|capping|caps?)", r"mesothelioma",
        r"asbestos(?:-related)?(?: pleural disease)?")),
    (("Pneumothorax",), _POS, (
        r"pneumothora(?:x|ces)", r"ptx", r"(?:pleural|apical|subpulmonic) air(?: collections?)?",
        r"(?:air|gas) (?:collection )?in the (?:\w+ )?pleural space")),
    # Lungs.
    (("Edema",), _NEG, (
        r"normal (?:pulmonary )?vascula(?:rity|ture)",
        r"(?:pulmonary )?vascula(?:rity|ture) (?:(?:is|are|remains?|appears?) )*(?:normal|"
        r"within normal limits|unremarkable|not engorged)")),
    (("Edema",), _UNC, (
        r"(?:pulmonary (?:vascular |venous )?|vascular |venous |central (?:venous |vascular )?|"
        r"hilar )congestion", r"congestion", r"congestive changes?",
        r"(?:pulmonary )?venous hypertension",
        r"(?:pulmonary )?vascular (?:engorgement|prominence|redistribution|indistinctness)",
        r"(?:engorged|indistinct) (?:pulmonary |hilar )?(?:vessels|vasculature)",
        r"(?:hilar )?indistinctness",
        r"(?:pulmonary )?vasculature (?:(?:is|are|appears?|remains?) )*(?:\w+ly )?(?:engorged|"
        r"indistinct|congested)", r"cephalization")),
    (("Edema",), _POS, (
        r"edema(?:tous)?", r"(?:fluid|volume) overload", r"heart failure",
        r"congestive (?:heart )?failure",
        r"chf", r"kerley b?[- ]?lines", r"septal lines")),
    (("Lung Lesion",), _POS, (
        r"mass(?:es)?", r"nodules?", r"nodularity", r"lesions?", r"tumou?rs?", r"neoplasms?",
        r"carcinoma", r"malignan(?:cy|cies|t)", r"cancer", r"metasta\w*", r"cavitation",
        r"cavitary (?:lesions?|mass(?:es)?)", r"lump", r"spiculated")),
    (("Atelectasis",), _POS, (r"atelecta\w*", r"collaps\w*")),
    (("Consolidation",), _POS, (r"consolidat\w*", r"air bronchograms?")),
    (("Pneumonia",), _POS, (
        r"(?:broncho)?pneumonias?", r"pneumonic", r"pneumonitis", r"pna", r"infections?",
        r"infectious(?: process| etiology)?")),
    (("Lung Opacity",), _POS, (
        r"opacit(?:y|ies)", r"opacification", r"opacifi(?:ed|ying)",
        r"air[- ]?space (?:disease|opacit(?:y|ies)|process|filling)",
        r"infiltrat(?:e|es|ion|ive)", r"(?:increased|hazy|patchy|streaky|ill[- ]defined|focal|"
        r"linear|retrocardiac|bibasilar|basilar|perihilar) densit(?:y|ies)",
        r"ground[- ]glass", r"haziness", r"hazy", r"reticula(?:r|tion)\w*", r"reticulonodular",
        r"interstitial (?:markings?|opacit(?:y|ies)|pattern|prominence|abnormalit(?:y|ies)|"
        r"thickening|(?:lung )?disease|changes)",
        r"(?:parenchymal |pulmonary |lung )?scar(?:ring|s)?",
        r"fibrotic changes?", r"peribronchial (?:thickening|cuffing)",
        r"(?:bronchial |airway )?wall thickening", r"decreased (?:lung )?translucency")),
    # Fracture and devices.
    (("Fracture",), _POS, (
        r"fractur\w*(?:-dislocations?)?", r"fx", r"compression deformit(?:y|ies)",
        r"broken (?:[\w-]+ ){0,3}?(?:ribs?|clavicles?|bones?|humer(?:us|i)|scapulae?|sternum|"
        r"vertebrae?|spine)")),
    (("Support Devices",), _NEG, (r"extubat\w*",)),
    (("Support Devices",), _POS, (
        r"tubes?", r"(?:et|ng|og|g|j|peg|t)-tubes?", r"ett", r"ngt", r"tracheostomy", r"trach",
        r"catheters?", r"lines?", r"picc", r"cvc", r"cvl", r"(?:introducer )?sheath",
        r"port-?a-?cath", r"mediport", r"ports?", r"ij", r"shunts?(?: tubing| catheters?)?",
        r"tubing",
        r"tips?(?= (?:(?:is|are|now|again|still|which|that) )?(?:in|at|over|overl(?:ies|ying)|"
        r"projects?|projecting|terminat\w*|lies|lying|located|positioned|extends?|ends?|near|"
        r"within|into|just|approximately|about|\d))",
        r"pacemakers?", r"pacers?", r"(?:epicardial |transvenous )?pacing (?:leads?|wires?)",
        r"a?icd", r"defibrillators?", r"loop recorder", r"lvad", r"ventricular assist device",
        r"intra-?aortic balloon(?: pump)?", r"iabp", r"impella", r"cannula",
        r"(?:sternotomy|sternal) sutures", r"(?:cerclage )?wires?", r"cerclage",
        r"sutures?(?: material| lines?)?", r"(?:surgical )?staples?(?: lines?)?", r"clips?",
        r"(?:suture |bone )?anchors?", r"(?:harrington |spinal |fixation )?rods?",
        r"prosthes[ie]s", r"arthroplast\w*", r"endografts?", r"stent-?grafts?",
        r"prosthetic (?:\w+ )?valves?", r"(?:aortic|mitral|tricuspid) (?:valve )?"
        r"(?:replacement|prosthesis)", r"valve replacement", r"annuloplasty(?: ring)?",
        r"stents?", r"(?:embolization )?coils?", r"(?:spinal |orthopedic |surgical |fusion )?"
        r"hardware", r"plates?(?: and screws)?", r"screws?", r"(?:ivc )?filter",
        r"(?:surgical |jp |pleural |pigtail |mediastinal )?drains?",
        r"(?:support|monitoring|indwelling|medical) (?:devices?|lines|equipment)", r"devices?",
        r"electrodes?", r"apparatus", r"(?:temperature|esophageal|manometry) probes?")),
)

_AUX = (r"(?:(?:is|are|was|were|has been|have been|had been|has|have|had|being|be) )?"
        r"(?:(?:now|also|again|currently|still|definitely|clearly|completely|entirely|totally|"
        r"otherwise|radiographically|largely|nearly|since|subsequently) )?")
_CLAUSE_END = r"(?=\s*(?:[.,;:!?]|$|\b(?:and|but|however|although|though|given|rather)\b))"
_SEEN = r"seen|visualized|visible|present|identified|demonstrated|evident|noted"
_UNC_TAIL = (r"(?: (?:be|been|being|have|has|had|also|consistent with|compatible with|"
             r"represent\w*|reflect\w*|indicat\w*|due to|related to|secondary to))*")

_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # (kind, phrases). Kinds: pseudo (looks like a negation, is not one), unc_post / neg_post
    # (reach back), unc_pre / neg_pre (reach forward), unc_bi (nearest mention each side).
    # Earlier kinds win when phrases start at the same place.
    ("pseudo", (
        r"no (?:(?:significant|substantial|appreciable|definite|major|marked|other) )?"
        r"(?:interval )?"
        r"(?:change|increase|decrease|worsening|progression|improvement|enlargement|difference)"
        r"(?: in| of)?",
        r"(?:not|without) (?:(?:significant(?:ly)?|substantial(?:ly)?|appreciabl[ey]|much) )?"
        r"(?:interval )?(?:change[ds]?|increased?|decreased?|worse|worsened|improved)",
        r"not only", r"gram[- ]negative",
        rf"{_AUX}not (?:previously (?:{_SEEN})|(?:{_SEEN}) (?:previously|before|on (?:the )?"
        r"(?:prior|previous)\w*))",
        r"tips? (?:of (?:the |an? )?(?:[\w-]+ ){1,4}?)?(?:is |are )?not (?:well |clearly )?"
        r"(?:seen|visualized|visible|identified|included)")),
    ("unc_post", (
        rf"{_AUX}(?:not|cannot be|can ?not be|can't be|could not be|may not be|not yet) "
        r"(?:(?:entirely|completely|definitely|totally|fully|excluded or) )?(?:excluded|ruled out)",
        r"(?:is |are )?(?:not well|poorly|incompletely|suboptimally|not fully) "
        r"(?:seen|visualized|evaluated|assessed|imaged)",
        r"(?:evaluation|assessment|detection|sensitivity) (?:is |are |was |remains )?(?:\w+ly )?"
        r"limited", rf"{_AUX}(?:cannot|can ?not|could not) be (?:assessed|evaluated)",
        rf"{_AUX}(?:(?:thought|felt|believed) to be )?(?:possible|suspected|questioned|"
        rf"(?:less |un)?likely|probable|favored|considered|a (?:consideration|possibility|concern)|"
        rf"in question|uncertain|equivocal|questionable|suggested){_CLAUSE_END}",
        r"(?:could|may|might|can|would) (?:also )?(?:be|have been) (?:present|seen|noted|"
        r"considered|possible|obscured|hidden|masked)",
        r"(?:is|are) (?:possibly|probably|likely|questionably) (?:present|seen|noted)",
        r"(?:(?:is|are|would|may|might|could) (?:be )?)?(?:difficult|hard) to (?:exclude|rule out|"
        r"detect|see|assess|evaluate|identify|appreciate)",
        r"(?<=\w)\?")),
    ("unc_pre", (
        r"(?:cannot|can ?not|can't|could not|does not|do not|would not|did not|difficult to|"
        r"unable to) (?:entirely |completely |definitely )?(?:exclude|rule out)",
        r"no evidence to (?:exclude|rule out)",
        rf"(?:may|might|could|can|would|possibl[ey]|probabl[ey]|(?:un)?likely|"
        rf"presum(?:ed|ably|ptive)|"
        rf"questionabl[ey]|question of|query|suspicious (?:for|of)|suspicion (?:for|of)|"
        rf"suspect(?:ed|s)?|concern(?:ing)? for|worrisome for|suggestive of|suggests?|suggesting|"
        rf"suggestion of|differential(?: diagnosis| considerations?)?(?: (?:for|of) "
        rf"(?:[\w-]+ ){{1,6}}?(?:includes?|would include))?|perhaps|maybe|vague(?:ly)?|"
        rf"(?:the )?possibility of|limited (?:evaluation|assessment|exam\w*) (?:of|for)|"
        rf"considerations? include|consider(?:ed)?|favou?r(?:ed|ing|s)?|equivocal|indeterminate|"
        rf"uncertain|unclear(?: if| whether)?|apparent(?:ly)?|evaluate for|eval(?:uation)? for|"
        rf"assess(?:ment)? for|(?:to )?rule out|r/o|to exclude|raising (?:the )?(?:possibility|"
        rf"question|concern) (?:of|for)|(?:clinical(?:ly)? )?correlat(?:e|ion) (?:clinically )?"
        rf"for|atypical for){_UNC_TAIL}",
        r"(?<!\w)\?")),
    ("neg_post", (
        rf"{_AUX}(?:not|no longer) (?:\w+ly )?(?:seen|identified|visualized|visible|appreciated|"
        r"demonstrated|evident|present|detected|noted|apparent|delineated)",
        rf"{_AUX}(?:resolved|cleared|disappeared|removed|excluded|ruled out)",
        rf"{_AUX}absent")),
    ("neg_pre", (
        r"no", r"not", r"without", r"negative for", r"free of", r"clear of", r"absence of",
        r"(?:interval )?(?:resolution|removal|clearing|disappearance) of",
        r"(?:(?:prior|remote|known|past) )?history of", r"rather than", r"instead of", r"nor",
        r"neither")),
    ("unc_bi", (r"versus", r"vs", r"and/or", r"or",
                r"(?:is |are )?(?:favou?red|preferred|more likely|less likely) over")),
)

_BREAK_WORDS: tuple[str, ...] = (
    r"but", r"however", r"although", r"though", r"whereas", r"while",
    r"which", r"who", r"yet", r"except", r"aside from", r"apart from", r"other than",
    r"otherwise", r"with", r"and (?:the|there)", r"there (?:is|are|was|were|has|have)",
    r"(?:is|are|was|were)(?! (?:seen|identified|noted|present|demonstrated|evident) to\b)",
    r"has", r"have", r"had", r"remains?", r"persists?",
    r"appears?", r"seems?", r"demonstrat\w*", r"shows?", r"measur\w*", r"terminat\w*",
    r"extend\w*", r"projects?", r"courses?",
)
"""Words where the scope of a cue ends (contrast, relative words, finite verbs); so do [.;:!?]."""
_CLAUSE_OPENERS: tuple[str, ...] = (
    "small", "moderate", "mild", "severe", "stable", "persistent", "unchanged", "new",
    "increased", "decreased", "improved", "residual", "trace", "tiny", "worsening", "worsened",
    "redemonstrated", "again")
"""After a comma these start a new statement: "no pneumothorax, stable small effusion"."""

_UNLABELED_SECTIONS = (
    "clinical history", "clinical information", "clinical indication", "reason for examination",
    "reason for exam", "reason for study", "indication", "history", "comparisons", "comparison",
    "technique", "examination", "exam", "procedure")
"""Section headers whose text is not labeled: why and how the study was done, not what it shows."""
_LABELED_SECTIONS = ("findings", "impression", "conclusion", "summary", "opinion",
                     "recommendations", "recommendation", "notification", "wet read")
"""Headers of sections that are labeled (each also ends the section before it)."""
_ABBREVIATIONS = {"vs.": "vs", "v.s.": "vs", "e.g.": "eg", "i.e.": "ie", "dr.": "dr",
                  "approx.": "approx", "cf.": "cf", "etc.": "etc"}


def _first_chars(items: sre_parse.SubPattern | list) -> tuple[frozenset[str] | None, bool]:
    """(characters a parsed regex can start with, None if any; whether it can match empty)."""
    chars: set[str] = set()
    for op, arg in items:
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue
        if op is sre.LITERAL:
            return frozenset(chars | {chr(arg)}), False
        if op is sre.IN and all(kind in (sre.LITERAL, sre.RANGE) for kind, _ in arg):
            for kind, value in arg:
                chars |= ({chr(value)} if kind is sre.LITERAL
                          else {chr(c) for c in range(value[0], value[1] + 1)})
            return frozenset(chars), False
        if op is sre.SUBPATTERN:
            first, nullable = _first_chars(arg[3])
        elif op is sre.BRANCH:
            parts = [_first_chars(branch) for branch in arg[1]]
            first = (None if any(f is None for f, _ in parts)
                     else frozenset().union(*(f for f, _ in parts)))
            nullable = any(n for _, n in parts)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            first, nullable = _first_chars(arg[2])
            nullable = nullable or arg[0] == 0
        else:
            return None, False
        if first is None:
            return None, False
        chars |= first
        if not nullable:
            return frozenset(chars), False
    return frozenset(chars), True


class _Alternation:
    """Leftmost-first match of whole-word phrases, one row of phrases per label, row order first.

    Equivalent to one big `(row0|row1|...)` regex, but each position tries only the phrases
    that can start with its character (found by parsing each phrase once, with the parser of
    the `re` module): the regex engine would otherwise try every phrase at every word, about
    3x slower on these tables.
    """

    _TRAIL = r"(?:(?![\w-])|(?<=\?))"

    def __init__(self, rows: Sequence[Sequence[str]]):
        buckets: dict[str | None, list[tuple[int, int, str]]] = {}
        self._rows: dict[str, int] = {}
        for row, phrases in enumerate(rows):
            for k, phrase in enumerate(phrases):
                if re.compile(phrase).groups:
                    raise ValueError(f"capturing group in phrase {phrase!r}; use (?:...)")
                self._rows[name := f"g{row}_{k}"] = row
                first, nullable = _first_chars(sre_parse.parse(phrase))
                for char in (None,) if first is None or nullable else first:
                    buckets.setdefault(char, []).append((row, k, f"{phrase}(?P<{name}>)"))
        anywhere = buckets.pop(None, [])  # phrases that may start with any character
        self._by_char = {
            char: re.compile("(?:" + "|".join(p for *_, p in sorted(entries + anywhere)) + ")"
                             + self._TRAIL)
            for char, entries in buckets.items()}

    def spans(self, text: str, starts: Sequence[int]) -> list[tuple[int, int, int]]:
        """(start, end, row) of each non-overlapping leftmost match, left to right.

        `starts` are the positions where a phrase may begin: `_WORD_STARTS` in `text`.
        """
        found, end, by_char, rows = [], 0, self._by_char, self._rows
        for start in starts:
            if start >= end and (pattern := by_char.get(text[start])) is not None:
                if hit := pattern.match(text, start):
                    end = hit.end()
                    found.append((start, end, rows[hit.lastgroup]))
        return found


_WORD_STARTS = re.compile(r"(?<![\w-])\w|\?")
_MENTION_MATCHER = _Alternation([phrases for _, _, phrases in _MENTIONS])
_MENTION_ROWS = [(tuple(_COLUMNS.index(n) for n in names), state) for names, state, _ in _MENTIONS]
_CUE_MATCHER = _Alternation([phrases for _, phrases in _CUES])
_CUE_KINDS = [kind for kind, _ in _CUES]
_BREAK_RE = re.compile(r"[;:!?]|\.(?!\d)|,(?= (?:" + "|".join(_CLAUSE_OPENERS) + r")\b)|\b(?:"
                       + "|".join(_BREAK_WORDS) + r")\b")
_HEADER_RE = re.compile(r"\b(" + "|".join(_UNLABELED_SECTIONS + _LABELED_SECTIONS) + r")\s*:")
_ABBREVIATION_RE = re.compile("|".join(re.escape(a) for a in _ABBREVIATIONS))
_PARAGRAPH_RE = re.compile(r"\n\s*\n")
_SPACE_RE = re.compile(r"\s+")
_ABNORMAL_COLUMNS = np.array([i for i, name in enumerate(_COLUMNS)
                              if name not in ("No Finding", "Support Devices", _NORMAL)])


def _labeled_text(text: str) -> str:
    """`text` without its history and technique sections, each ending at a header or blank line."""
    pieces, start, skipping = [], 0, False
    for header in [*_HEADER_RE.finditer(text), None]:
        stop = header.start() if header else len(text)
        if skipping:
            blank = _PARAGRAPH_RE.search(text, start, stop)
            start = blank.end() if blank else stop
        pieces.append(text[start:stop])
        if header:
            skipping, start = header.group(1) in _UNLABELED_SECTIONS, header.end()
    return " . ".join(pieces)


def _normalize(report: str) -> str:
    """Lower case, labeled sections only, paragraph breaks as sentence ends, single spaces."""
    text = report.lower()
    if ":" in text:
        text = _labeled_text(text)
    text = _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group(0)], text)
    return _SPACE_RE.sub(" ", _PARAGRAPH_RE.sub(" . ", text))


def _scope(kind: str, c0: int, c1: int, mentions: list[tuple[int, int, int]],
           starts: list[int], breaks: list[int], text: str) -> list[int]:
    """Indices of the mentions that a cue of `kind` at text[c0:c1] applies to.

    No breaker may lie between cue and mention, nor inside the mention: a mention with its
    own verb ("the heart is enlarged") is a statement of its own. A `_bi` cue after a comma
    ("atelectasis, scarring, or pneumonia") reaches back over the whole comma list.
    """
    inside = [i for i, (m0, m1, _) in enumerate(mentions) if m0 <= c0 and c1 <= m1]
    if inside:  # "heart is not enlarged": the cue belongs to that mention only
        return inside
    hits = []
    if kind.endswith(("_pre", "_bi")):  # forward, up to the first breaker after the cue
        first = bisect.bisect_left(starts, c1)
        limit_at = bisect.bisect_left(breaks, c1)
        limit = breaks[limit_at] if limit_at < len(breaks) else mentions[-1][1]
        last = len(mentions) if kind.endswith("_pre") else min(first + 1, len(mentions))
        hits += [i for i in range(first, last) if mentions[i][1] <= limit]
    if kind.endswith(("_post", "_bi")):  # backward, down to the last breaker before the cue
        bound_at = bisect.bisect_left(breaks, c0) - 1
        bound = breaks[bound_at] if bound_at >= 0 else -1
        before = [i for i in range(bisect.bisect_right(starts, c0) - 1, -1, -1)
                  if starts[i] > bound and mentions[i][1] <= c0]
        if kind.endswith("_bi"):
            listed = before[:1]
            if listed and text[mentions[listed[0]][1]:c0] == ", ":
                for i in before[1:]:
                    if text[mentions[i][1]:mentions[listed[-1]][0]] != ", ":
                        break
                    listed.append(i)
            before = listed
        hits += before
    return hits


def _mention_states(text: str) -> np.ndarray:
    """Rank (0 none, 1 neg, 2 unc, 3 pos) of each column of `_COLUMNS` in one normalized report."""
    ranks = np.zeros(len(_COLUMNS), dtype=np.int8)
    word_starts = [m.start() for m in _WORD_STARTS.finditer(text)]
    mentions = _MENTION_MATCHER.spans(text, word_starts)
    if not mentions:
        return ranks
    starts = [start for start, _, _ in mentions]
    breaks = [b.start() for b in _BREAK_RE.finditer(text)]
    negated, uncertain = set(), set()
    for c0, c1, row in _CUE_MATCHER.spans(text, word_starts):
        kind = _CUE_KINDS[row]
        if kind != "pseudo":
            (negated if kind.startswith("neg") else uncertain).update(
                _scope(kind, c0, c1, mentions, starts, breaks, text))
    for i, (_, _, row) in enumerate(mentions):
        columns, default = _MENTION_ROWS[row]
        state = _NEG if i in negated or default == _NEG else (
            _UNC if i in uncertain or default == _UNC else _POS)
        for column in columns:
            ranks[column] = max(ranks[column], state)
    return ranks


def _report_labels(report: str) -> np.ndarray:
    """The 14 labels of one report (see the module docstring for the No Finding rule)."""
    ranks = _mention_states(_normalize(report))
    if ranks[_ABNORMAL_COLUMNS].max() >= _UNC:
        ranks[findings.NO_FINDING] = _NEG
    elif ranks.max() > 0:
        ranks[findings.NO_FINDING] = _POS
    return _RANK_TO_LABEL[ranks[:findings.NUM_FINDINGS]]


def label(reports: Sequence[str]) -> np.ndarray:
    """Labels each report: int8 array (n, 14) in `FINDINGS` order, 1 / 0 / -1 / -2 encoding.

    An empty report (or one that mentions no observation) is all -2, No Finding included.
    Raises TypeError naming the index of any report that is not a str.
    """
    out = np.empty((len(reports), findings.NUM_FINDINGS), dtype=np.int8)
    for i, report in enumerate(reports):
        if not isinstance(report, str):
            raise TypeError(f"report {i} is {type(report).__name__}, expected str")
        out[i] = _report_labels(report)
    return out
