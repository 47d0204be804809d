"""The phantom generator's findings mode: several findings per patient, with a known answer."""

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from cxrssl.data.manifest import read_manifest
from cxrssl.data.phantom import (
    CHEXPERT_FINDINGS,
    CHEXPERT_HEADER,
    DEFAULT_PREVALENCE,
    ENLARGED_CTR,
    FINDINGS,
    NO_FINDING,
    NORMAL_CTR,
    anatomy_cardiothoracic_ratio,
    cardiothoracic_ratio,
    findings_anatomy,
    findings_film_draws,
    findings_model,
    findings_text,
    parse_findings_option,
    parse_prevalence_option,
    patient_findings,
    plan_phantom_findings,
    render,
    render_findings_film,
    write_phantom_chexpert,
    write_phantom_dataset,
)
from cxrssl.errors import CxrsslError

SHARED_FORMATS = Path(__file__).resolve().parents[3] / "shared" / "data" / "_formats"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "images").iterdir())}


def _findings_column(manifest_path):
    return [row.extra["findings"] for row in read_manifest(manifest_path).rows]


# --- the dataset and its manifest -------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_films_and_findings(tmp_path):
    first = write_phantom_dataset(tmp_path / "a", n=24, size=32, seed=7, findings=True, progress=False)
    second = write_phantom_dataset(tmp_path / "b", n=24, size=32, seed=7, findings=True, workers=1, progress=False)
    third = write_phantom_dataset(tmp_path / "c", n=24, size=32, seed=8, findings=True, progress=False)
    assert _digest(first.parent) == _digest(second.parent)  # also across worker counts (24 films use the pool)
    assert first.read_text() == second.read_text()
    assert (first.parent / "contact_sheet.png").read_bytes() == (second.parent / "contact_sheet.png").read_bytes()
    assert _digest(first.parent) != _digest(third.parent)
    assert _findings_column(first) != _findings_column(third)


def test_manifest_has_nih_style_findings_and_no_label(tmp_path):
    path = write_phantom_dataset(tmp_path, n=60, size=32, seed=1, findings=True, progress=False)
    assert path.read_text().splitlines()[0] == "path,patient_id,label,split,findings"
    manifest = read_manifest(path)
    assert len(manifest) == 60
    assert all(row.label == "" and row.split == "" for row in manifest.rows)
    seen = set()
    for row in manifest.rows:
        names = row.extra["findings"].split("|")
        if names == [NO_FINDING]:
            continue
        assert names == sorted(names) and set(names) <= set(FINDINGS)
        seen.update(names)
    assert seen == set(FINDINGS)  # every finding occurs in 60 films
    assert NO_FINDING in {row.extra["findings"] for row in manifest.rows}
    with Image.open(manifest.files[0]) as image:
        assert image.mode == "L" and image.size == (32, 32)
    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.size[1] == (len(FINDINGS) + 1) * (160 + 18)  # one row per finding and one for No Finding


def test_manifest_films_match_the_plan_and_a_subset_of_findings_works(tmp_path):
    path = write_phantom_dataset(tmp_path, n=20, size=32, seed=2, findings=["Effusion", "Cardiomegaly"], workers=1, progress=False)
    model = findings_model(["Effusion", "Cardiomegaly"])
    assert model.findings == ("Cardiomegaly", "Effusion")  # parents first
    plan = plan_phantom_findings(20, 2, model)
    rows = read_manifest(path).rows
    assert [row.extra["findings"] for row in rows] == [findings_text(present) for _, _, present in plan]
    assert [row.path for row in rows] == [f"images/patient{p:05d}_film{f}.png" for p, f, _ in plan]
    with Image.open(tmp_path / rows[3].path) as film:  # the file is the film render_findings_film redraws
        patient, number, present = plan[3]
        assert np.array_equal(np.asarray(film), render_findings_film(2, patient, number, present, 32).image)


