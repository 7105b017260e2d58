"""The mimic_cxr, chexpert, chexpert_plus, padchest and openi builders on tiny fixture trees
in the exact real layouts: counts, labels, reports, views, skips and layout errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from chexficient.data import registry
from chexficient.data.builders._common import ManualDirError, RealCxrConfig, build_skips_path
from chexficient.data.builders.chexpert import Chexpert
from chexficient.data.builders.chexpert_plus import ChexpertPlus
from chexficient.data.builders.mimic_cxr import MimicCxr, MimicCxrConfig
from chexficient.data.builders.openi import Openi
from chexficient.data.builders import padchest
from chexficient.data.builders.padchest import Padchest, parse_labels
from chexficient.findings import FINDINGS, index
from chexficient.data.views import infer_view
from real_fixtures import (build, synthetic_radiographs, write_csv, write_garbage, write_jpeg,
                           write_png, write_text)

SIZE = 64
FRONTAL = RealCxrConfig(name="test_frontal", image_size=SIZE)
ALL_VIEWS = RealCxrConfig(name="test_all", image_size=SIZE, views=("frontal", "lateral", "unknown"))


def picture(height: int, width: int, dtype=np.uint8, low: int = 120, high: int = 250
            ) -> np.ndarray:
    """Flat `low` with a `high` square: padding (0) stays distinguishable after resizing."""
    image = np.full((height, width), low, dtype)
    image[height // 4: height // 2, width // 4: width // 2] = high
    return image


def labels_of(**named: int) -> list[int]:
    out = [-2] * len(FINDINGS)
    for name, value in named.items():
        out[index(name.replace("_", " "))] = value
    return out


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


def skipped(builder, split: str) -> dict[str, str]:
    """id -> why, from the split's build skip list."""
    path = build_skips_path(builder.data_dir, split)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return {row[0]: row[2] for row in rows}


def common_checks(records: list[dict], source: str) -> None:
    for r in records:
        assert r["image"].shape == (SIZE, SIZE) and r["image"].dtype == np.uint8
        assert r["labels"].dtype == np.int8 and r["source"] == source
        assert r["view"] in ("frontal", "lateral", "unknown")
        json.loads(r["extra_labels"])


# ----------------------------------------------------------------------------- CheXpert

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *FINDINGS]


def chexpert_tree(root: str, *, test: bool = True) -> str:
    release = os.path.join(root, "CheXpert-v1.0-small")
    rows = []
    for patient, view, kind, ap, cells in [
            ("00001", "view1_frontal", "Frontal", "AP", {"Edema": "1.0", "Cardiomegaly": "-1.0"}),
            ("00001", "view2_lateral", "Lateral", "", {"Edema": "1.0"}),
            ("00002", "view1_frontal", "Frontal", "PA", {"No Finding": "1.0"}),
            ("00003", "view1_frontal", "Frontal", "AP", {"Support Devices": "1.0"})]:
        path = f"train/patient{patient}/study1/{view}.jpg"
        if patient == "00003":
            write_garbage(os.path.join(release, path))
        else:
            write_jpeg(os.path.join(release, path), picture(48, 32))
        rows.append([f"CheXpert-v1.0-small/{path}", "Female", 71, kind, ap,
                     *[cells.get(name, "") for name in FINDINGS]])
    write_csv(os.path.join(release, "train.csv"), CHEXPERT_HEADER, rows)
    valid = "valid/patient64541/study1/view1_frontal.jpg"
    write_jpeg(os.path.join(release, valid), picture(32, 48))
    write_csv(os.path.join(release, "valid.csv"), CHEXPERT_HEADER,
              [[f"CheXpert-v1.0-small/{valid}", "Male", 55, "Frontal", "AP", *["0.0"] * 13, "1.0"]])
    if test:  # per study, as the 500-study test labels: both views of the study
        for view in ("view1_frontal", "view2_lateral"):
            write_jpeg(os.path.join(release, f"test/patient64741/study1/{view}.jpg"),
                       picture(40, 40))
        write_csv(os.path.join(release, "test_labels.csv"), ["Study", *FINDINGS],
                  [["CheXpert-v1.0/test/patient64741/study1", *[0] * 7, 1, *[0] * 6]])
    return release


def test_chexpert_splits_labels_views_and_skips(tmp_path):
    release = chexpert_tree(str(tmp_path))
    builder, records = build(Chexpert, FRONTAL, release, str(tmp_path / "data"))
    assert {s: len(r) for s, r in records.items()} == {"train": 2, "validation": 1, "test": 1}
    train = by_id(records["train"])
    assert sorted(train) == ["train/patient00001/study1/view1_frontal",
                             "train/patient00002/study1/view1_frontal"]
    first = train["train/patient00001/study1/view1_frontal"]
    assert first["labels"].tolist() == labels_of(Edema=1, Cardiomegaly=-1)  # uncertain kept
    assert first["report"] == "" and first["view"] == "frontal"
    # 48 x 32 -> 64 x 43, centred: 10 columns of padding left, 11 right
    assert first["image"][:, :10].max() == 0 and first["image"][:, 53:].max() == 0
    assert first["image"][:, 11:52].min() > 100
    (bad, why), = skipped(builder, "train").items()
    assert bad == "train/patient00003/study1/view1_frontal" and "cannot read image" in why
    assert records["validation"][0]["labels"].tolist() == [0] * 13 + [1]
    test = records["test"][0]
    assert test["id"] == "test/patient64741/study1/view1_frontal"
    assert test["labels"][index("Pneumonia")] == 1 and test["labels"].min() == 0
    common_checks(records["train"] + records["test"], "chexpert")

    _, records = build(Chexpert, ALL_VIEWS, release, str(tmp_path / "all"))
    assert {s: len(r) for s, r in records.items()} == {"train": 3, "validation": 1, "test": 2}
    lateral = by_id(records["train"])["train/patient00001/study1/view2_lateral"]
    assert lateral["view"] == "lateral"


