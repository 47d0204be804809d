import numpy as np
import pytest

from cxrssl.data.adapters import IndexOptions, LayoutError, index_dataset
from cxrssl.data.findings import finding_labels
from cxrssl.data.manifest import read_manifest, write_manifest

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
    assert rows["train/patient00001/study1/view1_frontal.jpg"].extra == {
        "sex": "Female",
        "age": "68",
        "view": "AP",
        "study_id": "patient00001/study1",
    }
    # The study, for pretraining's positives study: patient00002's two studies are two groups.
    from cxrssl.ssl.positives import positive_groups

    groups = dict(zip((row.path for row in result.manifest.rows), positive_groups(result.manifest, "study")))
    assert groups["train/patient00002/study1/view1_frontal.jpg"] != groups["train/patient00002/study2/view1_frontal.jpg"]


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
    with pytest.raises(LayoutError, match=r"no train.csv or valid.csv found; expected CheXpert's folder"):
        index_dataset("chexpert", tmp_path)


# --- labelled tasks: the 14 observations as findings -------------------------------------------------------------

OBSERVATIONS = HEADER.split(",")[5:]
COMPETITION = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]


def _line(path: str, view: str = "Frontal", **cells: str) -> str:
    """A train/valid.csv row with the real header's columns; ``cells`` by observation (spaces as underscores), blank otherwise."""
    values = [cells.pop(name.replace(" ", "_"), "") for name in OBSERVATIONS]
    assert not cells, f"unknown observation {cells}"
    return ",".join([path, "Female", "50", view, "AP" if view == "Frontal" else "", *values])


LABELLED_TRAIN = [
    TRAIN_ROWS[0],  # p1: No Finding 1.0, Pneumothorax 0.0, Support Devices 1.0, the rest blank (real row)
    TRAIN_ROWS[1],  # p2 study2: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion all -1.0 (real row)
    TRAIN_ROWS[2],  # p2 study1: Consolidation -1.0, Lung Opacity and Fracture 1.0 (real row)
    TRAIN_ROWS[3],  # p2 study1 lateral: not a frontal film
    _line("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg", Edema="2.0", Atelectasis="1.0"),  # unknown value
    _line("CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg", Atelectasis="1", Cardiomegaly="0", Pleural_Effusion="-1"),
]
LABELLED_VALID = [  # radiologist consensus: 0/1 only
    _line(
        "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
        **{name.replace(" ", "_"): "1.0" if name in ("Cardiomegaly", "Lung Opacity") else "0.0" for name in OBSERVATIONS},
    ),
]
FRONTAL_ORDER = [  # manifest rows in this order (CSV order: train.csv then valid.csv)
    "train/patient00001/study1/view1_frontal.jpg",
    "train/patient00002/study2/view1_frontal.jpg",
    "train/patient00002/study1/view1_frontal.jpg",
    "train/patient00004/study1/view1_frontal.jpg",
    "valid/patient64541/study1/view1_frontal.jpg",
]
U = "u"  # an uncertain (-1) entry in the hand-made table below
COMPETITION_BY_HAND = [  # Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion; blank = 0
    ["0", "0", "0", "0", "0"],  # p1: all blank
    [U, U, U, U, U],  # p2 study2
    ["0", "0", U, "0", "0"],  # p2 study1
    ["1", "0", "0", "0", U],  # p4
    ["0", "1", "0", "0", "0"],  # valid
]
POLICY_VALUE = {"ignore": "", "ones": "1", "zeros": "0"}


@pytest.fixture
def labelled(tmp_path, make_image):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("\n".join([HEADER, *LABELLED_TRAIN]) + "\n")
    (root / "valid.csv").write_text("\n".join([HEADER, *LABELLED_VALID]) + "\n")
    for row in LABELLED_TRAIN + LABELLED_VALID:
        make_image(tmp_path / row.split(",")[0])
    return root


@pytest.mark.parametrize("policy", ["ignore", "ones", "zeros"])
def test_competition_task_under_each_uncertainty_policy(labelled, policy):
    result = index_dataset("chexpert", labelled, IndexOptions(task="competition", uncertain=policy))
    rows = result.manifest.rows
    assert [row.path for row in rows] == FRONTAL_ORDER
    expected = [[POLICY_VALUE[policy] if cell == U else cell for cell in line] for line in COMPETITION_BY_HAND]
    assert [[row.extra[f"finding:{name}"] for name in COMPETITION] for row in rows] == expected
    assert list(rows[0].extra) == ["sex", "age", "view", "study_id", *(f"finding:{name}" for name in COMPETITION)]
    assert [row.split for row in rows] == ["train"] * 4 + ["test"]  # valid.csv is the test split
    assert all(row.label == "" for row in rows)
    assert result.skipped == [
        ("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg", "Edema is '2.0', not 1.0, 0.0, -1.0 or blank in train.csv")
    ]
    labels = finding_labels(result.manifest)
    assert labels.names == tuple(COMPETITION)
    assert np.isnan(labels.values).sum() == (7 if policy == "ignore" else 0)  # the seven -1 cells by hand
    # what `cxrssl index` writes reads back with the same findings
    assert finding_labels(read_manifest(write_manifest(result.manifest, labelled / "out.csv"))) == labels