def test_bad_requests_are_one_clear_error():
    with pytest.raises(CxrsslError, match="name each once, from Consolidation, Cardiomegaly, Effusion, Edema"):
        findings_model(["Pneumothorax"])
    with pytest.raises(CxrsslError, match="not among the findings drawn"):
        findings_model(["Effusion"], prevalence={"Edema": 0.2})
    with pytest.raises(CxrsslError, match="between 0 and 1"):
        findings_model(True, prevalence={"Effusion": 1.5})
    with pytest.raises(CxrsslError, match="cycle"):
        findings_model(True, co_occurrence={("Effusion", "Edema"): 2.0, ("Edema", "Effusion"): 2.0})


def test_command_line_option_parsers():
    assert parse_findings_option("all") == FINDINGS
    assert parse_findings_option("effusion, Cardiomegaly") == ("Effusion", "Cardiomegaly")
    assert parse_prevalence_option("effusion=0.3,Edema=0.1") == {"Effusion": 0.3, "Edema": 0.1}
    with pytest.raises(CxrsslError, match="--findings"):
        parse_findings_option("Nodule")
    with pytest.raises(CxrsslError, match="--prevalence"):
        parse_prevalence_option("Effusion:0.3")


# --- prevalence, co-occurrence, persistence --------------------------------------------


def test_solved_base_risks_give_exactly_the_requested_prevalences():
    model = findings_model(True)
    joint = {frozenset(): 1.0}  # enumerate the joint law the model implies
    for name in model.findings:
        grown = {}
        for state, p in joint.items():
            risk = model.probability(name, state)
            grown[state | {name}] = grown.get(state | {name}, 0) + p * risk
            grown[state] = grown.get(state, 0) + p * (1 - risk)
        joint = grown
    for name in FINDINGS:
        assert sum(p for state, p in joint.items() if name in state) == pytest.approx(DEFAULT_PREVALENCE[name], abs=1e-9)


def test_prevalences_within_binomial_tolerance_and_heart_failure_co_occurs():
    patients = 1000
    model = findings_model(True)
    drawn = [patient_findings(0, patient, model) for patient in range(patients)]
    for name, rate in DEFAULT_PREVALENCE.items():
        observed = np.mean([name in present for present in drawn])
        assert abs(observed - rate) < 4 * math.sqrt(rate * (1 - rate) / patients), name

    def conditional(child, parent, given):
        pool = [present for present in drawn if (parent in present) == given]
        return np.mean([child in present for present in pool])

    for child in ("Effusion", "Edema"):
        assert conditional(child, "Cardiomegaly", True) > conditional(child, "Cardiomegaly", False) + 0.15
    # Without co-occurrence the findings are independent: no such gap.
    independent = findings_model(True, co_occurrence={})
    drawn = [patient_findings(0, patient, independent) for patient in range(patients)]
    assert abs(conditional("Effusion", "Cardiomegaly", True) - conditional("Effusion", "Cardiomegaly", False)) < 0.1


def test_findings_are_patient_level_and_persist_across_follow_up_films():
    plan = plan_phantom_findings(300, 4)
    per_patient = {}
    for patient, film, present in plan:
        per_patient.setdefault(patient, []).append((film, present))
    assert len(per_patient) < 300  # some patients have follow-ups
    for films in per_patient.values():
        assert [film for film, _ in films] == list(range(len(films)))
        assert len({present for _, present in films}) == 1
    assert plan_phantom_findings(120, 4) == plan[:120]  # a longer plan starts with the shorter one
    # A finding's draw does not depend on which other findings are requested
    # (Consolidation has no parents, so asking for it alone gives the same patients).
    alone, everything = findings_model(["Consolidation"]), findings_model(True)
    assert [patient_findings(4, i, alone) for i in range(50)] == [patient_findings(4, i, everything) & {"Consolidation"} for i in range(50)]


# --- each finding is where it should be --------------------------------------------------


