"""Patient-level splits: one patient's images never sit in two subsets.

A model that has seen a patient's follow-up film in training recognises that patient,
not the disease, at test time; every split here is therefore made over patients.

Multi-label tasks (a vector of findings per image: 1 positive, 0 negative, NaN not
labelled) are stratified over the findings at the patient level with the iterative
stratification of Sechidis, Tsoumakas & Vlahavas (2011): ``multilabel_patient_folds``
(K-fold cross-validation), ``multilabel_patient_split`` (train/val/test) and
``patient_budget_rows`` (label budgets as a number of patients).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from cxrssl.data.findings import finding_labels
from cxrssl.errors import CxrsslError, ProbeError

DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


class PatientLeakError(CxrsslError):
    """A patient appears in more than one subset."""


def patient_grouped_split(
    patient_ids: Sequence[str],
    labels: Sequence[str],
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> list[str]:
    """Assign every image to a subset, keeping patients whole and labels balanced.

    Patients are grouped into strata by their most frequent label (ties: the label
    that sorts first), shuffled with ``seed`` and dealt one by one to the subset that
    is furthest below its share of that stratum's images. The result is a subset
    name per image, in input order.
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    if len(patient_ids) != len(labels):
        raise ValueError("patient_ids and labels must have the same length")
    _require_fractions(fractions, fractions.values())

    images_of_patient: dict[str, list[int]] = defaultdict(list)
    for index, patient in enumerate(patient_ids):
        images_of_patient[patient].append(index)

    patients_of_stratum: dict[str, list[str]] = defaultdict(list)
    for patient, indices in images_of_patient.items():
        counts = Counter(labels[i] for i in indices)
        stratum = min(counts, key=lambda label: (-counts[label], label))
        patients_of_stratum[stratum].append(patient)

    rng = np.random.default_rng(seed)
    names = list(fractions)
    assignment = [""] * len(patient_ids)
    for stratum in sorted(patients_of_stratum):
        patients = sorted(patients_of_stratum[stratum])
        rng.shuffle(patients)
        total = sum(len(images_of_patient[p]) for p in patients)
        filled = dict.fromkeys(names, 0)
        for patient in patients:
            # Largest deficit first; the order of `fractions` breaks ties.
            target = max(names, key=lambda name: fractions[name] * total - filled[name])
            filled[target] += len(images_of_patient[patient])
            for index in images_of_patient[patient]:
                assignment[index] = target
    return assignment


def _require_fractions(shown, values) -> None:
    values = list(values)
    if not values or any(f < 0 for f in values) or not np.isclose(sum(values), 1.0):
        raise CxrsslError(f"split fractions {shown} must be non-negative and add up to 1")


def draw_patients(patient_ids: Sequence[str], count: int, rng: np.random.Generator) -> list[str]:
    """``count`` of the distinct patients, drawn without replacement, in the order drawn.

    The one patient sampler: pretraining's ``--fraction`` and the label budgets of
    ``cxrssl compare`` both draw through it. The patients are sorted first, so the draw
    depends on the seed and the set of patients, never on the manifest's row order; a
    longer draw from the same generator state starts with the shorter one.
    """
    unique = sorted(set(patient_ids))
    return [unique[i] for i in rng.permutation(len(unique))[:count]]


def patient_share(patient_ids: Sequence[str], fraction: float, seed: int) -> list[int]:
    """Rows of a reproducible share ``fraction`` of the patients (all their images), for ``--fraction``."""
    if fraction >= 1:
        return list(range(len(patient_ids)))
    count = max(1, round(fraction * len(set(patient_ids))))
    chosen = set(draw_patients(patient_ids, count, np.random.default_rng([seed, 1789])))
    return [i for i, key in enumerate(patient_ids) if key in chosen]


