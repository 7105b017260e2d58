"""The real builders' shared helpers: report sections, layouts, image reading and windowing,
resize-with-pad, label tables, ordered parallel loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from chexficient.data.builders import _common
from chexficient.findings import FINDINGS, index
from real_fixtures import write_csv, write_dicom, write_garbage, write_png

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.  Clips project over the left lung,
 potentially within the breast. The imaged upper abdomen is unremarkable.

 IMPRESSIONS:

 No acute cardiopulmonary process.

 ______________________________________________________________________________
                                 FINAL ADDENDUM
 ADDENDUM:  Findings were discussed with Dr. ___ by telephone at 10:30 on ___.
"""


def test_parse_report_sections_and_addenda():
    parts = _common.parse_report(MIMIC_REPORT)
    assert parts.findings.startswith("There is no focal consolidation, pleural effusion")
    assert parts.findings.endswith("The imaged upper abdomen is unremarkable.")
    assert "  " not in parts.findings and "\n" not in parts.findings
    assert parts.impression == "No acute cardiopulmonary process."  # IMPRESSIONS folded
    assert parts.addenda == "Findings were discussed with Dr. ___ by telephone at 10:30 on ___."
    assert parts.text() == f"{parts.findings} {parts.impression} {parts.addenda}"
    assert "INDICATION" not in parts.text() and "ascites" not in parts.text()


def test_an_addendum_with_its_own_impression_joins_the_report():
    text = ("FINDINGS: Small left effusion.\n\n__________\nFINAL ADDENDUM\n"
            "IMPRESSION: Left effusion, unchanged.\n")
    parts = _common.parse_report(text)
    assert (parts.findings, parts.impression, parts.addenda) == (
        "Small left effusion.", "Left effusion, unchanged.", "")


def test_report_without_findings_or_impression_has_no_text():
    parts = _common.parse_report(" WET READ: ___ ___ 9:12 PM\n  No pneumothorax.\n"
                                 "______________\n ADDENDUM: called to Dr. ___.\n")
    assert parts.findings == parts.impression == "" and parts.addenda == "called to Dr. ___."
    assert parts.text() == ""


@pytest.mark.parametrize("header", ["FINDINGS AND IMPRESSION", "FINDINGS/IMPRESSION",
                                    "IMPRESSION AND FINDINGS", "FINAL IMPRESSION", "SUMMARY"])
def test_combined_and_final_impression_headers_give_the_report_text(header):
    parts = _common.parse_report(f" INDICATION: x.\n\n {header}:  Small left pleural effusion.\n")
    assert parts.impression == parts.text() == "Small left pleural effusion."


def test_all_caps_sub_headers_stay_in_their_section():
    parts = _common.parse_report(
        " INDICATION: Fever.\n FINDINGS:\n\n LINES/TUBES:  Right PICC tip in the low SVC.\n"
        " LUNGS:  Small left lower lobe consolidation.\n PLEURA:  Small left pleural effusion.\n"
        "\n IMPRESSION:\n\n Left lower lobe consolidation.\n HEART: Normal size.\n"
        " RECOMMENDATION(S):  Follow-up radiograph.\n")
    assert parts.findings == ("LINES/TUBES: Right PICC tip in the low SVC. LUNGS: Small left "
                              "lower lobe consolidation. PLEURA: Small left pleural effusion.")
    assert parts.impression == "Left lower lobe consolidation. HEART: Normal size."
    assert "Fever" not in parts.text() and "Follow-up" not in parts.text()


def test_layout_error_draws_the_tree_and_names_the_first_missing_path(tmp_path):
    layout = _common.Layout("Demo", required=("a.csv", "images/"), optional=("b.csv",),
                            examples=("images/p1/x.jpg",))
    (tmp_path / "a.csv").write_text("x\n")
    with pytest.raises(_common.ManualDirError) as error:
        layout.check(str(tmp_path))
    message = str(error.value)
    assert f"missing {tmp_path}/images" in message
    assert ("├── a.csv\n├── images/\n│   └── p1/\n│       └── x.jpg  (one of many)\n"
            "└── b.csv  (optional)") in message
    (tmp_path / "images").mkdir()
    layout.check(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="missing .*images/p1/y.jpg"):
        layout.check(str(tmp_path), probes=["images/p1/y.jpg"])


