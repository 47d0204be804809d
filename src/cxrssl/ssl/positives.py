"""Which film is each film's positive: another view of itself, or another film of its patient or study.

SimCLR, MoCo and BYOL make a positive pair from two augmented views of one image.
With several films of one patient, two *different* films of that patient are a
positive pair that no augmentation can make: the anatomy is the same, the
positioning, exposure and sometimes the disease differ (MedAug, Vu et al. 2021: same
patient and study; MICLe, Azizi et al. 2021: several images of one case).

``positives`` (a setting of every method):

- ``views`` (default): view 2 of film i is another augmentation of film i;
- ``patient``: view 2 is an augmentation of another film of i's patient, drawn anew
  every epoch; a patient with one film (or an unknown patient) falls back to i itself;
- ``study``: the same within a study (the manifest's ``study_id`` column, which the
  CheXpert adapter writes as ``patientNNNNN/studyN``).

The partner of every film is drawn for the whole data set from (seed, epoch) alone,
before the films are shared out among processes, so a resumed epoch and every
process of a ``torchrun`` job see the same pairs, whatever the number of processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from cxrssl.data.manifest import Manifest
from cxrssl.errors import ConfigError

POSITIVES = {
    "views": "two augmentations of the same film",
    "patient": "two films of the same patient (the film itself when the patient has one)",
    "study": "two films of the same study (manifest column study_id)",
}
STUDY_COLUMN = "study_id"


def positive_groups(manifest: Manifest, positives: str) -> list[str] | None:
    """The group key of every row (films of one key are each other's positives), or None for ``views``."""
    if positives not in POSITIVES:
        raise ConfigError(f"positives must be one of {', '.join(POSITIVES)}, got {positives!r}")
    if positives == "views":
        return None
    if positives == "patient":
        return manifest.patient_keys
    if not any(row.extra.get(STUDY_COLUMN) for row in manifest.rows):
        raise ConfigError(
            f"{manifest.name}: positives study needs a {STUDY_COLUMN} column (the CheXpert adapter writes one); "
            f"NIH ChestX-ray14 films are one study each: use positives patient"
        )
    # A study belongs to one patient: the patient is part of the key, so equal study names of two patients stay apart.
    return [f"{row.patient_key}|{row.extra[STUDY_COLUMN]}" if row.extra.get(STUDY_COLUMN) else f"image:{row.path}" for row in manifest.rows]


def partner_indices(groups: Sequence[str], seed: int, epoch: int) -> np.ndarray:
    """``partner[i]``: a film of i's group other than i, drawn uniformly from (seed, epoch); i itself when it is alone."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(groups):
        members[key].append(index)
    rng = np.random.default_rng([seed, epoch, 0x504F53])
    partner = np.arange(len(groups), dtype=np.int64)
    for key in sorted(members):  # a fixed order, so the draws do not depend on the dict's history
        films = members[key]
        if len(films) < 2:
            continue
        films = np.asarray(films, dtype=np.int64)
        # An offset in 1..n-1 around the group: never the film itself, every other film equally likely.
        offsets = rng.integers(1, len(films), size=len(films))
        partner[films] = films[(np.arange(len(films)) + offsets) % len(films)]
    return partner


def pairing_summary(groups: Sequence[str] | None) -> str:
    """One line for the run's start: how many films have a partner other than themselves."""
    if groups is None:
        return "positives: two views of each film"
    counts: dict[str, int] = defaultdict(int)
    for key in groups:
        counts[key] += 1
    paired = sum(count for count in counts.values() if count > 1)
    return f"positives: {paired} of {len(groups)} films have another film of their group ({sum(1 for c in counts.values() if c > 1)} groups); the rest pair with themselves"
