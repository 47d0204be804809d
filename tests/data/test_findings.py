from pathlib import Path

import numpy as np
import pytest

from cxrssl.data.findings import FINDING_PREFIX, FINDINGS_COLUMN, FindingLabels, finding_labels, per_finding_columns
from cxrssl.data.manifest import Manifest, ManifestRow, read_manifest, write_manifest
from cxrssl.errors import ManifestError

nan = np.nan


def _write(folder: Path, text: str) -> Path:
    lines = text.strip().splitlines()
    for line in lines[1:]:
        (folder / line.split(",")[0]).write_bytes(b"x")
    path = folder / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


NIH = """
path,patient_id,label,split,findings
a.png,p1,,train,Infiltration|Pneumonia
b.png,p1,,train,No Finding
c.png,p2,,test,Effusion
d.png,p3,,test,
e.png,p3,,test,no findings
f.png,p4,,train, Pneumonia | Effusion
"""

# Per-finding form, no label column; one patient (p1) with a positive and a negative film.
PER_FINDING = """
path,patient_id,finding:Edema,sex,finding:Pleural Effusion
a.png,p1,1,F,0
b.png,p1,0.0,F,
c.png,p2,,M,1.0
d.png,p3,,M,
e.png,p4,0,F,0
"""


def test_nih_form_vocabulary_is_sorted_and_every_entry_is_labelled(tmp_path):
    labels = finding_labels(read_manifest(_write(tmp_path, NIH)))
    assert labels.names == ("Effusion", "Infiltration", "Pneumonia")
    assert labels.values.dtype == np.float32
    expected = [[0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1]]
    np.testing.assert_array_equal(labels.values, np.array(expected, np.float32))
    assert list(labels.labelled_rows()) == [0, 1, 2, 3, 4, 5]


def test_per_finding_form_in_header_order_with_nan_for_empty(tmp_path):
    manifest = read_manifest(_write(tmp_path, PER_FINDING))
    assert manifest.labels == [""] * 5  # no label column: every row unlabelled
    labels = finding_labels(manifest)
    assert labels.names == ("Edema", "Pleural Effusion")
    expected = np.array([[1, 0], [0, nan], [nan, 1], [nan, nan], [0, 0]], np.float32)
    np.testing.assert_array_equal(labels.values, expected)  # nan == nan here
    assert list(labels.labelled_rows()) == [0, 1, 2, 4]
    assert manifest.rows[0].extra == {"finding:Edema": "1", "sex": "F", "finding:Pleural Effusion": "0"}


def test_counts_by_image_and_patient_against_a_hand_count(tmp_path):
    manifest = read_manifest(_write(tmp_path, PER_FINDING))
    counts = finding_labels(manifest).counts(manifest.patient_keys)
    # Edema: images 1 pos (a), 2 neg (b, e), 2 unlabelled (c, d); patients p1 pos (a+, b-), p4 neg, p2 p3 unlabelled.
    # Pleural Effusion: images 1 pos (c), 2 neg (a, e), 2 unlabelled (b, d); patients p2 pos, p1 neg (a 0, b empty), p4 neg, p3 unlabelled.
    assert counts == [
        {
            "finding": "Edema",
            "positive_images": 1,
            "negative_images": 2,
            "unlabelled_images": 2,
            "positive_patients": 1,
            "negative_patients": 1,
            "unlabelled_patients": 2,
        },
        {
            "finding": "Pleural Effusion",
            "positive_images": 1,
            "negative_images": 2,
            "unlabelled_images": 2,
            "positive_patients": 1,
            "negative_patients": 2,
            "unlabelled_patients": 1,
        },
    ]


def test_nih_counts_a_patient_positive_if_any_film_is(tmp_path):
    manifest = read_manifest(_write(tmp_path, NIH))
    counts = {entry["finding"]: entry for entry in finding_labels(manifest).counts(manifest.patient_keys)}
    pneumonia = counts["Pneumonia"]  # a (p1) and f (p4); p1's b is negative, but p1 stays positive
    assert (pneumonia["positive_images"], pneumonia["negative_images"], pneumonia["unlabelled_images"]) == (2, 4, 0)
    assert (pneumonia["positive_patients"], pneumonia["negative_patients"], pneumonia["unlabelled_patients"]) == (2, 2, 0)
    assert (counts["Effusion"]["positive_patients"], counts["Effusion"]["negative_patients"]) == (2, 2)