def test_resize_with_pad_keeps_aspect_exactly():
    wide = np.full((10, 20), 200, np.uint8)
    out = _common.resize_with_pad(wide, 8)
    assert out.shape == (8, 8) and out.dtype == np.uint8
    assert np.all(out[:2] == 0) and np.all(out[6:] == 0) and np.all(out[2:6] == 200)
    mask = np.zeros((20, 10, 2), np.uint8)
    mask[:, :, 1] = 1
    out = _common.resize_with_pad(mask, 8, Image.NEAREST)
    assert out.shape == (8, 8, 2) and out[..., 0].max() == 0
    assert np.all(out[:, 2:6, 1] == 1) and out[:, :2, 1].max() == 0 and out[:, 6:, 1].max() == 0


def test_sixteen_bit_png_is_stretched_to_uint8(tmp_path):
    pixels = np.array([[1000, 2000], [3000, 5000]], np.uint16)
    path = write_png(str(tmp_path / "x.png"), pixels)
    raw = _common.read_picture(path)
    assert raw.dtype == np.uint16 and raw.tolist() == pixels.tolist()
    assert _common.to_uint8(raw).tolist() == [[0, 64], [128, 255]]


def test_dicom_window_rescale_and_monochrome1(tmp_path):
    pixels = np.array([[0, 100], [200, 300]], np.uint16)
    windowed = write_dicom(str(tmp_path / "w.dcm"), pixels, window=(200.5, 201))
    assert _common.read_dicom(windowed).tolist() == [[0, 0], [128, 255]]
    inverted = write_dicom(str(tmp_path / "m1.dcm"), pixels, window=(200.5, 201),
                           photometric="MONOCHROME1")
    assert _common.read_dicom(inverted).tolist() == [[255, 255], [127, 0]]
    # rescale first: values become 2 * p - 100 = -100, 100, 300, 500
    rescaled = write_dicom(str(tmp_path / "r.dcm"), pixels, window=(300.5, 401), rescale=(2, -100))
    assert _common.read_dicom(rescaled).tolist() == [[0, 0], [128, 255]]  # unrescaled: 64, 128
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 16]
    lut.add_new("LUTData", "US", [0, 1000, 30000, 65535])
    table = write_dicom(str(tmp_path / "lut.dcm"), np.array([[0, 1], [2, 3]], np.uint16),
                        window=(1, 1), VOILUTSequence=[lut])  # the LUT wins over the window
    assert _common.read_dicom(table).tolist() == [[0, 4], [117, 255]]
    plain = write_dicom(str(tmp_path / "p.dcm"), pixels)
    assert _common.read_dicom(plain).tolist() == [[0, 85], [170, 255]]
    image = _common.load_image(plain, 4)
    assert image.shape == (4, 4) and image.dtype == np.uint8


def test_unreadable_or_missing_images_raise_image_error(tmp_path):
    with pytest.raises(_common.ImageError, match="bad.png"):
        _common.load_image(write_garbage(str(tmp_path / "bad.png")), 8)
    with pytest.raises(_common.ImageError, match="bad.dcm"):
        _common.load_image(write_garbage(str(tmp_path / "bad.dcm")), 8)
    with pytest.raises(_common.ImageError, match="not found.*gone.jpg"):
        _common.load_image(str(tmp_path / "gone.jpg"), 8)


