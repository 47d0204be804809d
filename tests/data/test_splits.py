from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrssl.data.splits import (
    PatientLeakError,
    assert_no_patient_leak,
    iterative_stratification,
    label_budget_rows,
    multilabel_patient_folds,
    multilabel_patient_split,
    patient_budget_rows,
    patient_classes,
    patient_finding_matrix,
    patient_grouped_split,
    patient_share,
    patients_in_several_subsets,
)


def _dataset(n_patients: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    patients, labels = [], []
    for p in range(n_patients):
        label = "PNEUMONIA" if rng.random() < 0.4 else "NORMAL"
        for _ in range(int(rng.integers(1, 5))):
            patients.append(f"p{p}")
            labels.append(label)
    return patients, labels


def test_patients_never_cross_and_shares_are_close():
    patients, labels = _dataset(300)
    splits = patient_grouped_split(patients, labels, seed=1)
    assert patients_in_several_subsets(patients, splits) == {}
    counts = Counter(splits)
    for name, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(counts[name] / len(splits) - share) < 0.03
    # stratified: the positive rate is about the same in every subset
    rate = {name: sum(label == "PNEUMONIA" for label, s in zip(labels, splits) if s == name) / counts[name] for name in counts}
    assert max(rate.values()) - min(rate.values()) < 0.08


def test_deterministic_per_seed_and_different_across_seeds():
    patients, labels = _dataset(100)
    assert patient_grouped_split(patients, labels, seed=5) == patient_grouped_split(patients, labels, seed=5)
    assert patient_grouped_split(patients, labels, seed=5) != patient_grouped_split(patients, labels, seed=6)


def test_follow_ups_of_a_patient_stay_together():
    # Patient "a" has films under both labels (a follow-up after recovery).
    patients = ["a", "a", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
    labels = ["PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL", "NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA", "NORMAL", "NORMAL"]
    splits = patient_grouped_split(patients, labels, seed=0)
    assert len({splits[0], splits[1], splits[2]}) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 25), st.sampled_from(["A", "B", "C"])), min_size=1, max_size=120),
    st.integers(0, 2**16),
)
def test_property_no_patient_in_two_subsets(rows, seed):
    patients = [f"p{p}" for p, _ in rows]
    labels = [label for _, label in rows]
    splits = patient_grouped_split(patients, labels, seed=seed)
    assert len(splits) == len(rows)
    assert set(splits) <= {"train", "val", "test"}
    assert patients_in_several_subsets(patients, splits) == {}


def test_leak_check_names_the_patient():
    with pytest.raises(PatientLeakError, match="'p2' in test, train"):
        assert_no_patient_leak(["p1", "p2", "p2"], ["train", "train", "test"])
    assert_no_patient_leak(["p1", "p2"], ["train", "test"])


def test_bad_fractions():
    from cxrssl.errors import CxrsslError

    with pytest.raises(CxrsslError, match="add up to 1"):
        patient_grouped_split(["a"], ["X"], {"train": 0.5, "test": 0.2})


def test_real_nih_patients_with_both_labels_stay_whole(shared_data):
    from cxrssl.data.manifest import read_manifest

    manifest = read_manifest(shared_data / "nih_pneumonia" / "labels.csv", check_files=False)
    by_patient = {}
    for row in manifest.rows:
        by_patient.setdefault(row.patient_key, set()).add(row.label)
    both_labels = {patient for patient, labels in by_patient.items() if len(labels) == 2}
    assert len(both_labels) == 21  # follow-ups filed under Pneumonia and No_findings (see data README)
    splits = patient_grouped_split(manifest.patient_keys, manifest.labels, seed=0)
    assert patients_in_several_subsets(manifest.patient_keys, splits) == {}
    for patient in both_labels:
        assert len({s for p, s in zip(manifest.patient_keys, splits) if p == patient}) == 1
    assert len(set(manifest.patient_keys)) == 682


