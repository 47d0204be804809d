from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrssl.data.splits import (
    PatientLeakError,
    assert_no_patient_leak,
    label_budget_rows,
    patient_classes,
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
    rate = {name: sum(l == "PNEUMONIA" for l, s in zip(labels, splits) if s == name) / counts[name] for name in counts}
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
