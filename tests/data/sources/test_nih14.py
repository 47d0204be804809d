from collections import Counter

import pytest

from cxrssl.data.sources import IndexOptions, SourceError, index_dataset

# The real Data_Entry_2017_v2020.csv header: bracketed names hold commas, so it splits into 11 fields.
HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
ENTRIES = [
    ("00000001_000.png", "Cardiomegaly", 1),
    ("00000002_000.png", "Pneumonia", 2),
    ("00000002_001.png", "No Finding", 2),  # a patient with pneumonia elsewhere: never a negative
    ("00000003_000.png", "Infiltration|Pneumonia", 3),
    ("00000004_000.png", "No Finding", 4),
    ("00000004_001.png", "No Finding", 4),
    ("00000005_000.png", "No Finding", 5),
    ("00000006_000.png", "No Finding", 6),
    ("00000007_000.png", "Pneumonia", 7),
    ("00000008_000.png", "Effusion|No Finding", 8),  # not exactly 'No Finding'
]


@pytest.fixture
def nih(tmp_path, make_image):
    lines = [HEADER] + [f"{name},{findings},0,{patient},58,M,PA,2682,2749,0.143,0.143" for name, findings, patient in ENTRIES]
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    for index, (name, _, _) in enumerate(ENTRIES):
        make_image(tmp_path / f"images_00{1 + index % 2}" / "images" / name)  # the split-archive layout
    return tmp_path


def test_pneumonia_task_matches_no_finding_images_of_other_patients(nih):
    result = index_dataset("nih14", nih)
    rows = result.manifest.rows
    labels = Counter(row.label for row in rows)
    assert labels == {"Pneumonia": 3, "No Finding": 3}
    negatives = [row for row in rows if row.label == "No Finding"]
    assert {row.patient_id for row in negatives} <= {"4", "5", "6"}
    assert len({row.patient_id for row in negatives}) == 3  # one per patient before any second image
    assert {row.patient_id for row in rows if row.label == "Pneumonia"} == {"2", "3", "7"}


def test_matching_is_reproducible_by_seed(nih):
    def negatives(seed):
        return sorted(r.path for r in index_dataset("nih14", nih, IndexOptions(seed=seed)).manifest.rows if r.label == "No Finding")

    assert negatives(0) == negatives(0)
    assert len({tuple(negatives(seed)) for seed in range(8)}) > 1  # the seed matters (patient 4 has two images)


def test_official_split_lists_and_missing_images(nih):
    (nih / "test_list.txt").write_text("00000002_000.png\n00000005_000.png\n")
    (nih / "train_val_list.txt").write_text("\n".join(name for name, _, _ in ENTRIES if name not in ("00000002_000.png", "00000005_000.png")))
    next(nih.rglob("00000007_000.png")).unlink()
    result = index_dataset("nih14", nih, IndexOptions(task="all"))
    split = {row.path.rsplit("/", 1)[-1]: row.split for row in result.manifest.rows}
    assert split["00000002_000.png"] == "test" and split["00000001_000.png"] == "train"
    assert len(result.manifest) == len(ENTRIES) - 1 and all(row.label == "" for row in result.manifest.rows)
    assert result.skipped == [("00000007_000.png", f"listed in Data_Entry_2017_v2020.csv but not found under {nih}")]


def test_missing_data_entry_is_one_sentence(tmp_path):
    with pytest.raises(SourceError, match=r"no Data_Entry_2017.csv or Data_Entry_2017_v2020.csv found; expected ChestX-ray14's folder"):
        index_dataset("nih14", tmp_path)