def test_fraction_takes_whole_patients_reproducibly(phantom_manifest):
    from cxrssl.data.manifest import read_manifest

    manifest = read_manifest(phantom_manifest)
    half = manifest.select(patient_share(manifest.patient_keys, 0.5, seed=0))
    assert patient_share(manifest.patient_keys, 0.5, seed=0) == patient_share(manifest.patient_keys, 0.5, seed=0)
    chosen = set(half.patient_keys)
    assert len(chosen) == round(0.5 * len(set(manifest.patient_keys)))
    # every image of a chosen patient is in, every other image is out
    assert sorted(r.path for r in manifest.rows if r.patient_key in chosen) == sorted(r.path for r in half.rows)
    assert patient_share(manifest.patient_keys, 1.0, seed=0) == list(range(len(manifest)))


def test_label_budgets_draw_whole_patients_per_class_nested_and_reproducibly():
    import numpy as np

    patients, labels = _dataset(120, seed=5)
    rows = np.arange(len(patients))[np.arange(len(patients)) % 3 != 0]  # a "training part"
    classes = patient_classes(patients, labels)
    draws = label_budget_rows(patients, labels, rows, [5, 10, None], seed=(1, 2, 3))
    again = label_budget_rows(patients, labels, rows, [5, 10, None], seed=(1, 2, 3))
    assert all(np.array_equal(draws[b], again[b]) for b in draws)
    for budget in (5, 10):
        chosen = draws[budget]
        assert set(chosen) <= set(rows.tolist())
        drawn_patients = {patients[i] for i in chosen}
        assert Counter(classes[p] for p in drawn_patients) == {"NORMAL": budget, "PNEUMONIA": budget}
        # whole patients: every training-part image of a drawn patient is in
        assert sorted(chosen.tolist()) == sorted(i for i in rows if patients[i] in drawn_patients)
    assert {patients[i] for i in draws[5]} <= {patients[i] for i in draws[10]}  # nested
    assert np.array_equal(np.sort(draws[None]), rows)
    other = label_budget_rows(patients, labels, rows, [5], seed=(1, 2, 4))[5]
    assert {patients[i] for i in other} != {patients[i] for i in draws[5]}


def test_a_budget_larger_than_a_class_is_refused():
    import numpy as np

    patients, labels = _dataset(30, seed=1)
    smaller = min(Counter(patient_classes(patients, labels).values()).values())
    with pytest.raises(Exception, match=f"has only {smaller} patient"):
        label_budget_rows(patients, labels, np.arange(len(patients)), [smaller + 1], seed=0)


def test_a_patient_with_films_of_both_classes_counts_once_in_its_majority_class():
    assert patient_classes(["a", "a", "a", "b", "b"], ["X", "Y", "Y", "X", "Y"]) == {"a": "Y", "b": "X"}


# --- multi-label tasks: iterative stratification over findings, patient level ----------

PREVALENCES = (0.02, 0.06, 0.11, 0.19, 0.3, 0.4)


