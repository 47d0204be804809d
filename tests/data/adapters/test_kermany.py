import pytest

from cxrssl.data.adapters import LayoutError, index_dataset
from cxrssl.data.adapters.kermany import parse_patient

# Real Kermany file names, one of each naming pattern.
FILES = [
    "train/PNEUMONIA/person1_bacteria_1.jpeg",
    "train/PNEUMONIA/person1_virus_8.jpeg",
    "train/PNEUMONIA/person1202_virus_2045.jpeg",
    "test/PNEUMONIA/person100_bacteria_477.jpeg",
    "train/NORMAL/IM-0115-0001.jpeg",
    "test/NORMAL/IM-0011-0001-0002.jpeg",
    "test/NORMAL/IM-0011-0001.jpeg",
    "test/NORMAL/NORMAL2-IM-0007-0001.jpeg",
    "val/NORMAL/NORMAL2-IM-1427-0001.jpeg",
    "train/NORMAL/odd name.jpeg",
]


@pytest.mark.parametrize(
    "label, stem, patient",
    [
        ("PNEUMONIA", "person1_bacteria_1", ("person1", "bacteria")),
        ("PNEUMONIA", "person1202_virus_2045", ("person1202", "virus")),
        ("PNEUMONIA", "person1_virus_12_2", ("person1", "virus")),
        ("NORMAL", "IM-0115-0001", ("IM-0115", "")),
        ("NORMAL", "IM-0011-0001-0002", ("IM-0011", "")),
        ("NORMAL", "NORMAL2-IM-0007-0001", ("NORMAL2-IM-0007", "")),
        ("NORMAL", "NORMAL2-IM-1427-0001-0001", ("NORMAL2-IM-1427", "")),
        ("NORMAL", "odd name", ("", "")),
    ],
)
def test_patient_ids_from_file_names(label, stem, patient):
    assert parse_patient(label, stem) == patient


def test_official_split_labels_and_patients(tmp_path, make_image):
    for name in FILES:
        make_image(tmp_path / "chest_xray" / name)
    result = index_dataset("kermany", tmp_path)  # the folder holding chest_xray/ works too
    rows = {row.path: row for row in result.manifest.rows}
    assert len(rows) == len(FILES)
    assert rows["test/NORMAL/IM-0011-0001-0002.jpeg"].patient_id == rows["test/NORMAL/IM-0011-0001.jpeg"].patient_id == "IM-0011"
    assert rows["train/PNEUMONIA/person1_virus_8.jpeg"].extra == {"pathogen": "virus"}
    assert rows["val/NORMAL/NORMAL2-IM-1427-0001.jpeg"].split == "val" and rows["val/NORMAL/NORMAL2-IM-1427-0001.jpeg"].label == "NORMAL"
    assert rows["train/NORMAL/odd name.jpeg"].patient_id == ""
    assert any("1 file name(s) did not match" in note for note in result.notes)


def test_a_patient_in_two_official_splits_is_reported(tmp_path, make_image):
    make_image(tmp_path / "train/PNEUMONIA/person7_bacteria_1.jpeg")
    make_image(tmp_path / "test/PNEUMONIA/person7_bacteria_2.jpeg")
    make_image(tmp_path / "test/NORMAL/IM-0001-0001.jpeg")
    result = index_dataset("kermany", tmp_path)
    assert any("1 patient(s) appear in two official splits (e.g. person7)" in note for note in result.notes)


def test_an_unknown_layout_says_what_was_expected(tmp_path, make_image):
    make_image(tmp_path / "images/a.png")
    with pytest.raises(LayoutError, match=r"expected chest_xray/ with \{train,val,test\}/\{NORMAL,PNEUMONIA\}"):
        index_dataset("kermany", tmp_path)
