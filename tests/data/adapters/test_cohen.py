import csv

import pytest

from cxrssl.data.adapters import LayoutError, index_dataset
from cxrssl.data.adapters.cohen import task_label

# The real metadata.csv header (2020-06 snapshot, 29 columns + a trailing empty one).
HEADER = (
    "patientid,offset,sex,age,finding,survival,intubated,intubation_present,went_icu,in_icu,needed_supplemental_O2,extubated,"
    "temperature,pO2_saturation,leukocyte_count,neutrophil_count,lymphocyte_count,view,modality,date,location,folder,filename,"
    "doi,url,license,clinical_notes,other_notes,"
).split(",")
ROWS = [  # patientid, offset, finding, view, modality, folder, filename
    ("2", "0", "COVID-19", "PA", "X-ray", "images", "auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
    ("2", "3", "COVID-19", "PA", "X-ray", "images", "auntminnie-b-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"),
    ("5", "", "ARDS", "PA", "X-ray", "images", "ARDSSevere.png"),
    ("3", "", "SARS", "AP", "X-ray", "images", "SARS-10.1148rg.242035193-g04mr34g0-Fig8a-day0.jpeg"),
    ("11", "", "Pneumonia/Bacterial/Streptococcus", "AP Supine", "X-ray", "images", "strep.jpg"),
    ("12", "", "Pneumonia/Viral/COVID-19", "L", "X-ray", "images", "lateral.jpg"),
    ("13", "", "COVID-19", "Axial", "CT", "images", "ct.jpg"),
    ("14", "", "No Finding", "PA", "X-ray", "images", "normal.jpg"),
    ("15", "", "Pneumonia/Viral/COVID-19", "AP erect", "X-ray", "images", "../../escape.jpg"),
]


@pytest.fixture
def cohen(tmp_path, make_image):
    with open(tmp_path / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for patient, offset, finding, view, modality, folder, filename in ROWS:
            record = dict.fromkeys(HEADER, "")
            record.update(patientid=patient, offset=offset, finding=finding, view=view, modality=modality, folder=folder, filename=filename)
            writer.writerow(record.values())
            if ".." not in filename:
                make_image(tmp_path / folder / filename)
    return tmp_path


@pytest.mark.parametrize(
    "finding, label",
    [
        ("COVID-19", "COVID-19"),
        ("COVID-19, ARDS", "COVID-19"),
        ("Pneumonia/Viral/COVID-19", "COVID-19"),
        ("SARS", "Other pneumonia"),
        ("Pneumocystis", "Other pneumonia"),
        ("Pneumonia/Fungal/Aspergillosis", "Other pneumonia"),
        ("ARDS", None),
        ("No Finding", None),
        ("Tuberculosis", None),
        ("todo", None),
    ],
)
def test_task_labels(finding, label):
    assert task_label(finding) == label


def test_frontal_x_rays_of_the_task_with_patient_ids(cohen):
    result = index_dataset("cohen", cohen)
    rows = {row.path.rsplit("/", 1)[-1]: row for row in result.manifest.rows}
    assert sorted(rows) == sorted([ROWS[0][6], ROWS[1][6], ROWS[3][6], "strep.jpg"])  # lateral, CT, ARDS and No Finding are outside the task
    assert rows[ROWS[0][6]].patient_id == rows[ROWS[1][6]].patient_id == "2"
    assert rows["strep.jpg"].label == "Other pneumonia" and rows[ROWS[3][6]].label == "Other pneumonia"
    assert rows[ROWS[1][6]].extra["offset"] == "3"
    assert result.skipped == [("images/../../escape.jpg", "path in metadata.csv leaves the dataset root")]
    assert "left out 1 row(s): not X-ray (CT)" in result.notes


def test_missing_metadata_is_one_sentence(tmp_path):
    with pytest.raises(LayoutError, match="no metadata.csv found; expected the covid-chestxray-dataset folder"):
        index_dataset("cohen", tmp_path)