def test_notes_give_the_policy_and_counts_per_finding(labelled):
    notes = index_dataset("chexpert", labelled, IndexOptions(task="competition")).notes
    assert "uncertain (-1) = not labelled (U-Ignore) (--uncertain ignore); blank (not mentioned) = negative" in notes
    # Atelectasis: p4 positive; p1, p2 study1, valid negative; p2 study2 uncertain. Patients p1, p2, p64541 negative.
    assert "Atelectasis       1 positive / 3 negative / 1 unlabelled images (1 / 3 / 0 patients)" in notes
    # Consolidation: uncertain in both of p2's films, so p2 is unlabelled for it.
    assert "Consolidation     0 positive / 3 negative / 2 unlabelled images (0 / 3 / 1 patients)" in notes
    ones = index_dataset("chexpert", labelled, IndexOptions(task="competition", uncertain="ones")).notes
    assert "Consolidation     2 positive / 3 negative / 0 unlabelled images (1 / 3 / 0 patients)" in ones


def test_all_findings_task_has_the_14_observations_in_header_order(labelled):
    result = index_dataset("chexpert", labelled, IndexOptions(task="all-findings", views="all"))
    labels = finding_labels(result.manifest)
    assert labels.names == tuple(OBSERVATIONS) and len(labels.names) == 14 and labels.names[0] == "No Finding"
    by_path = {row.path: i for i, row in enumerate(result.manifest.rows)}
    assert "train/patient00002/study1/view2_lateral.jpg" in by_path  # --views all
    first = dict(zip(labels.names, labels.values[by_path["train/patient00001/study1/view1_frontal.jpg"]]))
    assert {name for name, value in first.items() if value == 1} == {"No Finding", "Support Devices"}
    assert all(value == 0 for name, value in first.items() if name not in ("No Finding", "Support Devices"))  # blank and 0.0
    second = dict(zip(labels.names, labels.values[by_path["train/patient00002/study2/view1_frontal.jpg"]]))
    assert {name for name, value in second.items() if np.isnan(value)} == {
        "Cardiomegaly",
        "Edema",
        "Consolidation",
        "Atelectasis",
        "Pleural Effusion",
    }
    assert {name for name, value in second.items() if value == 1} == {"Lung Opacity", "Fracture"}


def test_the_pool_task_stays_the_default_and_unlabelled(labelled):
    for options in (IndexOptions(), IndexOptions(task="pool")):
        result = index_dataset("chexpert", labelled, options)
        assert finding_labels(result.manifest) is None and {row.split for row in result.manifest.rows} == {"train", "val"}
        assert result.notes == ["views: frontal; labels left empty (pretext pool)"]
    with pytest.raises(LayoutError, match="the pool task has no labels"):  # a flag that would do nothing is refused, not ignored
        index_dataset("chexpert", labelled, IndexOptions(task=None, uncertain="ones"))


def test_a_header_without_a_task_column_names_the_file_and_the_column(labelled):
    (labelled / "valid.csv").write_text("\n".join([HEADER.replace(",Edema,", ",Oedema,"), *LABELLED_VALID]) + "\n")
    with pytest.raises(LayoutError, match=r"valid.csv: no column 'Edema'"):
        index_dataset("chexpert", labelled, IndexOptions(task="competition"))
    assert len(index_dataset("chexpert", labelled).manifest) == 6  # the pool reads no label column (patient00003 included)


def test_unknown_task_and_policy_are_one_sentence(labelled):
    with pytest.raises(LayoutError, match=r"--task 'pneumonia': use pool .*, competition .* or all-findings"):
        index_dataset("chexpert", labelled, IndexOptions(task="pneumonia"))
    with pytest.raises(LayoutError, match=r"--uncertain 'maybe': use ignore .*, ones .* or zeros"):
        index_dataset("chexpert", labelled, IndexOptions(task="competition", uncertain="maybe"))