def test_label_values_and_tables():
    assert [_common.label_value(v) for v in ("1.0", "0.0", "-1.0", "", None, 1, -1.0,
                                             float("nan"))] == [1, 0, -1, -2, -2, 1, -1, -2]
    with pytest.raises(ValueError, match="row 3.*'2.0'"):
        _common.label_value("2.0", "row 3")
    table = {"cardiomegaly": "Cardiomegaly", "effusion": "Pleural Effusion",
             "normal": "No Finding", "granuloma": None}
    labels, unmapped = _common.labels_from_names(["cardiomegaly", "granuloma", "odd"], table)
    assert labels[index("Cardiomegaly")] == 1 and labels[index("Pleural Effusion")] == 0
    assert labels[index("No Finding")] == 0 and labels[index("Edema")] == -2
    assert unmapped == ["granuloma", "odd"]
    labels, _ = _common.labels_from_names(["normal"], table)
    assert labels[index("No Finding")] == 1 and labels[index("Cardiomegaly")] == 0
    assert json.loads(_common.extra_json(["odd"], raw="x")) == {"raw": "x", "unmapped": ["odd"]}
    row = {name: "" for name in FINDINGS} | {"Edema": "-1.0", "Support Devices": "1.0"}
    assert _common.labels_from_columns(row).tolist() == [-2] * 5 + [-1] + [-2] * 7 + [1]


def test_read_csv_gzip_header_quirks_and_column_checks(tmp_path):
    path = write_csv(str(tmp_path / "t.csv.gz"), ["", "ImageId", " EncodedPixels"],
                     [[0, "a", "-1"], [1, "b", "5 3"]])
    assert _common.csv_header(path) == ["", "ImageId", "EncodedPixels"]
    assert _common.read_csv(path) == [{"": "0", "ImageId": "a", "EncodedPixels": "-1"},
                                      {"": "1", "ImageId": "b", "EncodedPixels": "5 3"}]
    assert _common.read_csv(path, ("ImageId",), optional=("Other",)) == [{"ImageId": "a"},
                                                                          {"ImageId": "b"}]
    with pytest.raises(ValueError, match=r"t.csv.gz: missing columns \['Labels'\]"):
        _common.read_csv(path, ("ImageId", "Labels"))
    ragged = write_csv(str(tmp_path / "r.csv"), ["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="r.csv line 3: 1 cells"):
        _common.read_csv(ragged)


def test_view_codes():
    assert [_common.view_of(c) for c in ("PA", "AP", "Frontal", "AP_horizontal", "LATERAL", "LL",
                                         "L", "Lateral", "LAO", "SWIMMERS", "", "UNK")] == [
        "frontal", "frontal", "frontal", "frontal", "lateral", "lateral", "lateral", "lateral",
        None, None, None, None]


def test_ordered_map_keeps_order_and_hands_back_errors():
    def slow_inverse(x: int) -> float:
        return 1 / x

    out = list(_common.ordered_map(slow_inverse, [4, 0, 2, 1], workers=3, lookahead=2))
    assert [item for item, _ in out] == [4, 0, 2, 1]
    assert isinstance(out[1][1], ZeroDivisionError)
    assert [r for _, r in out if not isinstance(r, Exception)] == [0.25, 0.5, 1.0]


def test_config_rejects_unknown_views():
    with pytest.raises(ValueError, match="views"):
        _common.RealCxrConfig(name="x", views=("oblique",))


def test_a_long_row_names_file_and_line_instead_of_dropping_cells(tmp_path):
    path = str(tmp_path / "t.csv")
    open(path, "w").write("id,Path\na,x.png\nb,1,5,y.png\n")  # an unquoted comma in b's row
    with pytest.raises(ValueError, match=f"{path} line 3: 4 cells, the header has 2 .a comma"):
        _common.read_csv(path)


def test_a_trailing_header_comma_makes_an_unnamed_column_rows_may_omit(tmp_path):
    path = str(tmp_path / "t.csv")
    open(path, "w").write("id,Path,\na,x.png\nb,y.png,\n")
    assert _common.read_csv(path) == [{"id": "a", "Path": "x.png"}, {"id": "b", "Path": "y.png"}]
    open(path, "a").write("c\n")
    with pytest.raises(ValueError, match=f"{path} line 4: 1 cells, the header has 3"):
        _common.read_csv(path)