def test_select_and_subset(tmp_path):
    labels = finding_labels(read_manifest(_write(tmp_path, PER_FINDING)))
    picked = labels.select(np.array([4, 0]))
    np.testing.assert_array_equal(picked.values, np.array([[0, 0], [1, 0]], np.float32))
    assert picked.names == labels.names and len(labels.select([])) == 0
    effusion = labels.subset(["Pleural Effusion"])
    assert effusion.names == ("Pleural Effusion",)
    np.testing.assert_array_equal(effusion.values[:, 0], np.array([0, nan, 1, nan, 0], np.float32))
    assert labels.subset(("Pleural Effusion", "Edema")).names == ("Pleural Effusion", "Edema")
    with pytest.raises(ManifestError, match=r"unknown finding 'Cardiomegaly'; the manifest has Edema, Pleural Effusion"):
        labels.subset(["Cardiomegaly"])


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "path,patient_id,finding:Edema\na.png,p1,1\nb.png,p2,-1.0\n",
            "line 3, column 'finding:Edema' has '-1.0'; use 1 (positive), 0 (negative) or leave it empty",
        ),
        ("path,patient_id,label,finding:Edema\na.png,p1,,yes\n", "line 2, column 'finding:Edema' has 'yes'"),
        ("path,patient_id,findings,finding:Edema\na.png,p1,Edema,1\n", "has both a 'findings' column and finding:<Name> columns; keep one form"),
        (
            "path,patient_id,findings\na.png,p1,Edema\nb.png,p2,Effusion|No Finding\n",
            "line 3 has findings 'Effusion|No Finding': 'No Finding' together with a finding; keep only the findings",
        ),
        ("path,patient_id,finding:\na.png,p1,1\n", "column 'finding:' names no finding"),
        ("path,patient_id\na.png,p1\n", "missing column 'label'; a manifest needs the columns path, patient_id, label"),
        ("path,patient_id,findings,findings\na.png,p1,Edema,Effusion\n", "column 'findings' appears twice in the header; keep one"),
        ("path,patient_id,finding:Edema|acute\na.png,p1,1\n", "a finding's name may not hold '|' or ','"),
        ('path,patient_id,"finding:Edema, acute"\na.png,p1,1\n', "a finding's name may not hold '|' or ','"),
        ('path,patient_id,findings\na.png,p1,"Cardiomegaly,Edema"\n', "findings are joined by '|', not ','"),
    ],
)
def test_bad_findings_are_one_line_naming_the_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_manifest_without_findings_reads_as_before(tmp_path):
    path = _write(tmp_path, "path,patient_id,label,split,source\na.png,p1,NORMAL,train,x\nb.png,,PNEUMONIA,test,y\n")
    manifest = read_manifest(path)
    assert finding_labels(manifest) is None
    assert manifest.rows == [ManifestRow("a.png", "p1", "NORMAL", "train"), ManifestRow("b.png", "", "PNEUMONIA", "test")]
    assert [row.extra for row in manifest.rows] == [{"source": "x"}, {"source": "y"}]
    # a column named like a finding but not one ("finding", "Findings") is an ordinary column
    other = read_manifest(_write(tmp_path, "path,patient_id,label,finding,Findings\na.png,p1,A,b,c\n"))
    assert finding_labels(other) is None and other.rows[0].extra == {"finding": "b", "Findings": "c"}


@pytest.mark.parametrize("text", [NIH, PER_FINDING])
def test_write_then_read_keeps_the_findings(tmp_path, text):
    manifest = read_manifest(_write(tmp_path, text))
    again = read_manifest(write_manifest(manifest, tmp_path / "out.csv"))
    assert finding_labels(again) == finding_labels(manifest)
    assert [row.extra for row in again.rows] == [row.extra for row in manifest.rows]
    header = (tmp_path / "out.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["path", "patient_id", "label", "split"]  # label is always written


def test_per_finding_columns_is_what_an_adapter_writes(tmp_path):
    extra = per_finding_columns(("Edema", "Pleural Effusion", "Fracture"), [1.0, nan, 0.0])
    assert extra == {"finding:Edema": "1", "finding:Pleural Effusion": "", "finding:Fracture": "0"}
    assert per_finding_columns(("A",), [None]) == {"finding:A": ""}
    with pytest.raises(ValueError):
        per_finding_columns(("A",), [-1.0])
    (tmp_path / "a.png").write_bytes(b"x")
    in_memory = Manifest([ManifestRow("a.png", "p1", "", "", {"sex": "F", **extra})], tmp_path)
    labels = finding_labels(in_memory)
    assert labels.names == ("Edema", "Pleural Effusion", "Fracture")  # insertion order, not sorted
    written = read_manifest(write_manifest(in_memory, tmp_path / "m.csv"))
    assert finding_labels(written) == labels  # the vocabulary's order survives the round trip
    assert FINDING_PREFIX == "finding:" and FINDINGS_COLUMN == "findings"


def test_finding_labels_checks_its_shape_and_values():
    with pytest.raises(ValueError):
        FindingLabels(("A",), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        FindingLabels(("A",), np.full((2, 1), 2.0, np.float32))
    assert FindingLabels(("A",), [[1], [0]]).values.dtype == np.float32