def test_chexpert_without_test_labels_and_missing_files(tmp_path):
    release = chexpert_tree(str(tmp_path), test=False)
    _, records = build(Chexpert, FRONTAL, release, str(tmp_path / "data"))
    assert sorted(records) == ["train", "validation"]
    os.remove(os.path.join(release, "train/patient00001/study1/view1_frontal.jpg"))
    with pytest.raises(ManualDirError) as error:  # the CSV's first image: a wrong folder
        build(Chexpert, FRONTAL, release, str(tmp_path / "other"))
    assert f"missing {release}/train/patient00001/study1/view1_frontal.jpg" in str(error.value)
    os.remove(os.path.join(release, "valid.csv"))
    with pytest.raises(ManualDirError) as error:
        build(Chexpert, FRONTAL, release, str(tmp_path / "again"))
    message = str(error.value)
    assert f"missing {release}/valid.csv" in message
    assert "├── train.csv\n├── valid.csv\n├── train/" in message
    with pytest.raises(ManualDirError, match="missing .*train.csv"):  # the parent folder
        build(Chexpert, FRONTAL, str(tmp_path), str(tmp_path / "parent"))


def test_chexpert_bad_label_names_the_csv_line_before_writing(tmp_path):
    release = chexpert_tree(str(tmp_path), test=False)
    path = os.path.join(release, "valid.csv")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("AP,0.0,", "AP,0.0,2.0,", 1).replace(",0.0,1.0\n", ",1.0\n"))
    with pytest.raises(ValueError, match=f"{path} line 2 column 'Enlarged Cardiomediastinum': "
                                         "label '2.0' is "
                                         "not one of 1, 0, -1 or blank"):
        build(Chexpert, FRONTAL, release, str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data" / "chexficient_chexpert" / "frontal" / "1.0.0")


def test_a_split_left_empty_says_why(tmp_path):
    release = chexpert_tree(str(tmp_path), test=False)
    write_garbage(os.path.join(release, "valid/patient64541/study1/view1_frontal.jpg"))
    with pytest.raises(ManualDirError, match="chexpert validation: no record to write; 1 skipped "
                                             r"\(first: valid/patient64541.*cannot read image"):
        build(Chexpert, FRONTAL, release, str(tmp_path / "data"))


# ----------------------------------------------------------------------------- MIMIC-CXR

MIMIC_FULL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___M with cough, evaluate for pneumonia.

 COMPARISON:  ___

 FINDINGS:

 Heart size is mildly enlarged.  There is a small left pleural effusion with
 adjacent atelectasis.  No pneumothorax.

 IMPRESSION:

 Small left pleural effusion and mild cardiomegaly.

 ______________________________________________________________________________
                                 FINAL ADDENDUM
 ADDENDUM:  Findings were communicated to Dr. ___ at 4:10 p.m. on ___.
"""
MIMIC_IMPRESSION_ONLY = """                                 FINAL REPORT
 INDICATION:  Intubated patient.

 IMPRESSION:  Endotracheal tube terminates 4 cm above the carina.  No pneumothorax.
"""
MIMIC_NO_SECTIONS = """                                 FINAL REPORT
 WET READ: ___ ___ 10:24 PM
   No acute process.
"""
METADATA_HEADER = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                   "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime",
                   "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
                   "PatientOrientationCodeSequence_CodeMeaning"]

# dicom_id, subject, study, view, official split, report (None: no file), image kind
MIMIC_IMAGES = [
    ("d1", "10000032", "50414267", "PA", "train", MIMIC_FULL, "ok"),
    ("d2", "10000032", "50414267", "LATERAL", "train", MIMIC_FULL, "ok"),
    ("d3", "10000032", "50000003", "AP", "train", MIMIC_FULL, "garbage"),
    ("d4", "11000011", "51111111", "AP", "validate", MIMIC_IMPRESSION_ONLY, "ok"),
    ("d5", "12000012", "52222222", "PA", "test", MIMIC_NO_SECTIONS, "ok"),
    ("d6", "12000012", "52222223", "PA", "test", None, "ok"),
    ("d7", "13000013", "53333333", "LL", "test", MIMIC_FULL, "ok"),
    ("d8", "13000013", "53333334", "PA", "test", MIMIC_IMPRESSION_ONLY, "ok"),
]


def mimic_tree(root: str) -> str:
    metadata, split = [], []
    for dicom, subject, study, view, official, report, kind in MIMIC_IMAGES:
        folder = os.path.join(root, f"files/p{subject[:2]}/p{subject}/s{study}")
        (write_garbage if kind == "garbage" else
         lambda p: write_jpeg(p, picture(40, 40)))(os.path.join(folder, f"{dicom}.jpg"))
        if report is not None:
            write_text(folder + ".txt", report)
        metadata.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 40, 40, 21800506,
                         213014.5, "CHEST (PA AND LAT)", "postero-anterior", "Erect"])
        split.append([dicom, study, subject, official])
    write_csv(os.path.join(root, "mimic-cxr-2.0.0-metadata.csv.gz"), METADATA_HEADER, metadata)
    write_csv(os.path.join(root, "mimic-cxr-2.0.0-split.csv.gz"),
              ["dicom_id", "study_id", "subject_id", "split"], split)
    for name, effusion in (("chexpert", "1.0"), ("negbio", "-1.0")):
        cells = {"Pleural Effusion": effusion, "Cardiomegaly": "1.0", "Pneumothorax": "0.0"}
        write_csv(os.path.join(root, f"mimic-cxr-2.0.0-{name}.csv.gz"),
                  ["subject_id", "study_id", *FINDINGS],
                  [["10000032", "50414267", *[cells.get(f, "") for f in FINDINGS]],
                   ["11000011", "51111111", *[""] * 9, "0.0", *[""] * 3, "1.0"]])
    return root


def test_mimic_cxr_reports_splits_labels_and_skips(tmp_path):
    root = mimic_tree(str(tmp_path / "mimic"))
    builder, records = build(MimicCxr, MimicCxrConfig(name="t", image_size=SIZE), root,
                             str(tmp_path / "data"))
    assert {s: [r["id"] for r in rs] for s, rs in records.items()} == {
        "train": ["d1"], "validation": ["d4"], "test": ["d8"]}
    d1 = records["train"][0]
    assert d1["report"] == ("Heart size is mildly enlarged. There is a small left pleural effusion "
                            "with adjacent atelectasis. No pneumothorax. Small left pleural "
                            "effusion and mild cardiomegaly. Findings were communicated to Dr. ___ "
                            "at 4:10 p.m. on ___.")
    assert d1["labels"].tolist() == labels_of(Pleural_Effusion=1, Cardiomegaly=1, Pneumothorax=0)
    assert records["validation"][0]["report"] == ("Endotracheal tube terminates 4 cm above the "
                                                  "carina. No pneumothorax.")
    assert records["validation"][0]["labels"].tolist() == labels_of(Pneumothorax=0,
                                                                    Support_Devices=1)
    assert records["test"][0]["labels"].tolist() == [-2] * 14  # no row in the label file
    assert list(skipped(builder, "train")) == ["d3"]
    assert skipped(builder, "test") == {"d5": "no FINDINGS or IMPRESSION section",
                                        "d6": "no report file"}
    common_checks([r for rs in records.values() for r in rs], "mimic_cxr")

    negbio = MimicCxrConfig(name="n", image_size=SIZE, label_source="negbio",
                            views=("frontal", "lateral"))
    _, records = build(MimicCxr, negbio, root, str(tmp_path / "negbio"))
    train = by_id(records["train"])
    assert sorted(train) == ["d1", "d2"] and train["d2"]["view"] == "lateral"
    assert train["d1"]["labels"][index("Pleural Effusion")] == -1
    assert [r["id"] for r in records["test"]] == ["d7", "d8"]  # LL is lateral


def test_mimic_cxr_missing_reports_and_files(tmp_path):
    root = mimic_tree(str(tmp_path / "mimic"))
    os.remove(os.path.join(root, "files/p10/p10000032/s50414267.txt"))
    with pytest.raises(ManualDirError, match="missing .*files/p10/p10000032/s50414267.txt"):
        build(MimicCxr, MimicCxrConfig(name="t", image_size=SIZE), root, str(tmp_path / "a"))
    os.remove(os.path.join(root, "mimic-cxr-2.0.0-negbio.csv.gz"))
    with pytest.raises(ManualDirError, match="missing .*negbio.csv.gz"):
        build(MimicCxr, MimicCxrConfig(name="n", image_size=SIZE, label_source="negbio"), root,
              str(tmp_path / "b"))
    os.remove(os.path.join(root, "mimic-cxr-2.0.0-split.csv.gz"))
    with pytest.raises(ManualDirError) as error:
        build(MimicCxr, MimicCxrConfig(name="t", image_size=SIZE), root, str(tmp_path / "c"))
    assert f"missing {root}/mimic-cxr-2.0.0-split.csv.gz" in str(error.value)
    assert "<dicom_id>.jpg  (one of many)" in str(error.value)


# ----------------------------------------------------------------------------- CheXpert-Plus

PLUS_HEADER = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
               "patient_report_date_order", "report", "section_narrative",
               "section_clinical_history", "section_history", "section_comparison",
               "section_technique", "section_procedure_comments", "section_findings",
               "section_impression", "section_end_of_impression", "section_summary",
               "section_accession_number", "age", "sex", "race", "ethnicity",
               "interpreter_needed", "insurance_type", "recent_bmi", "deceased", "split"]


def plus_tree(root: str) -> str:
    rows, labels = [], []
    for path, view, findings, impression, split in [
            ("train/patient42142/study5/view1_frontal.jpg", "Frontal",
             "\nThe lungs are clear.\n\nNo pleural effusion. ", "1. No acute process.", "train"),
            ("train/patient42142/study5/view2_lateral.jpg", "Lateral", "The lungs are clear.",
             "1. No acute process.", "train"),
            ("train/patient42143/study1/view1_frontal.jpg", "Frontal", "", "", "train"),
            ("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "",
             "Stable cardiomegaly.", "valid")]:
        write_png(os.path.join(root, "PNG/PNG", path.replace(".jpg", ".png")), picture(32, 32))
        cells = {"path_to_image": path, "frontal_lateral": view, "section_findings": findings,
                 "section_impression": impression, "split": split,
                 "report": f"FINDINGS: {findings} IMPRESSION: {impression}"}
        rows.append([cells.get(column, "") for column in PLUS_HEADER])
        if split == "train":
            labels.append({"path_to_image": path, **{f: None for f in FINDINGS},
                           "No Finding": 1.0, "Pleural Effusion": 0.0, "Lung Opacity": -1.0})
    write_csv(os.path.join(root, "df_chexpert_plus_240401.csv"), PLUS_HEADER, rows)
    write_text(os.path.join(root, "chexbert_labels/findings_fixed.json"),
               "".join(json.dumps(line) + "\n" for line in labels))
    return root


def test_chexpert_plus_sections_png_paths_and_labels(tmp_path):
    root = plus_tree(str(tmp_path / "plus"))
    _, records = build(ChexpertPlus, FRONTAL, root, str(tmp_path / "data"))
    train, valid = by_id(records["train"]), records["validation"]
    assert sorted(train) == ["train/patient42142/study5/view1_frontal",
                             "train/patient42143/study1/view1_frontal"]
    first = train["train/patient42142/study5/view1_frontal"]
    assert first["report"] == "The lungs are clear. No pleural effusion. 1. No acute process."
    assert first["labels"].tolist() == labels_of(No_Finding=1, Pleural_Effusion=0,
                                                 Lung_Opacity=-1)
    assert train["train/patient42143/study1/view1_frontal"]["report"] == ""
    assert valid[0]["report"] == "Stable cardiomegaly." and valid[0]["labels"].tolist() == [-2] * 14
    assert valid[0]["image"][8:56, 8:56].min() >= 120  # the PNG, not padding
    common_checks(records["train"] + valid, "chexpert_plus")
    os.remove(os.path.join(root, "PNG/PNG/train/patient42142/study5/view1_frontal.png"))
    with pytest.raises(ManualDirError, match="missing .*PNG/PNG/train/patient42142/study5/"
                                             "view1_frontal.png"):
        build(ChexpertPlus, FRONTAL, root, str(tmp_path / "again"))


# ----------------------------------------------------------------------------- PadChest

PADCHEST_HEADER = ["", "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID",
                   "PatientBirth", "PatientSex_DICOM", "ViewPosition_DICOM", "Projection",
                   "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
                   "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM",
                   "PixelAspectRatio_DICOM", "SpatialResolution_DICOM", "BitsStored_DICOM",
                   "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM", "Columns_DICOM",
                   "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM",
                   "ExposureTime", "RelativeXRayExposure_DICOM", "ReportID", "Report",
                   "MethodLabel", "Labels", "Localizations", "LabelsLocalizationsBySentence",
                   "labelCUIS", "LocalizationsCUIS"]


def padchest_tree(root: str) -> str:
    rows = []
    for n, (folder, projection, report, labels, kind) in enumerate([
            ("0", "PA", "sin hallazgos patologicos significativos .", "['normal']", "ok"),
            ("0", "AP", "cardiomegalia . derrame pleural izquierdo . marcapasos .",
             "['cardiomegaly', 'pleural effusion', 'costophrenic angle blunting', ' pacemaker']",
             "ok"),
            ("1", "L", "cardiomegalia .", "['cardiomegaly']", "ok"),
            ("1", "PA", "", "nan", "ok"),
            ("1", "AP_horizontal", "engrosamiento pleural apical .",
             "['apical pleural thickening']", "garbage"),
            ("1", "COSTAL", "fractura costal .", "['rib fracture']", "ok"),
            ("1", "PA", "escoliosis . atelectasia basal .",
             "['scoliosis', 'atelectasis basal', 'new term']", "ok"),
            ("0", "PA", "sin cambios .", "[]", "ok")]):
        image_id = f"2168401113669640123393565638620090721114040{n:02d}_00-043-192.png"
        path = os.path.join(root, folder, image_id)
        if kind == "garbage":
            write_garbage(path)
        else:  # 16 bit, a 12-bit detector's range
            write_png(path, picture(48, 40, np.uint16, low=600, high=3800))
        cells = {"": str(n), "ImageID": image_id, "ImageDir": folder, "Projection": projection,
                 "Report": report, "Labels": labels, "MethodLabel": "Physician",
                 "Localizations": "[]", "BitsStored_DICOM": "12"}
        rows.append([cells.get(column, "") for column in PADCHEST_HEADER])
    write_csv(os.path.join(root, "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"),
              PADCHEST_HEADER, rows)
    return root


def test_padchest_label_lists_spanish_reports_and_16_bit_images(tmp_path):
    root = padchest_tree(str(tmp_path / "padchest"))
    builder, records = build(Padchest, FRONTAL, root, str(tmp_path / "data"))
    assert list(records) == ["train"]
    train = records["train"]
    assert [r["id"][43:45] for r in train] == ["00", "01", "03", "06", "07"]
    normal, sick, unlabeled, unknown, empty_list = train
    assert normal["report"] == "sin hallazgos patologicos significativos ."
    assert normal["labels"][index("No Finding")] == 1 and normal["labels"][index("Edema")] == 0
    assert normal["labels"][index("Lung Opacity")] == 0  # the table covers it: negative
    assert sick["labels"].tolist() == [
        0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]  # pacemaker -> Support Devices
    assert json.loads(sick["extra_labels"]) == {"unmapped": [], "unknown": []}  # blunting: -1
    assert unlabeled["labels"].tolist() == [-2] * 14
    assert json.loads(unlabeled["extra_labels"]) == {"raw": "nan", "unmapped": []}
    # an empty list is no inventory of the image: like a blank cell, never 14 negatives
    assert empty_list["labels"].tolist() == [-2] * 14
    assert json.loads(empty_list["extra_labels"]) == {"raw": "[]", "unmapped": []}
    # a term the table lacks: nothing is negative on that row, the term is listed
    assert unknown["labels"].tolist() == labels_of(No_Finding=0, Atelectasis=1)
    assert json.loads(unknown["extra_labels"]) == {"unmapped": ["scoliosis", "new term"],
                                                   "unknown": ["new term"]}
    # 16-bit stretched: flat 600 -> 0 inside the image, the 3800 square -> 255
    assert normal["image"].max() == 255 and normal["image"][32, 32] == 0
    assert list(skipped(builder, "train")) == [train[0]["id"][:43] + "04_00-043-192.png"]
    common_checks(train, "padchest")
    _, records = build(Padchest, ALL_VIEWS, root, str(tmp_path / "all"))
    assert [r["view"] for r in records["train"]] == [
        "frontal", "frontal", "lateral", "frontal", "frontal", "frontal"]


def test_data_stats_counts_unmapped_and_unknown_labels(tmp_path):
    """`chexficient data stats` lists the dataset labels no finding takes, with counts."""
    root, data_dir, out = padchest_tree(str(tmp_path / "padchest")), str(tmp_path / "data"), \
        str(tmp_path / "stats.json")

    def data(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chexficient.cli", "data", *args, "padchest",
                               "--data_dir", data_dir], capture_output=True, text=True, timeout=300)

    assert data("build", "--manual_dir", root).returncode == 0
    run = data("stats", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "1 labels, not in the dataset's label table: new term (1)" in run.stdout
    stats = json.loads(open(out).read())
    assert stats["unknown_labels"] == {"new term": 1}
    assert stats["unmapped_labels"] == {"scoliosis": 1, "new term": 1}  # the frontal rows


PADCHEST_TERMS = """COPD signs|Chilaiditi sign|NSG tube|abnormal foreign body|abscess|adenopathy|
air bronchogram|air fluid level|air trapping|alveolar pattern|aortic aneurysm|
aortic atheromatosis|aortic button enlargement|aortic elongation|aortic endoprosthesis|
apical pleural thickening|artificial aortic heart valve|artificial heart valve|
artificial mitral heart valve|asbestosis signs|ascendent aortic elongation|atelectasis|
atelectasis basal|atypical pneumonia|axial hyperostosis|azygoesophageal recess shift|
azygos lobe|blastic bone lesion|bone cement|bone metastasis|breast mass|bronchiectasis|
bronchovascular markings|bullas|calcified adenopathy|calcified densities|
calcified fibroadenoma|calcified granuloma|calcified mediastinal adenopathy|
calcified pleural plaques|calcified pleural thickening|callus rib fracture|cardiomegaly|
catheter|cavitation|central vascular redistribution|central venous catheter|
central venous catheter via jugular vein|central venous catheter via subclavian vein|
central venous catheter via umbilical vein|cervical rib|chest drain tube|chronic changes|
clavicle fracture|consolidation|costochondral junction hypertrophy|
costophrenic angle blunting|cyst|dai|descendent aortic elongation|dextrocardia|
diaphragmatic eventration|double J stent|dual chamber device|electrical device|emphysema|
empyema|end on vessel|endoprosthesis|endotracheal tube|esophagic dilatation|exclude|
external foreign body|fibrotic band|fissure thickening|flattened diaphragm|fracture|
gastrostomy tube|goiter|granuloma|ground glass pattern|gynecomastia|heart insufficiency|
heart valve calcified|hemidiaphragm elevation|hiatal hernia|hilar congestion|
hilar enlargement|humeral fracture|humeral prosthesis|hydropneumothorax|hyperinflated lung|
hypoexpansion|hypoexpansion basal|increased density|infiltrates|interstitial pattern|
kerley lines|kyphosis|laminar atelectasis|lepidic adenocarcinoma|lipomatosis|
lobar atelectasis|loculated fissural effusion|loculated pleural effusion|lung metastasis|
lung vascular paucity|lymphangitis carcinomatosa|lytic bone lesion|major fissure thickening|
mammary prosthesis|mass|mastectomy|mediastinal enlargement|mediastinal mass|
mediastinal shift|mediastinic lipomatosis|metal|miliary opacities|minor fissure thickening|
multiple nodules|nephrostomy tube|nipple shadow|nodule|
non axial articular degenerative changes|normal|obesity|osteopenia|osteoporosis|
osteosynthesis material|pacemaker|pectum carinatum|pectum excavatum|pericardial effusion|
pleural effusion|pleural mass|pleural plaques|pleural thickening|pneumomediastinum|
pneumonia|pneumoperitoneo|pneumothorax|post radiotherapy changes|prosthesis|pseudonodule|
pulmonary artery enlargement|pulmonary artery hypertension|pulmonary edema|
pulmonary fibrosis|pulmonary hypertension|pulmonary mass|pulmonary venous hypertension|
reservoir central venous catheter|respiratory distress|reticular interstitial pattern|
reticulonodular interstitial pattern|rib fracture|right sided aortic arch|round atelectasis|
sclerotic bone lesion|scoliosis|segmental atelectasis|single chamber device|
soft tissue mass|sternoclavicular junction hypertrophy|sternotomy|
subacromial space narrowing|subcutaneous emphysema|suboptimal study|
superior mediastinal enlargement|supra aortic elongation|surgery|surgery breast|
surgery heart|surgery humeral|surgery lung|surgery neck|suture material|
thoracic cage deformation|total atelectasis|tracheal shift|tracheostomy tube|tuberculosis|
tuberculosis sequelae|unchanged|vascular hilar enlargement|vascular redistribution|
ventriculoperitoneal drain tube|vertebral anterior compression|vertebral compression|
vertebral degenerative changes|vertebral fracture|volume loss"""
"""PadChest's label vocabulary as its CSV writes it (the 193 terms of the 160K release)."""


def test_padchest_table_places_every_term():
    terms = [t.strip() for t in PADCHEST_TERMS.replace("\n", "").split("|")]
    assert len(terms) == len(set(terms)) == 193
    assert sorted(t.lower() for t in terms) == sorted(padchest.LABEL_TABLE)
    for term, effects in padchest.LABEL_TABLE.items():
        assert set(effects) <= set(FINDINGS) and set(effects.values()) <= {1, -1, -2}, term
    # Each term alone: the findings it names take its value, every other finding is negative
    # (PadChest's list is exhaustive), unless the term says the list is no inventory.
    for term in terms:
        labels, unmapped, unknown = padchest.labels_of_terms(parse_labels(f"[{term!r}]"))
        effects = padchest.LABEL_TABLE[term.lower()]
        assert unknown == [] and (unmapped == [term.lower()]) == all(v == -2 for v in
                                                                      effects.values()), term
        for j, finding in enumerate(FINDINGS):
            want = effects.get(finding, -2 if term in padchest.NOT_EXHAUSTIVE else 0)
            assert labels[j] == want, (term, finding)


@pytest.mark.parametrize("term,positives", [
    ("atelectasis basal", {"Atelectasis"}), ("fracture", {"Fracture"}),
    ("hydropneumothorax", {"Pneumothorax", "Pleural Effusion"})])
def test_padchest_terms_once_read_as_negatives_are_positive(term, positives):
    labels, _, _ = padchest.labels_of_terms([term])
    assert {FINDINGS[j] for j in np.flatnonzero(labels == 1)} == positives


def test_padchest_term_the_table_lacks_is_never_a_negative():
    labels, unmapped, unknown = padchest.labels_of_terms(["cardiomegaly", "new term"])
    assert unknown == ["new term"] and unmapped == ["new term"]
    assert labels[index("Cardiomegaly")] == 1 and labels[index("No Finding")] == 0
    assert set(np.delete(labels, [index("Cardiomegaly"), index("No Finding")])) == {-2}
    labels, _, _ = padchest.labels_of_terms(["unchanged"])
    assert set(labels) == {-2}


# ----------------------------------------------------------------------------- Open-I

OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
<meta type="rr"/>
<uId id="CXR{n}"/>
<pmcId id="{n}"/>
<docSource>CXR</docSource>
<IUXRId id="{n}"/>
<MedlineCitation Owner="Indiana University" Status="supplied by publisher">
<Article PubModel="Electronic">
<ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
<Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">XXXX-year-old with chest pain.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">{impression}</AbstractText>
</Abstract>
</Article>
</MedlineCitation>
<MeSH>
{mesh}
</MeSH>
{images}
</eCitation>
"""


def openi_pictures() -> dict[str, np.ndarray]:
    """A synthetic frontal and lateral that the pixels tell apart, and a flat picture."""
    images, truth = synthetic_radiographs()
    pick = {view: next(i for i, v in zip(images, truth) if v == view and infer_view(i) == view)
            for view in ("frontal", "lateral")}
    return {**pick, "unknown": np.full((40, 36), 120, np.uint8)}


def openi_tree(root: str) -> str:
    """Report 1: frontal, lateral, a flat picture; report 2: lateral first, then frontal."""
    reports = [
        (1, "The cardiac silhouette and mediastinum size are within normal limits. There is no "
            "pulmonary edema. There is no focal consolidation.", "Normal chest x-XXXX.",
         ["<major>normal</major>"],
         {"CXR1_1_IM-0001-3001": "frontal", "CXR1_1_IM-0001-4001": "lateral",
          "CXR1_1_IM-0001-5001": "unknown"}),
        (2, "Borderline cardiomegaly. Left basilar opacity. There is a small right pleural "
            "effusion. No pneumothorax.", "Small right effusion.",
         ["<major>Cardiomegaly/borderline</major>", "<major>Opacity/lung/base/left/mild</major>",
          "<minor>Calcified Granuloma/lung/upper lobe/right</minor>"],
         {"CXR2_IM-0652-1001": "lateral", "CXR2_IM-0652-2001": "frontal"}),
        (3, "No active disease.", "", ["<major>normal</major>"], {}),
    ]
    pictures = openi_pictures()
    for n, findings, impression, mesh, images in reports:
        blocks = "\n".join(f'<parentImage id="{i}">\n<figureId>F{k + 1}</figureId>\n'
                           f"<caption>Xray Chest PA and Lateral</caption>\n</parentImage>"
                           for k, i in enumerate(images))
        write_text(os.path.join(root, "ecgen-radiology", f"{n}.xml"), OPENI_XML.format(
            n=n, findings=findings, impression=impression, mesh="\n".join(mesh), images=blocks))
        for image, view in images.items():
            write_png(os.path.join(root, "NLMCXR_png", f"{image}.png"), pictures[view])
    write_text(os.path.join(root, "ecgen-radiology", "10.xml"), "<eCitation><MeSH>")  # truncated
    return root


def test_openi_xml_reports_mesh_labels_and_views(tmp_path):
    root = openi_tree(str(tmp_path / "openi"))
    builder, records = build(Openi, FRONTAL, root, str(tmp_path / "data"))
    train = records["train"]
    assert [r["id"] for r in train] == ["CXR1_1_IM-0001-3001", "CXR2_IM-0652-2001"]  # pixels
    normal, sick = train
    assert normal["report"].endswith("no focal consolidation. Normal chest x-XXXX.")
    assert normal["labels"][index("No Finding")] == 1
    assert normal["labels"][index("Edema")] == 0 and normal["labels"][index("Consolidation")] == 0
    assert sick["report"].startswith("Borderline cardiomegaly.")
    labels = sick["labels"]
    assert labels[index("Cardiomegaly")] == 1 and labels[index("Lung Opacity")] == 1  # MeSH
    assert labels[index("Pleural Effusion")] == 1 and labels[index("Pneumothorax")] == 0  # text
    assert labels[index("No Finding")] == 0 and labels[index("Fracture")] == 0  # table default
    extra = json.loads(sick["extra_labels"])
    assert extra["unmapped"] == ["Calcified Granuloma/lung/upper lobe/right"]
    assert len(extra["mesh"]) == 3
    assert list(skipped(builder, "train")) == ["10.xml"]
    common_checks(train, "openi")
    assert set(json.loads(normal["extra_labels"])["view_statistics"]) == {"ridge", "symmetry"}
    _, records = build(Openi, ALL_VIEWS, root, str(tmp_path / "all"))
    assert [(r["id"], r["view"]) for r in records["train"]] == [
        ("CXR1_1_IM-0001-3001", "frontal"), ("CXR1_1_IM-0001-4001", "lateral"),
        ("CXR1_1_IM-0001-5001", "unknown"), ("CXR2_IM-0652-1001", "lateral"),
        ("CXR2_IM-0652-2001", "frontal")]


# ----------------------------------------------------------------------------- the command


def test_data_build_command_with_manual_dir(tmp_path):
    release = chexpert_tree(str(tmp_path), test=False)

    def data(manual_dir: str, data_dir: str, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chexficient.cli", "data", "build",
                               "chexpert", "--data_dir", data_dir, "--manual_dir", manual_dir,
                               *flags], capture_output=True, text=True, timeout=300)

    run = data(release, str(tmp_path / "data"))
    assert run.returncode == 0, run.stderr
    assert "chexpert train: 2 records, 1 skipped at build time (listed in " in run.stdout
    assert "filtered out: {'view lateral': 1}" in run.stdout  # printed, not only logged
    assert "chexpert validation: 1 records, 0 skipped at build time, filtered out: none" in \
        run.stdout
    assert "tokenizer: none" in run.stdout
    stats = subprocess.run([sys.executable, "-m", "chexficient.cli", "data", "stats", "chexpert",
                            "--data_dir", str(tmp_path / "data"), "--out",
                            str(tmp_path / "s.json")], capture_output=True, text=True, timeout=300)
    assert stats.returncode == 0, stats.stderr
    assert "skipped at build time:     1 (listed in " in stats.stdout
    assert "filtered out at build:     {'view lateral': 1}" in stats.stdout
    build_counts = json.loads((tmp_path / "s.json").read_text())["build"]
    assert (build_counts["skipped"], build_counts["filtered"]) == (1, {"view lateral": 1})
    write_jpeg(os.path.join(release, "train/patient00003/study1/view1_frontal.jpg"),
               picture(40, 40))  # the copy fixed: --force builds it again
    run = data(release, str(tmp_path / "data"), "--force")
    assert run.returncode == 0, run.stderr
    assert "chexpert train: 3 records, 0 skipped at build time" in run.stdout
    run = data(str(tmp_path / "nowhere"), str(tmp_path / "other"))
    assert run.returncode == 1
    assert "missing" in run.stderr and "train.csv" in run.stderr and "└── " in run.stderr


def test_force_rebuilds_a_fixed_copy_and_keeps_the_old_build_until_the_new_one_is_done(
        tmp_path, caplog):
    release = chexpert_tree(str(tmp_path / "a"), test=False)  # one unreadable train image
    data_dir = str(tmp_path / "data")
    builder, _ = registry.prepare("chexpert/frontal", data_dir, manual_dir=release)
    assert builder.info.splits["train"].num_examples == 2 and skipped(builder, "train")
    write_jpeg(os.path.join(release, "train/patient00003/study1/view1_frontal.jpg"),
               picture(40, 40))  # the copy fixed
    parent = os.path.dirname(builder.data_dir)
    for left in ("incomplete.HLL1RU_1.0.0", "incomplete.OTHER_0.9.0"):  # killed builds
        os.makedirs(os.path.join(parent, left, "x"))

    with caplog.at_level("WARNING"):  # another copy without --force: kept, with a warning
        builder, _ = registry.prepare("chexpert/frontal", data_dir, manual_dir=str(tmp_path))
    assert builder.info.splits["train"].num_examples == 2
    assert f"from --manual_dir={release}, not {tmp_path}" in caplog.text
    assert "pass --force" in caplog.text

    broken = str(tmp_path / "broken")  # a forced rebuild that fails keeps the old build
    os.makedirs(broken)
    with pytest.raises(ManualDirError):
        registry.prepare("chexpert/frontal", data_dir, manual_dir=broken, force=True)
    old = registry.data_source("chexpert/frontal", "train", data_dir)
    assert len(old) == 2 and old[0]["id"]
    assert sorted(os.listdir(parent)) == ["1.0.0", "incomplete.OTHER_0.9.0"]  # stale: removed

    builder, _ = registry.prepare("chexpert/frontal", data_dir, manual_dir=release, force=True)
    assert builder.info.splits["train"].num_examples == 3 and not skipped(builder, "train")
    assert len(registry.data_source("chexpert/frontal", "train", data_dir)) == 3
    assert registry.built_from(builder) == os.path.abspath(release)
    assert sorted(os.listdir(parent)) == ["1.0.0", "incomplete.OTHER_0.9.0"]


PLAIN_TFDS = """
import sys
import tensorflow_datasets as tfds
data_dir = sys.argv[1]
assert tfds.builder_cls("chexpert").__module__.startswith("tensorflow_datasets.")  # TFDS's own
if sys.argv[2] == "with_chexficient":  # imported after TFDS registered its chexpert: no clash
    import chexficient.data.builders.chexpert as ours
    assert tfds.builder("chexficient_chexpert/frontal", data_dir=data_dir).__class__ is ours.Chexpert
for name in ("chexficient_chexpert", "chexficient_chexpert/frontal"):
    source = tfds.data_source(name, split="train", data_dir=data_dir)
    print(name, len(source), sorted(r["id"].decode() for r in source), source[0]["source"].decode())
"""


@pytest.mark.parametrize("importing", ["plain", "with_chexficient"])
def test_plain_tfds_opens_our_build_by_its_tfds_name(tmp_path, importing):
    """`chexficient data build chexpert` writes what plain TFDS reads as
    `chexficient_chexpert`, with or without our package imported (TFDS's catalog `chexpert`
    stays TFDS's)."""
    release = chexpert_tree(str(tmp_path), test=False)
    data_dir = str(tmp_path / "data")
    run = subprocess.run([sys.executable, "-m", "chexficient.cli", "data", "build", "chexpert",
                          "--data_dir", data_dir, "--manual_dir", release],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert os.path.isdir(os.path.join(data_dir, "chexficient_chexpert", "frontal"))
    run = subprocess.run([sys.executable, "-c", PLAIN_TFDS, data_dir, importing],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ids = "['train/patient00001/study1/view1_frontal', 'train/patient00002/study1/view1_frontal']"
    assert run.stdout.splitlines() == [f"chexficient_chexpert 2 {ids} chexpert",
                                       f"chexficient_chexpert/frontal 2 {ids} chexpert"]