def patient_classes(patient_ids: Sequence[str], labels: Sequence[str]) -> dict[str, str]:
    """Each patient's class: the label of most of their images (ties: the label that sorts first).

    A patient with films of both classes (a follow-up after recovery, say) counts once,
    in one class, wherever patients are counted per class.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    for patient, label in zip(patient_ids, labels):
        counts[patient][label] += 1
    return {patient: min(found, key=lambda label: (-found[label], label)) for patient, found in counts.items()}


def label_budget_rows(
    patient_ids: Sequence[str], labels: Sequence[str], rows: Sequence[int], budgets: Sequence[int | None], seed
) -> dict[int | None, np.ndarray]:
    """For each budget, the rows of ``budget`` patients per class drawn from ``rows`` (all their images).

    ``None`` means every patient. The draws are nested: each class's patients are
    permuted once (by ``seed``, through ``draw_patients``) and a budget takes the first
    ``budget`` of them, so a larger budget holds every patient of a smaller one. Raises
    when a budget exceeds the patients a class has in ``rows``.
    """
    rows = np.asarray(rows, dtype=int)
    patients = np.asarray(patient_ids, dtype=object)[rows]
    classes = patient_classes(patients, [labels[i] for i in rows])
    rng = np.random.default_rng(seed)
    order = {label: draw_patients([p for p, c in classes.items() if c == label], len(classes), rng) for label in sorted(set(classes.values()))}
    drawn: dict[int | None, np.ndarray] = {}
    for budget in budgets:
        if budget is not None:
            short = {label: len(found) for label, found in order.items() if len(found) < budget}
            if short:
                label, count = min(short.items(), key=lambda item: item[1])
                raise CxrsslError(
                    f"label budget {budget} patients per class: class {str(label)!r} has only {count} patient(s) in a training part; "
                    f"lower the budget (--labels) below {count} or use 'all'"
                )
        chosen = {p for found in order.values() for p in (found if budget is None else found[:budget])}
        drawn[budget] = rows[[p in chosen for p in patients]]
    return drawn


def patients_in_several_subsets(patient_ids: Sequence[str], subsets: Sequence[str]) -> dict[str, set[str]]:
    """Patients whose images are spread over more than one (non-empty) subset."""
    seen: dict[str, set[str]] = defaultdict(set)
    for patient, subset in zip(patient_ids, subsets):
        if subset:
            seen[patient].add(subset)
    return {patient: found for patient, found in seen.items() if len(found) > 1}


def assert_no_patient_leak(patient_ids: Sequence[str], subsets: Sequence[str], where: str = "the manifest") -> None:
    leaks = patients_in_several_subsets(patient_ids, subsets)
    if leaks:
        example, found = sorted(leaks.items())[0]
        raise PatientLeakError(
            f"{where}: {len(leaks)} patient(s) appear in several subsets (e.g. {example!r} in {', '.join(sorted(found))}); "
            f"re-split by patient, e.g. with `cxrssl split`"
        )


# --- multi-label tasks: stratified over findings at the patient level -------------------

# Desired counts are fractions times counts, so two that are equal on paper can differ
# in the last bits of a float; closer than this they are a tie.
_TIE = 1e-6


def patient_finding_matrix(patient_ids: Sequence[str], targets) -> tuple[list[str], np.ndarray]:
    """The patients (sorted) and, per patient and finding, whether any of their images is positive.

    ``targets`` is the image-level matrix (n_images, F): 1 positive, 0 negative, NaN not
    labelled. A patient is positive for a finding if any image is; negative or unlabelled
    images count as not positive.
    """
    targets = np.asarray(targets, dtype=float)
    if targets.ndim != 2 or len(targets) != len(patient_ids):
        raise ValueError("targets must be a matrix (images × findings) with one row per patient id")
    known = targets[~np.isnan(targets)]
    if np.any((known != 0) & (known != 1)):
        raise ValueError("targets must hold 1 (positive), 0 (negative) or NaN (not labelled)")
    patients = sorted(set(patient_ids))
    index = {patient: i for i, patient in enumerate(patients)}
    matrix = np.zeros((len(patients), targets.shape[1]), dtype=bool)
    np.logical_or.at(matrix, np.array([index[p] for p in patient_ids], dtype=int), targets == 1)
    return patients, matrix


def _largest(values: np.ndarray) -> np.ndarray:
    return np.flatnonzero(values >= values.max() - _TIE)


def _pick(candidates: np.ndarray, rng: np.random.Generator) -> int:
    return int(candidates[0] if len(candidates) == 1 else candidates[rng.integers(len(candidates))])


def iterative_stratification(patient_matrix, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """The subset index of every patient: Algorithm 1 of Sechidis, Tsoumakas & Vlahavas (2011).

    "On the stratification of multi-label data" (ECML PKDD 2011), with patients as the
    samples. ``patient_matrix`` is (n_patients, F), true where a patient is positive for
    a finding; ``fractions`` the desired share of each subset. Subset j desires
    ``fraction_j * n`` patients in all and ``fraction_j * n_f`` of the positive patients
    of finding f. Repeatedly, the finding with the fewest positive patients not yet dealt
    (ties at random) has each of those patients, in the order given, dealt to the subset
    that most desires that finding (ties: the subset that most desires patients in all,
    then at random); every desired count the patient meets is lowered by one. Patients
    with no positive finding come last, each to the subset that most desires patients
    (ties at random). ``rng`` is drawn from only to break ties, so the result is fixed
    by the matrix, the fractions and the generator's state.
    """
    matrix = np.asarray(patient_matrix, dtype=bool)
    if matrix.ndim != 2:
        raise ValueError("patient_matrix must be a matrix (patients × findings)")
    shares = np.asarray(fractions, dtype=float)
    _require_fractions(list(fractions), shares.tolist())
    desired = shares * len(matrix)  # c_j
    desired_of_finding = np.outer(shares, matrix.sum(axis=0))  # c_j^f
    left = matrix.sum(axis=0)  # positive patients of each finding not yet dealt
    subset = np.full(len(matrix), -1, dtype=int)

    def deal(patient: int, target: int) -> None:
        subset[patient] = target
        desired[target] -= 1
        desired_of_finding[target] -= matrix[patient]
        left[:] -= matrix[patient]

    while left.any():
        finding = _pick(np.flatnonzero(left == left[left > 0].min()), rng)
        for patient in np.flatnonzero(matrix[:, finding] & (subset < 0)):
            wanting = _largest(desired_of_finding[:, finding])
            if len(wanting) > 1:
                wanting = wanting[_largest(desired[wanting])]
            deal(patient, _pick(wanting, rng))
    for patient in np.flatnonzero(subset < 0):
        deal(patient, _pick(_largest(desired), rng))
    return subset


def _stratify_patients(matrix: np.ndarray, fractions: Sequence[float], seed) -> np.ndarray:
    """Iterative stratification of the (sorted) patients, dealt in an order shuffled by ``seed``.

    Algorithm 1 deals a finding's patients in the order given; shuffling them first keeps
    that order from being the patient ids' and makes the folds of two seeds differ in
    more than the tie-breaks.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(matrix))
    subset = np.empty(len(matrix), dtype=int)
    subset[order] = iterative_stratification(matrix[order], fractions, rng)
    return subset


