"""Patient-level splits: one patient's images never sit in two subsets.

A model that has seen a patient's follow-up film in training recognises that patient,
not the disease, at test time; every split here is therefore made over patients.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from cxrssl.errors import CxrsslError

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
    if not fractions or any(f < 0 for f in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise CxrsslError(f"split fractions {fractions} must be non-negative and add up to 1")

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