@pytest.mark.parametrize("patient", range(6))
def test_cardiothoracic_ratio_above_half_with_cardiomegaly_below_without(patient):
    normal = render_findings_film(3, patient, 0, (), 128)
    enlarged = render_findings_film(3, patient, 0, ("Cardiomegaly",), 128)
    assert NORMAL_CTR[0] <= anatomy_cardiothoracic_ratio(findings_anatomy(3, patient, False)) <= NORMAL_CTR[1]
    assert ENLARGED_CTR[0] <= anatomy_cardiothoracic_ratio(findings_anatomy(3, patient, True)) <= ENLARGED_CTR[1]
    # Measured on the film, as a reader would: the heart's horizontal extent over the lung fields'.
    assert cardiothoracic_ratio(normal.heart_mask, normal.lung_mask) < 0.48
    assert cardiothoracic_ratio(enlarged.heart_mask, enlarged.lung_mask) > 0.53
    assert np.array_equal(enlarged.finding_masks["Cardiomegaly"], enlarged.heart_mask)
    assert enlarged.heart_mask.sum() > 1.4 * normal.heart_mask.sum()
    assert enlarged.lung_mask.sum() < normal.lung_mask.sum()  # the big heart takes room from the lungs
    assert not normal.finding_masks  # no findings, no evidence masks