def multilabel_patient_folds(patient_ids: Sequence[str], targets, folds: int, seed) -> list[tuple[np.ndarray, np.ndarray]]:
    """K patient-grouped folds stratified over the findings: ``(train_rows, test_rows)`` per fold.

    The patients (sorted, so the row order of the manifest does not matter) are dealt to
    ``folds`` equal parts by ``iterative_stratification`` over their finding matrix
    (``patient_finding_matrix``); every image of a patient lands in that patient's fold.
    Rows are sorted indices into ``patient_ids``; each row is in exactly one test part.
    """
    patients, matrix = patient_finding_matrix(patient_ids, targets)
    if folds < 2:
        raise CxrsslError(f"{folds} fold(s): cross-validation needs at least 2; raise --folds")
    if folds > len(patients):
        raise CxrsslError(f"{folds} folds but only {len(patients)} patient(s); lower --folds to at most {len(patients)}")
    fold_of_patient = _stratify_patients(matrix, [1 / folds] * folds, seed)
    index = {patient: i for i, patient in enumerate(patients)}
    fold_of_row = fold_of_patient[[index[p] for p in patient_ids]]
    return [(np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k)) for k in range(folds)]


def multilabel_patient_split(
    patient_ids: Sequence[str],
    targets,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> list[str]:
    """A subset name per image (default 70/10/20 train/val/test), patients whole, stratified over findings.

    The multi-label counterpart of ``patient_grouped_split``: the patients (sorted, then
    shuffled by ``seed``) are dealt by ``iterative_stratification``, so the shares hold
    for the positive patients of every finding, and for the patients in all (not the
    images: a patient's films all go where the patient goes).
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    _require_fractions(fractions, fractions.values())
    patients, matrix = patient_finding_matrix(patient_ids, targets)
    names = list(fractions)
    subset = _stratify_patients(matrix, [fractions[name] for name in names], seed)
    index = {patient: i for i, patient in enumerate(patients)}
    return [names[subset[index[p]]] for p in patient_ids]


def patient_budget_rows(patient_ids: Sequence[str], rows: Sequence[int], budgets: Sequence[int | None], seed) -> dict[int | None, np.ndarray]:
    """For each budget, the rows of ``budget`` patients drawn from ``rows`` (all their images).

    The label budgets of a multi-label task, where a patient has no single class: a
    budget counts patients in all. ``None`` means every patient. The draws are nested:
    the patients of ``rows`` are permuted once (by ``seed``, through ``draw_patients``)
    and a budget takes the first ``budget`` of them, so a larger budget holds every
    patient of a smaller one. Raises when a budget exceeds the patients in ``rows``.
    """
    rows = np.asarray(rows, dtype=int)
    patients = np.asarray(patient_ids, dtype=object)[rows]
    order = draw_patients(patients, len(set(patients)), np.random.default_rng(seed))
    drawn: dict[int | None, np.ndarray] = {}
    for budget in budgets:
        if budget is not None and budget < 0:
            raise CxrsslError(f"label budget {budget} patients: a budget is a number of patients (0 or more) or 'all' (--labels)")
        if budget is not None and budget > len(order):
            raise CxrsslError(
                f"label budget {budget} patients: a training part has only {len(order)} patient(s); "
                f"lower the budget (--labels) to at most {len(order)} or use 'all'"
            )
        chosen = set(order if budget is None else order[:budget])
        drawn[budget] = rows[np.array([p in chosen for p in patients], dtype=bool)]
    return drawn


def split_manifest(manifest, fractions: dict[str, float] | None = None, seed: int = 0) -> list[str]:
    """The split of ``cxrssl split``: patient-grouped, stratified by label, or over the findings
    when the manifest holds findings and no label."""
    findings = finding_labels(manifest)
    if findings is not None and not any(manifest.labels):
        return multilabel_patient_split(manifest.patient_keys, findings.values, fractions or DEFAULT_FRACTIONS, seed)
    return patient_grouped_split(manifest.patient_keys, manifest.labels, fractions or DEFAULT_FRACTIONS, seed)


def binary_targets(labels: Sequence[str], positive: str | None = None) -> tuple[np.ndarray, str, str]:
    """0/1 targets; the positive class is ``positive`` or, by default, the class that is not 'normal'-like."""
    classes = sorted({label for label in labels if label})
    if len(classes) != 2:
        raise ProbeError(f"the probe needs exactly two classes, found {len(classes)} ({', '.join(classes) or 'none'}); fix the label column")
    if positive is None:
        healthy = [c for c in classes if c.lower().replace("_", " ") in ("normal", "no finding", "no findings", "healthy", "negative")]
        positive = next(c for c in classes if c not in healthy) if len(healthy) == 1 else classes[1]
    if positive not in classes:
        raise ProbeError(f"--positive {positive!r} is not one of the classes {', '.join(classes)}")
    negative = next(c for c in classes if c != positive)
    return np.array([label == positive for label in labels], dtype=int), positive, negative
