"""A held-out set of report sentences for the labeler, written before its rules were tuned
and never used to tune them: each report with the findings a reader would call definitely
present (an uncertain or hedged mention counts as absent, as in the real-report evaluation).

`benchmarks/labeler_fidelity.py` prints the macro F1 on it and on the tuning cases of
tests/test_labeler.py; tests/test_labeler.py checks it stays above the project's goal.
"""

from __future__ import annotations

HELD_OUT: list[tuple[str, frozenset[str]]] = [(report, frozenset(positives))
                                              for report, positives in [
    # Pneumonia: hedges and differentials are not definite; synonyms are.
    ("Right basilar airspace disease which might represent pneumonia.", {"Lung Opacity"}),
    ("Left lower lobe opacity; pneumonia could be considered.", {"Lung Opacity"}),
    ("Patchy opacity in the lingula, atelectasis or early pneumonia.", {"Lung Opacity"}),
    ("Findings may be due to aspiration pneumonia.", set()),
    ("Right middle lobe pneumonia.", {"Pneumonia"}),
    ("Bilateral lower lobe infiltrates consistent with pneumonia.", {"Lung Opacity", "Pneumonia"}),
    ("Dense right upper lobe consolidation compatible with pneumonia.",
     {"Consolidation", "Pneumonia"}),
    ("Streaky left basilar opacities, likely atelectasis versus infiltrate.", {"Lung Opacity"}),
    ("Interval improvement of the left lower lobe pneumonia.", {"Pneumonia"}),
    ("Airspace disease in the right lower lobe is suspicious for pneumonia.", {"Lung Opacity"}),
    ("The differential for the right perihilar opacity includes pneumonia and edema.",
     {"Lung Opacity"}),
    ("Infectious infiltrate in the left upper lobe.", {"Lung Opacity", "Pneumonia"}),
    ("Pneumonitis at the right base.", {"Pneumonia"}),
    ("No radiographic evidence of pneumonia.", set()),
    # Lung lesion.
    ("Several nodular opacities in the right upper lobe.", {"Lung Lesion", "Lung Opacity"}),
    ("Calcified nodule in the left lower lobe, consistent with old granulomatous disease.",
     {"Lung Lesion"}),
    ("Scattered calcified granulomas.", {"Lung Lesion"}),
    ("A dense 6 mm nodule projects over the right mid lung.", {"Lung Lesion"}),
    ("Fibronodular scarring in both apices.", {"Lung Lesion", "Lung Opacity"}),
    ("Possible left hilar mass; CT is recommended.", set()),
    ("There is a vague nodular opacity in the left mid lung.", set()),
    ("Rounded opacity in the left upper lobe may represent a nodule.", {"Lung Opacity"}),
    ("No suspicious pulmonary nodules or masses.", set()),
    ("Spiculated right upper lobe mass.", {"Lung Lesion"}),
    ("Granuloma in the right upper lobe is unchanged.", {"Lung Lesion"}),
    # Support devices, named by kind; postoperative changes without a device are not.
    ("Ventriculoperitoneal shunt tubing courses over the right chest.", {"Support Devices"}),
    ("Left subclavian port with the catheter tip at the cavoatrial junction.",
     {"Support Devices"}),
    ("Right IJ central line tip in the upper SVC.", {"Support Devices"}),
    ("Suture anchors in the left humeral head.", {"Support Devices"}),
    ("Cholecystectomy clips in the right upper quadrant.", {"Support Devices"}),
    ("Surgical clips in the left axilla.", {"Support Devices"}),
    ("Stent in the left main coronary artery.", {"Support Devices"}),
    ("Intact sternal cerclage wires.", {"Support Devices"}),
    ("Postoperative changes of the right hemithorax.", set()),
    ("Status post CABG.", set()),
    ("Postsurgical changes from prior left upper lobectomy.", set()),
    ("Status post median sternotomy. No acute disease.", set()),
    ("Cervical spine fusion hardware is partially imaged.", {"Support Devices"}),
    ("Dual-chamber pacemaker leads terminate in the right heart.", {"Support Devices"}),
    # Edema and congestion.
    ("Mild central vascular congestion.", set()),
    ("Prominent interstitial markings may reflect mild interstitial edema.", {"Lung Opacity"}),
    ("Findings suggest mild fluid overload.", set()),
    ("Moderate interstitial pulmonary edema.", {"Edema"}),
    ("Perihilar haziness with Kerley B lines, consistent with edema.",
     {"Lung Opacity", "Edema"}),
    ("There is probably mild pulmonary vascular congestion.", set()),
    ("Pulmonary edema has resolved.", set()),
    ("Worsening congestive heart failure with bilateral effusions.",
     {"Edema", "Pleural Effusion"}),
    # Fracture.
    ("Broken left 5th and 6th ribs.", {"Fracture"}),
    ("Fracture-dislocation of the right shoulder.", {"Fracture"}),
    ("Healing fractures of the right posterior ribs.", {"Fracture"}),
    ("No acute bony abnormality.", set()),
    ("Possible nondisplaced fracture of the left clavicle.", set()),
    ("Old right clavicle fracture deformity.", {"Fracture"}),
    # Pneumothorax.
    ("Small left hydropneumothorax.", {"Pneumothorax", "Pleural Effusion"}),
    ("Pleural air collection at the right apex.", {"Pneumothorax"}),
    ("Evaluation for pneumothorax is limited by the supine technique.", set()),
    ("Assessment for a small apical pneumothorax is limited on this portable film.", set()),
    ("Tiny residual left apical pneumothorax after chest tube removal.", {"Pneumothorax"}),
    ("No pneumothorax after the biopsy.", set()),
    ("A pneumothorax is not entirely excluded at the left apex.", set()),
    # Other findings, to keep every finding in view.
    ("Small left pleural effusion with basilar atelectasis.",
     {"Pleural Effusion", "Atelectasis"}),
    ("Heart size is mildly enlarged.", {"Cardiomegaly"}),
    ("Stable cardiomegaly without effusion.", {"Cardiomegaly"}),
    ("The heart is normal in size. Lungs are clear.", set()),
    ("Subsegmental atelectasis in the left lower lobe.", {"Atelectasis"}),
    ("Pleural thickening at the right apex.", {"Pleural Other"}),
    ("Right lower lobe consolidation.", {"Consolidation"}),
    ("No focal airspace consolidation, effusion or pneumothorax.", set()),
    ("Mediastinal widening.", {"Enlarged Cardiomediastinum"}),
    # Whole reports, Open-I style.
    ("The heart is normal in size. The mediastinum is unremarkable. Status post median "
     "sternotomy. The lungs are clear.", set()),
    ("There is a right-sided Port-A-Cath with tip in the distal SVC. Heart size is within "
     "normal limits. No focal airspace disease. No pneumothorax or pleural effusion.",
     {"Support Devices"}),
    ("Stable calcified granuloma in the right lower lobe. No focal consolidation. Heart size "
     "normal.", {"Lung Lesion"}),
    ("Heart size is enlarged. There are bilateral interstitial opacities which may represent "
     "edema versus atypical infection. Small bilateral effusions.",
     {"Cardiomegaly", "Lung Opacity", "Pleural Effusion"}),
    ("Left basilar opacity may represent atelectasis, although pneumonia is not excluded.",
     {"Lung Opacity"}),
    ("Degenerative changes of the thoracic spine. Surgical clips in the upper abdomen. No acute "
     "cardiopulmonary abnormality.", {"Support Devices"}),
]]


def f1_by_finding(reports: list[str], positives: list[frozenset[str]]) -> dict[str, float]:
    """F1 of the labeler's definite positives (1; uncertain counts as absent) per finding that
    is positive somewhere in the set or that the labeler calls positive, No Finding left out."""
    import numpy as np
    from sklearn.metrics import f1_score

    from chexficient import findings, labeler

    predicted = labeler.label(reports) == findings.POSITIVE
    scores = {}
    for j, name in enumerate(findings.FINDINGS[1:], start=1):
        truth = np.array([name in p for p in positives])
        if truth.any() or predicted[:, j].any():
            scores[name] = float(f1_score(truth, predicted[:, j], zero_division=0.0))
    return scores
