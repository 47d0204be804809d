from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrssl.data.splits import PatientLeakError, assert_no_patient_leak, patient_grouped_split, patients_in_several_subsets


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
