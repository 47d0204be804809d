from collections import Counter

import numpy as np
import pytest

from cxrssl.data.adapters import IndexOptions, LayoutError, index_dataset
from cxrssl.data.findings import finding_labels
from cxrssl.data.manifest import read_manifest, write_manifest

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
    assert len(result.manifest) == len(ENTRIES) - 2 and all(row.label == "" for row in result.manifest.rows)
    assert result.skipped == [
        ("00000007_000.png", f"listed in Data_Entry_2017_v2020.csv but not found under {nih}"),
        ("00000008_000.png", "Finding Labels 'Effusion|No Finding' in Data_Entry_2017_v2020.csv join 'No Finding' with a finding"),
    ]  # a self-contradicting row is listed, never written (a manifest with it could not be read back)


def test_missing_data_entry_is_one_sentence(tmp_path):
    with pytest.raises(LayoutError, match=r"no Data_Entry_2017.csv or Data_Entry_2017_v2020.csv found; expected ChestX-ray14's folder"):
        index_dataset("nih14", tmp_path)


def test_findings_task_every_image_with_its_findings_and_the_official_split(nih):
    (nih / "test_list.txt").write_text("00000002_000.png\n00000003_000.png\n")
    (nih / "train_val_list.txt").write_text("\n".join(name for name, _, _ in ENTRIES if name not in ("00000002_000.png", "00000003_000.png")))
    result = index_dataset("nih14", nih, IndexOptions(task="findings"))
    rows = {row.path.rsplit("/", 1)[-1]: row for row in result.manifest.rows}
    assert sorted(rows) == sorted(name for name, _, _ in ENTRIES if name != "00000008_000.png")  # 8 contradicts itself: listed
    assert [path for path, _ in result.skipped] == ["00000008_000.png"]
    assert all(row.label == "" for row in rows.values())
    assert rows["00000003_000.png"].extra["findings"] == "Infiltration|Pneumonia" and rows["00000004_000.png"].extra["findings"] == "No Finding"
    assert {name for name, row in rows.items() if row.split == "test"} == {"00000002_000.png", "00000003_000.png"}
    assert all(row.split == "train" for name, row in rows.items() if name not in ("00000002_000.png", "00000003_000.png"))
    labels = finding_labels(result.manifest)
    assert labels.names == ("Cardiomegaly", "Infiltration", "Pneumonia")
    order = [row.path.rsplit("/", 1)[-1] for row in result.manifest.rows]
    pneumonia = dict(zip(order, labels.column("Pneumonia")))
    assert {name for name, value in pneumonia.items() if value == 1} == {"00000002_000.png", "00000003_000.png", "00000007_000.png"}
    assert not np.isnan(labels.values).any()  # NIH form: every finding labelled on every image
    assert "Pneumonia     3 images / 3 patients positive" in result.notes
    assert "Cardiomegaly  1 images / 1 patients positive" in result.notes
    # what `cxrssl index` writes reads back with the same findings
    again = read_manifest(write_manifest(result.manifest, nih / "findings.csv"))
    assert finding_labels(again) == labels


def test_an_unknown_task_names_the_three(nih):
    with pytest.raises(LayoutError, match=r"--task 'pool': use pneumonia .*, all .* or findings"):
        index_dataset("nih14", nih, IndexOptions(task="pool"))


def test_real_nih_subset_findings_per_patient(shared_data):
    result = index_dataset("nih14", shared_data / "nih_pneumonia", IndexOptions(task="findings"))
    assert len(result.manifest) == 1000 and result.skipped == []
    labels = finding_labels(result.manifest)
    counts = {entry["finding"]: entry for entry in labels.counts(result.manifest.patient_keys)}
    # ../shared/data/README.md: Pneumonia 500 images / 371 patients; Infiltration 187 / 160, Atelectasis 113 / 103,
    # Edema 96 / 72, Effusion 90 / 69; under 30 patients for every other finding.
    stated = {"Pneumonia": (500, 371), "Infiltration": (187, 160), "Atelectasis": (113, 103), "Edema": (96, 72), "Effusion": (90, 69)}
    assert {name: (counts[name]["positive_images"], counts[name]["positive_patients"]) for name in stated} == stated
    assert all(entry["positive_patients"] < 30 for name, entry in counts.items() if name not in stated)
    assert all(entry["unlabelled_images"] == 0 for entry in counts.values())
    assert len(set(result.manifest.patient_keys)) == 682


def test_an_image_in_both_official_lists_is_listed_not_put_in_one_of_them(nih):
    names = [name for name, _, _ in ENTRIES]
    (nih / "test_list.txt").write_text("00000002_000.png\n00000005_000.png\n")
    (nih / "train_val_list.txt").write_text("\n".join(n for n in names if n != "00000002_000.png"))  # 00000005 is in both
    result = index_dataset("nih14", nih, IndexOptions(task="findings"))
    split = {row.path.rsplit("/", 1)[-1]: row.split for row in result.manifest.rows}
    assert "00000005_000.png" not in split and split["00000002_000.png"] == "test"
    assert ("00000005_000.png", "listed in both train_val_list.txt and test_list.txt: no split to put it in") in result.skipped


def test_the_uncertainty_flag_of_chexpert_is_refused_here_not_ignored(nih):
    with pytest.raises(LayoutError, match="NIH ChestX-ray14 has no uncertain labels"):
        index_dataset("nih14", nih, IndexOptions(task="findings", uncertain="ones"))
