"""Positives from other films of the patient or study: which film is whose partner, across epochs and processes."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.engine import BatchFeeder, make_views, paired_loader
from cxrssl.errors import ConfigError
from cxrssl.ssl.positives import pairing_summary, partner_indices, positive_groups

# Patient A has three films, B one, C two, D (unknown patient) one; A's films 0 and 2 are one study.
ROWS = [
    ManifestRow("a0.png", "A", extra={"study_id": "s1"}),
    ManifestRow("b0.png", "B", extra={"study_id": "s1"}),
    ManifestRow("a1.png", "A", extra={"study_id": "s2"}),
    ManifestRow("c0.png", "C", extra={"study_id": "s1"}),
    ManifestRow("a2.png", "A", extra={"study_id": "s1"}),
    ManifestRow("c1.png", "C", extra={"study_id": "s9"}),
    ManifestRow("d0.png", "", extra={"study_id": ""}),
]
MANIFEST = Manifest(ROWS, root=__import__("pathlib").Path("."))


def test_patient_partners_are_other_films_of_the_patient_and_a_lone_film_pairs_with_itself():
    groups = positive_groups(MANIFEST, "patient")
    seen = {i: set() for i in range(len(ROWS))}
    for epoch in range(1, 60):
        partner = partner_indices(groups, seed=0, epoch=epoch)
        for i, j in enumerate(partner):
            seen[i].add(int(j))
    # Over many epochs each film of A meets both other films of A, and only them.
    assert seen[0] == {2, 4} and seen[2] == {0, 4} and seen[4] == {0, 2}
    assert seen[3] == {5} and seen[5] == {3}
    assert seen[1] == {1} and seen[6] == {6}  # one film: the film itself (two views of it)


def test_study_partners_stay_in_the_study_and_study_names_of_two_patients_stay_apart():
    groups = positive_groups(MANIFEST, "study")
    for epoch in range(1, 30):
        partner = partner_indices(groups, seed=3, epoch=epoch)
        assert partner[0] == 4 and partner[4] == 0  # A's study s1
        assert partner[2] == 2  # A's study s2 holds one film
        assert partner[1] == 1 and partner[3] == 3  # "s1" of B and of C are other studies than A's s1
        assert partner[5] == 5 and partner[6] == 6


def test_views_need_no_groups_and_study_needs_its_column():
    assert positive_groups(MANIFEST, "views") is None
    bare = Manifest([ManifestRow("x.png", "P"), ManifestRow("y.png", "P")], root=MANIFEST.root)
    with pytest.raises(ConfigError, match="needs a study_id column"):
        positive_groups(bare, "study")
    with pytest.raises(ConfigError, match="positives must be one of"):
        positive_groups(bare, "ward")


def test_partners_depend_on_seed_and_epoch_only():
    groups = [f"p{i // 3}" for i in range(300)]
    first = partner_indices(groups, seed=5, epoch=2)
    np.testing.assert_array_equal(first, partner_indices(list(groups), seed=5, epoch=2))  # a resumed epoch
    assert (first != partner_indices(groups, seed=5, epoch=3)).any()
    assert (first != partner_indices(groups, seed=6, epoch=2)).any()
    assert all(groups[j] == groups[i] and j != i for i, j in enumerate(first))
    # every other film of a group is drawn about equally often
    counts = np.zeros((3, 3))
    for epoch in range(400):
        partner = partner_indices(groups[:3], seed=1, epoch=epoch)
        counts[0, partner[0]] += 1
    assert counts[0, 0] == 0 and 150 < counts[0, 1] < 250 and 150 < counts[0, 2] < 250


def test_the_pairing_holds_across_processes_whatever_their_number():
    """Each process's batch rows pair the films the sampler gave it with the partners of one global draw."""
    groups = [f"p{i // 4}" for i in range(64)]
    partner = partner_indices(groups, seed=0, epoch=7)
    pixels = torch.arange(64, dtype=torch.uint8).view(64, 1, 1).expand(64, 4, 4).contiguous()  # film i is all i

    def load(indices):
        return pixels[torch.as_tensor(np.asarray(indices))]

    pairs = {}
    for world in (1, 2, 4):
        found = set()
        for rank in range(world):
            sampler = DistributedSampler(range(64), num_replicas=world, rank=rank, shuffle=True, seed=0, drop_last=True)
            sampler.set_epoch(7)
            for batch in BatchFeeder(paired_loader(load, partner), list(sampler), 8, torch.device("cpu")):
                films, partners = batch[0][:, 0, 0].tolist(), batch[1][:, 0, 0].tolist()
                found |= set(zip(films, partners))
        pairs[world] = found
    assert pairs[1] == pairs[2] == pairs[4] == {(i, int(partner[i])) for i in range(64)}


class _Identity:
    """An augmentation that returns the pixels as floats, so a view shows which film it came from."""

    def __call__(self, pixels, generator):
        torch.rand(1, generator=generator)
        return pixels.float().unsqueeze(1)


def test_view_two_comes_from_the_partner_and_small_crops_from_the_film():
    films = torch.full((3, 4, 4), 1, dtype=torch.uint8)
    partners = torch.full((3, 4, 4), 2, dtype=torch.uint8)
    views = make_views(_Identity(), torch.stack([films, partners]), torch.Generator(), False, paired=True, small=_Identity(), small_crops=2)
    assert [int(v.max()) for v in views] == [1, 2, 1, 1]
    plain = make_views(_Identity(), films, torch.Generator(), False)
    assert len(plain) == 2 and all(int(v.max()) == 1 for v in plain)


def test_the_run_start_says_how_many_films_have_a_partner():
    assert pairing_summary(positive_groups(MANIFEST, "patient")).startswith("positives: 5 of 7 films have another film of their group (2 groups)")
