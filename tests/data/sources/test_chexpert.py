import pytest

from cxrssl.data.sources import IndexOptions, SourceError, index_dataset

# The real train.csv header and rows (CheXpert-v1.0-small), plus one row that tries to leave the root.
HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
TRAIN_ROWS = [
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,",
    "CheXpert-v1.0-small/../../secret/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,PA,,,,,,,,,,,,,,",
]
VALID_ROWS = ["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,,,1.0,1.0,,,,,,,,,,"]


@pytest.fixture
def chexpert(tmp_path, make_image):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("\n".join([HEADER, *TRAIN_ROWS]) + "\n")
    (root / "valid.csv").write_text("\n".join([HEADER, *VALID_ROWS]) + "\n")
    for row in TRAIN_ROWS[:4] + VALID_ROWS:
        make_image(tmp_path / row.split(",")[0])
    make_image(tmp_path / "secret/patient00003/study1/view1_frontal.jpg")  # exists, but outside the root
    return root


def test_frontal_films_with_patient_ids_from_the_path(chexpert):
    result = index_dataset("chexpert", chexpert)
    rows = {row.path: row for row in result.manifest.rows}
    assert sorted(rows) == [
        "train/patient00001/study1/view1_frontal.jpg",
        "train/patient00002/study1/view1_frontal.jpg",
        "train/patient00002/study2/view1_frontal.jpg",
        "valid/patient64541/study1/view1_frontal.jpg",
    ]
    assert rows["train/patient00002/study2/view1_frontal.jpg"].patient_id == "patient00002"
    assert rows["valid/patient64541/study1/view1_frontal.jpg"].split == "val"
    assert all(row.label == "" for row in rows.values())  # a pretext pool
    assert rows["train/patient00001/study1/view1_frontal.jpg"].extra == {"sex": "Female", "age": "68", "view": "AP"}


def test_a_path_leaving_the_root_is_skipped_and_listed(chexpert):
    result = index_dataset("chexpert", chexpert)
    assert [reason for path, reason in result.skipped if "secret" in path] == ["path in train.csv leaves the dataset root"]
    assert not any("secret" in row.path for row in result.manifest.rows)


def test_views_option_and_a_renamed_root(chexpert):
    renamed = chexpert.rename(chexpert.parent / "my_chexpert")
    lateral = index_dataset("chexpert", renamed, IndexOptions(views="lateral"))
    assert [row.path for row in lateral.manifest.rows] == ["train/patient00002/study1/view2_lateral.jpg"]
    assert len(index_dataset("chexpert", renamed, IndexOptions(views="all")).manifest) == 5


def test_missing_images_are_listed_not_fatal(chexpert):
    (chexpert / "train/patient00001/study1/view1_frontal.jpg").unlink()
    result = index_dataset("chexpert", chexpert)
    assert len(result.manifest) == 3
    assert ("train/patient00001/study1/view1_frontal.jpg", f"listed in train.csv and valid.csv but not found under {chexpert}") in result.skipped


def test_a_folder_without_the_csvs_names_what_was_expected(tmp_path):
    with pytest.raises(SourceError, match=r"no train.csv or valid.csv found; expected CheXpert's folder"):
        index_dataset("chexpert", tmp_path)