@pytest.mark.parametrize("patient", range(6))
def test_effusion_fills_the_lower_lung_field_under_a_meniscus_rising_laterally(patient):
    draws = findings_film_draws(5, patient, 0, ("Effusion",))
    without = render(draws.anatomy, draws.acquisition, [], 128, draws.noise_seed)
    film = render_findings_film(5, patient, 0, ("Effusion",), 128)
    assert np.array_equal(film.lung_mask, without.lung_mask)  # same anatomy: the lung fields are where they were
    image, before = film.image.astype(float), without.image.astype(float)
    fluid = film.finding_masks["Effusion"]
    for effusion in draws.effusions:
        side = np.zeros_like(film.lung_mask)
        columns = slice(0, 64) if effusion.side == 0 else slice(64, 128)
        side[:, columns] = film.lung_mask[:, columns]
        rows = np.flatnonzero(side.any(axis=1))
        top, bottom = rows.min(), rows.max()
        lower = side & (np.arange(128)[:, None] > bottom - (bottom - top) / 4)
        upper = side & (np.arange(128)[:, None] < top + (bottom - top) / 2)
        assert image[lower].mean() > before[lower].mean() + 15  # the lower lung zone turns dense
        assert abs(image[upper].mean() - before[upper].mean()) < 2  # the upper zone stays aerated
        # The meniscus: the fluid's upper border is higher (smaller row) at the chest wall than medially.
        side_fluid = fluid[:, columns]
        present = np.flatnonzero(side_fluid.any(axis=0))
        tops = np.array([np.flatnonzero(side_fluid[:, c]).min() for c in present])
        lateral_first = effusion.side == 0  # image-left lung: the chest wall is at the left
        quarter = max(len(tops) // 4, 1)
        lateral, medial = (tops[:quarter], tops[-quarter:]) if lateral_first else (tops[-quarter:], tops[:quarter])
        assert lateral.mean() < medial.mean() - 3
    # The fluid is inside the lung fields, in their lower half, and changes nothing elsewhere.
    assert not (fluid & ~film.lung_mask).any()
    rows = np.flatnonzero(film.lung_mask.any(axis=1))
    assert np.flatnonzero(fluid.any(axis=1)).min() > (rows.min() + rows.max()) / 2
    changed = np.abs(image - before) > 1
    reach = int(np.ceil(4 * draws.acquisition.blur_sigma_px)) + 2
    assert not changed[~binary_dilation(film.fluid > 0.005, iterations=reach)].any()


@pytest.mark.parametrize("patient", range(4))
def test_edema_is_a_bilateral_perihilar_haze(patient):
    draws = findings_film_draws(6, patient, 0, ("Edema",))
    without = render(draws.anatomy, draws.acquisition, [], 128, draws.noise_seed)
    film = render_findings_film(6, patient, 0, ("Edema",), 128)
    added = film.image.astype(float) - without.image.astype(float)
    haze = film.finding_masks["Edema"]
    assert haze[:, :64].sum() > 200 and haze[:, 64:].sum() > 200  # both lungs
    assert not (haze & ~binary_dilation(film.lung_mask, iterations=2)).any()
    lungs = film.lung_mask
    from_midline = np.broadcast_to(np.abs(np.arange(128) - 63.5)[None, :], lungs.shape)
    reach = from_midline[lungs].max()
    medial, lateral = lungs & (from_midline < 0.5 * reach), lungs & (from_midline > 0.8 * reach)
    assert added[medial].mean() > 5 and added[medial].mean() > 2 * added[lateral].mean()  # densest at the hila


@pytest.mark.parametrize("patient", range(4))
def test_consolidation_is_the_lesion_machinery_inside_the_lungs(patient):
    draws = findings_film_draws(1, patient, 0, ("Consolidation", "Cardiomegaly"))
    assert 1 <= len(draws.lesions) <= 4
    film = render_findings_film(1, patient, 0, ("Consolidation", "Cardiomegaly"), 128)
    assert film.opacity.max() > 0.05
    assert np.array_equal(film.finding_masks["Consolidation"], film.opacity > 0.01)
    assert not (film.opacity > 0.01)[~binary_dilation(film.lung_mask, iterations=2)].any()
    assert sorted(film.finding_masks) == ["Cardiomegaly", "Consolidation"]
    assert not render_findings_film(1, patient, 0, ("Cardiomegaly",), 128).opacity.any()


def test_toggling_one_finding_leaves_the_rest_of_the_film_alone():
    base = findings_film_draws(2, 3, 1, ("Consolidation",))
    more = findings_film_draws(2, 3, 1, ("Consolidation", "Effusion", "Edema"))

    def shared(draws):
        return draws.anatomy, draws.acquisition, draws.lesions, draws.noise_seed

    assert shared(base) == shared(more)
    assert base.effusions == () and base.edema is None and more.effusions and more.edema is not None


# --- the task is learnable -----------------------------------------------------------------


def test_each_finding_is_learnable_from_small_films():
    """200 films at 64 px, findings drawn independently (so no finding rides on another):
    a logistic regression on 16x16 block means plus lung-field intensity percentiles
    (patient-grouped 5-fold cross-validation) reaches AUC > 0.7 for every finding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, seed = 200, 0
    plan = plan_phantom_findings(n, seed, findings_model(True, co_occurrence={}))
    films = [render_findings_film(seed, patient, film, present, 64) for patient, film, present in plan]
    pixels = np.stack([film.image for film in films]).astype(float) / 255
    blocks = pixels.reshape(n, 16, 4, 16, 4).mean(axis=(2, 4)).reshape(n, -1)
    histogram = []
    for film, image in zip(films, pixels):
        lung, soft_tissue = image[film.lung_mask], np.median(image[24:56, 28:36])
        q = np.percentile(lung, [10, 50, 90, 95, 99])
        histogram.append(np.r_[q - soft_tissue, q[2:] - q[1], lung.std()])
    features = np.hstack([blocks, np.array(histogram)])
    groups = [patient for patient, _, _ in plan]
    aucs = {}
    for name in FINDINGS:
        truth = np.array([name in present for _, _, present in plan])
        assert 10 < truth.sum() < n - 10
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
        score = cross_val_predict(model, features, truth, groups=groups, cv=GroupKFold(5), method="decision_function")
        aucs[name] = roc_auc_score(truth, score)
    assert all(auc > 0.7 for auc in aucs.values()), aucs
    # And a hand feature with no learning at all: the lower lung zone is denser with an effusion.
    lower_minus_upper = []
    for film, image in zip(films, pixels):
        rows = np.flatnonzero(film.lung_mask.any(axis=1))
        cut = rows.min() + 0.75 * (rows.max() - rows.min())
        low = film.lung_mask & (np.arange(64)[:, None] > cut)
        high = film.lung_mask & (np.arange(64)[:, None] < cut)
        lower_minus_upper.append(image[low].mean() - image[high].mean())
    truth = np.array(["Effusion" in present for _, _, present in plan])
    assert roc_auc_score(truth, lower_minus_upper) > 0.8


# --- a CheXpert-shaped tree ------------------------------------------------------------------

REAL_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
OBSERVATIONS = CHEXPERT_HEADER[5:]


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    return write_phantom_chexpert(root, n=400, seed=3, size=32, uncertain_fraction=0.25, valid_fraction=0.2, progress=False)


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_chexpert_header_is_the_real_one(chexpert):
    assert ",".join(CHEXPERT_HEADER) == REAL_HEADER
    for table in (chexpert.train_csv, chexpert.valid_csv):
        assert table.read_text().splitlines()[0] == REAL_HEADER
    sample = SHARED_FORMATS / "chexpert_train.sample.csv"
    if sample.is_file():
        assert _read(sample)[0] == list(CHEXPERT_HEADER)


def test_chexpert_files_are_where_the_csvs_say(chexpert):
    top = chexpert.root.parent
    listed = []
    for table, split in ((chexpert.train_csv, "train"), (chexpert.valid_csv, "valid")):
        for row in _read(table)[1:]:
            path = row[0]
            parts = path.split("/")
            assert parts[0] == "CheXpert-v1.0-small" and parts[1] == split and parts[-1] == "view1_frontal.jpg"
            assert parts[2].startswith("patient") and len(parts[2]) == 12 and parts[3].startswith("study")
            assert row[1] in ("Female", "Male") and 18 <= int(row[2]) <= 95 and row[3] == "Frontal" and row[4] in ("AP", "PA")
            with Image.open(top / path) as image:
                assert image.format == "JPEG" and image.size == (32, 32)
            listed.append(path)
    assert len(listed) == 400 and sorted(listed) == sorted(film.path for film in chexpert.films)
    assert len(list(chexpert.root.rglob("*.jpg"))) == 400
    train_patients = {film.patient_id for film in chexpert.films if film.split == "train"}
    valid_patients = {film.patient_id for film in chexpert.films if film.split == "valid"}
    assert not train_patients & valid_patients
    assert min(valid_patients) == "patient64541" and min(train_patients) == "patient00001"
    share = len(valid_patients) / (len(valid_patients) + len(train_patients))
    assert abs(share - 0.2) < 0.01
    # The toolkit's own CheXpert indexer reads the tree.
    from cxrssl.data.adapters import index_dataset

    assert len(index_dataset("chexpert", chexpert.root).manifest) == 400


def test_chexpert_uncertain_share_blanks_and_truth(chexpert):
    counts = {True: [0, 0], False: [0, 0]}  # truly positive / negative entries: [uncertain, all]
    blanks = negatives_written = 0
    for film in chexpert.films:
        if film.split != "train":
            continue
        for column, finding in CHEXPERT_FINDINGS.items():
            value, truth = film.row[column], finding in film.findings
            counts[truth][0] += value == "-1.0"
            counts[truth][1] += 1
            if truth:
                assert value in ("1.0", "-1.0")
            else:
                assert value in ("0.0", "", "-1.0")
                if value != "-1.0":
                    negatives_written += 1
                    blanks += value == ""
        assert film.row["Atelectasis"] in ("", "0.0")
        written = [film.row[c] for c in OBSERVATIONS]
        assert film.row["No Finding"] == ("" if ("1.0" in written[1:] or "-1.0" in written[1:]) else "1.0")
    for truth, (uncertain, total) in counts.items():
        assert total > 150
        assert abs(uncertain / total - 0.25) < 4 * math.sqrt(0.25 * 0.75 / total), truth
    assert abs(blanks / negatives_written - 0.5) < 4 * math.sqrt(0.25 / negatives_written)


def test_chexpert_valid_is_consensus_zero_one_from_the_truth(chexpert):
    rows = _read(chexpert.valid_csv)[1:]
    assert rows and all(value in ("0.0", "1.0") for row in rows for value in row[5:])
    for film in (film for film in chexpert.films if film.split == "valid"):
        for column, finding in CHEXPERT_FINDINGS.items():
            assert film.row[column] == ("1.0" if finding in film.findings else "0.0")
        assert film.row["No Finding"] == ("0.0" if film.findings else "1.0")


def test_chexpert_is_reproducible(chexpert, tmp_path):
    again = write_phantom_chexpert(tmp_path, n=400, seed=3, size=32, uncertain_fraction=0.25, valid_fraction=0.2, workers=1, progress=False)
    assert again.train_csv.read_text() == chexpert.train_csv.read_text()
    assert again.valid_csv.read_text() == chexpert.valid_csv.read_text()
    some = chexpert.films[7].path
    assert (tmp_path / some).read_bytes() == (chexpert.root.parent / some).read_bytes()