def _multilabel_population(n_patients: int = 600, seed: int = 0):
    """Patients with 1-4 images and 6 correlated findings (prevalences 2-40 % of patients).

    Returns the image-level patient ids and targets (1 / 0 / NaN) and the patient-level
    truth (n_patients, 6), patient ``p{i:04d}`` in row i. A positive patient has the
    finding on at least one image; their other images are positive, negative or unlabelled.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    common = rng.normal(size=(n_patients, 1))  # one shared factor: the findings co-occur
    latent = 0.6 * common + 0.8 * rng.normal(size=(n_patients, len(PREVALENCES)))
    positive = latent > np.array([np.quantile(latent[:, f], 1 - q) for f, q in enumerate(PREVALENCES)])
    patients, targets = [], []
    for p in range(n_patients):
        k = int(rng.integers(1, 5))
        images = np.where(rng.random((k, len(PREVALENCES))) < 0.8, 0.0, np.nan)
        for f in np.flatnonzero(positive[p]):
            images[rng.random(k) < 0.3, f] = 1.0
            images[rng.integers(k), f] = 1.0
        patients += [f"p{p:04d}"] * k
        targets.append(images)
    return patients, np.vstack(targets), positive


def _fold_of_patient(patients, folds) -> dict:
    found = {}
    for index, (_, test) in enumerate(folds):
        for row in test:
            assert found.setdefault(patients[row], index) == index  # a patient's images in one fold
    return found


def _label_distribution(matrix, subset, k) -> float:
    """LD of Sechidis et al. (2011): mean over labels and subsets of |pos/neg in subset - pos/neg overall|."""
    import numpy as np

    everyone = matrix.sum(axis=0) / (len(matrix) - matrix.sum(axis=0))
    per_subset = []
    for j in range(k):
        inside = matrix[subset == j]
        per_subset.append(np.abs(inside.sum(axis=0) / (len(inside) - inside.sum(axis=0)) - everyone))
    return float(np.mean(per_subset))


def test_patient_finding_matrix_is_positive_where_any_image_is():
    import numpy as np

    nan = np.nan
    patients, matrix = patient_finding_matrix(["b", "a", "b", "c"], [[0, 1, nan], [nan, nan, nan], [1, 0, nan], [0, 0, 0]])
    assert patients == ["a", "b", "c"]
    assert matrix.dtype == bool
    assert matrix.tolist() == [[False, False, False], [True, True, False], [False, False, False]]
    ids, targets, truth = _multilabel_population(200, seed=3)
    assert np.array_equal(patient_finding_matrix(ids, targets)[1], truth)
    with pytest.raises(ValueError, match="one row per patient"):
        patient_finding_matrix(["a", "b"], [[1.0]])
    with pytest.raises(ValueError, match="NaN"):
        patient_finding_matrix(["a"], [[0.5]])


def test_iterative_stratification_by_hand():
    """Algorithm 1 of Sechidis et al. on 8 patients, 3 findings, two subsets of 3/4 and 1/4.

    Every choice below is decided without a random tie-break, so the generator must not
    be touched at all.
    """
    import numpy as np

    class NoTies:
        def __getattr__(self, name):
            raise AssertionError("a random tie-break was needed")

    A, B, C = 0, 1, 2
    findings = {0: [A, B], 1: [A], 2: [B], 3: [A, C], 4: [A, C], 5: [B], 6: [], 7: []}
    matrix = np.zeros((8, 3), dtype=bool)
    for patient, found in findings.items():
        matrix[patient, found] = True
    # Positives: A 4 (p0 p1 p3 p4), B 3 (p0 p2 p5), C 2 (p3 p4). Desired counts (subset 0, 1):
    # all patients c = (6, 2); c_A = (3, 1); c_B = (2.25, 0.75); c_C = (1.5, 0.5).
    # 1. Fewest positives: C (2).
    #    p3 -> 0 (c_C 1.5 > 0.5).   c_C = (0.5, 0.5), c_A = (2, 1), c = (5, 2).
    #    p4: c_C ties at 0.5; c (5 > 2) -> 0.   c_C = (-0.5, 0.5), c_A = (1, 1), c = (4, 2).
    # 2. Left: A 2 (p0 p1), B 3 (p0 p2 p5): A is now the rarest though it started the most common.
    #    p0: c_A ties at 1; c (4 > 2) -> 0.   c_A = (0, 1), c_B = (1.25, 0.75), c = (3, 2).
    #    p1 -> 1 (c_A 1 > 0).   c_A = (0, 0), c = (3, 1).
    # 3. Left: B 2 (p2 p5).
    #    p2 -> 0 (c_B 1.25 > 0.75).   c_B = (0.25, 0.75), c = (2, 1).
    #    p5 -> 1 (c_B 0.75 > 0.25).   c_B = (0.25, -0.25), c = (2, 0).
    # 4. No finding: p6 -> 0 (c 2 > 0), c = (1, 0); p7 -> 0 (c 1 > 0), c = (0, 0).
    expected = [0, 1, 0, 0, 0, 1, 0, 0]
    assert iterative_stratification(matrix, [0.75, 0.25], NoTies()).tolist() == expected


def test_iterative_stratification_breaks_ties_at_random_and_reproducibly():
    import numpy as np

    # Two patients of one finding, two equal subsets: the first goes to either (a tie on
    # every count), the second to the other.
    matrix = np.array([[True], [True]])
    outcomes = {tuple(iterative_stratification(matrix, [0.5, 0.5], np.random.default_rng(s)).tolist()) for s in range(20)}
    assert outcomes == {(0, 1), (1, 0)}
    again = [iterative_stratification(matrix, [0.5, 0.5], np.random.default_rng(7)).tolist() for _ in range(3)]
    assert again[0] == again[1] == again[2]
    from cxrssl.errors import CxrsslError

    with pytest.raises(CxrsslError, match="add up to 1"):
        iterative_stratification(matrix, [0.5, 0.2], np.random.default_rng(0))


def test_multilabel_folds_keep_patients_whole_and_cover_every_row_once():
    import numpy as np

    ids, targets, _ = _multilabel_population(300, seed=1)
    folds = multilabel_patient_folds(ids, targets, folds=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(ids)))  # every row in exactly one test fold
    for train, test in folds:
        assert train.dtype.kind == "i" and test.dtype.kind == "i"
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted
        assert np.array_equal(np.union1d(train, test), np.arange(len(ids)))
        assert len(np.intersect1d(train, test)) == 0  # complements
        assert not {ids[i] for i in train} & {ids[i] for i in test}  # no patient on both sides
    fold_of = _fold_of_patient(ids, folds)
    assert len(fold_of) == len(set(ids))


def test_multilabel_folds_are_stratified_far_better_than_random_patient_folds():
    import numpy as np

    k = 5
    ids, targets, truth = _multilabel_population(600, seed=0)
    positives = truth.sum(axis=0)
    assert positives.tolist() == [12, 36, 66, 114, 180, 240]
    iterative = []
    for seed in range(3):
        fold_of = _fold_of_patient(ids, multilabel_patient_folds(ids, targets, k, seed))
        subset = np.array([fold_of[f"p{p:04d}"] for p in range(len(truth))])
        counts = np.array([truth[subset == j].sum(axis=0) for j in range(k)])
        # every finding's positive patients per fold within a patient of the ideal n_f / K
        assert np.abs(counts - positives / k).max() <= 1.0
        assert np.abs(np.bincount(subset) - len(truth) / k).max() <= 1.0
        iterative.append(_label_distribution(truth, subset, k))
    # random patient-grouped folds: a seeded permutation of the patients dealt round-robin
    random = [_label_distribution(truth, np.random.default_rng(s).permutation(len(truth)) % k, k) for s in range(20)]
    assert np.mean(iterative) < 0.1 * np.mean(random)
    assert max(iterative) < min(random)


def test_a_rare_finding_with_k_positive_patients_gets_one_per_fold():
    import numpy as np

    ids, targets, _ = _multilabel_population(200, seed=2)
    rare = np.full((len(targets), 1), 0.0)
    carriers = [f"p{p:04d}" for p in (3, 50, 51, 120, 199)]  # exactly K = 5 patients
    for row, patient in enumerate(ids):
        if patient in carriers:
            rare[row] = 1.0
    targets = np.hstack([targets, rare])
    for seed in range(5):
        fold_of = _fold_of_patient(ids, multilabel_patient_folds(ids, targets, 5, seed))
        assert sorted(fold_of[p] for p in carriers) == [0, 1, 2, 3, 4]


def test_multilabel_folds_are_deterministic_and_ignore_row_order():
    import numpy as np

    ids, targets, _ = _multilabel_population(200, seed=4)
    first = multilabel_patient_folds(ids, targets, 4, seed=11)
    again = multilabel_patient_folds(ids, targets, 4, seed=11)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    shuffled = np.random.default_rng(0).permutation(len(ids))
    moved = multilabel_patient_folds([ids[i] for i in shuffled], targets[shuffled], 4, seed=11)
    assert _fold_of_patient([ids[i] for i in shuffled], moved) == _fold_of_patient(ids, first)
    other = multilabel_patient_folds(ids, targets, 4, seed=12)
    assert _fold_of_patient(ids, other) != _fold_of_patient(ids, first)
    seeded = multilabel_patient_folds(ids, targets, 4, seed=(1, 2, 3))
    assert _fold_of_patient(ids, seeded) == _fold_of_patient(ids, multilabel_patient_folds(ids, targets, 4, seed=[1, 2, 3]))


def test_multilabel_folds_refuse_impossible_fold_counts():
    from cxrssl.errors import CxrsslError

    with pytest.raises(CxrsslError, match="only 2 patient"):
        multilabel_patient_folds(["a", "a", "b"], [[1.0], [0.0], [0.0]], folds=3, seed=0)
    with pytest.raises(CxrsslError, match="at least 2"):
        multilabel_patient_folds(["a", "b"], [[1.0], [0.0]], folds=1, seed=0)


def test_multilabel_split_holds_70_10_20_for_every_common_finding():
    import numpy as np

    ids, targets, truth = _multilabel_population(600, seed=0)
    splits = multilabel_patient_split(ids, targets, seed=0)
    assert len(splits) == len(ids) and set(splits) == {"train", "val", "test"}
    assert patients_in_several_subsets(ids, splits) == {}
    subset_of = dict(zip(ids, splits))
    subset = np.array([subset_of[f"p{p:04d}"] for p in range(len(truth))])
    for name, share in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs((subset == name).sum() - share * len(truth)) <= 2
        for f in range(truth.shape[1]):
            if truth[:, f].sum() >= 30:  # the common findings
                assert abs(truth[subset == name, f].sum() - share * truth[:, f].sum()) <= 2
    assert multilabel_patient_split(ids, targets, seed=0) == splits
    assert multilabel_patient_split(ids, targets, seed=1) != splits
    halves = multilabel_patient_split(ids, targets, {"train": 0.5, "test": 0.5}, seed=0)
    assert set(halves) == {"train", "test"}
    from cxrssl.errors import CxrsslError

    with pytest.raises(CxrsslError, match="add up to 1"):
        multilabel_patient_split(ids, targets, {"train": 0.5, "test": 0.2})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.lists(st.sampled_from([0.0, 1.0, float("nan")]), min_size=3, max_size=3)), min_size=3, max_size=80),
    st.integers(2, 3),
    st.integers(0, 2**16),
)
def test_property_multilabel_folds_and_split_never_leak(rows, folds, seed):
    import numpy as np

    patients = [f"p{p}" for p, _ in rows]
    targets = np.array([t for _, t in rows])
    if len(set(patients)) < folds:
        return
    found = multilabel_patient_folds(patients, targets, folds, seed)
    assert sorted(np.concatenate([test for _, test in found]).tolist()) == list(range(len(rows)))
    for train, test in found:
        assert not {patients[i] for i in train} & {patients[i] for i in test}
    splits = multilabel_patient_split(patients, targets, seed=seed)
    assert patients_in_several_subsets(patients, splits) == {}


def test_patient_budgets_are_whole_patients_nested_and_reproducible():
    import numpy as np

    ids, _, _ = _multilabel_population(120, seed=5)
    rows = np.arange(len(ids))[np.arange(len(ids)) % 3 != 0]  # a "training part"
    in_rows = {ids[i] for i in rows}
    draws = patient_budget_rows(ids, rows, [5, 20, None], seed=(1, 2, 3))
    again = patient_budget_rows(ids, rows, [5, 20, None], seed=(1, 2, 3))
    assert all(np.array_equal(draws[b], again[b]) for b in draws)
    for budget in (5, 20):
        chosen = draws[budget]
        drawn = {ids[i] for i in chosen}
        assert len(drawn) == budget  # a total of patients, not per class
        assert drawn <= in_rows
        # whole patients: every training-part image of a drawn patient, and nothing else
        assert sorted(chosen.tolist()) == sorted(i for i in rows if ids[i] in drawn)
    assert {ids[i] for i in draws[5]} <= {ids[i] for i in draws[20]}  # nested
    assert np.array_equal(np.sort(draws[None]), rows)
    assert len(patient_budget_rows(ids, rows, [len(in_rows)], seed=0)[len(in_rows)]) == len(rows)
    other = patient_budget_rows(ids, rows, [5], seed=(1, 2, 4))[5]
    assert {ids[i] for i in other} != {ids[i] for i in draws[5]}
    # the draw depends on the patients, not the row order
    reversed_rows = rows[::-1]
    assert {ids[i] for i in patient_budget_rows(ids, reversed_rows, [5], seed=(1, 2, 3))[5]} == {ids[i] for i in draws[5]}


def test_a_patient_budget_above_the_patients_is_refused_in_one_line():
    import numpy as np

    from cxrssl.errors import CxrsslError

    ids = ["a", "a", "b", "c", "c", "d"]
    with pytest.raises(CxrsslError) as error:
        patient_budget_rows(ids, np.arange(len(ids)), [2, 5], seed=0)
    message = str(error.value)
    assert "\n" not in message
    assert "only 4 patient(s)" in message and "--labels" in message
    assert len(patient_budget_rows(ids, np.arange(len(ids)), [4], seed=0)[4]) == len(ids)
