import math

import numpy as np
import pytest
import torch

from cxrssl.run import LOG_COLUMNS
from cxrssl.ssl.monitors import MONITOR_COLUMNS, alignment, knn_auc, knn_scores, monitor_rows, rankme, uniformity


@pytest.mark.parametrize("rank", [1, 3, 10])
def test_rankme_of_equal_singular_values_is_the_rank(rank):
    # Orthonormal columns scaled equally: `rank` equal singular values, the rest 0.
    q, _ = torch.linalg.qr(torch.randn(50, 20, generator=torch.Generator().manual_seed(rank), dtype=torch.float64))
    matrix = 3.0 * q[:, :rank] @ torch.eye(rank, 20, dtype=torch.float64)
    assert rankme(matrix) == pytest.approx(rank, rel=1e-4)


def test_rankme_of_unequal_singular_values_is_the_exponentiated_entropy():
    matrix = torch.diag(torch.tensor([3.0, 1.0, 0.0]))
    p = torch.tensor([0.75, 0.25])
    assert rankme(matrix) == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-5)


def test_alignment_and_uniformity_against_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 5.0]])
    # Normalised: pair 0 is orthogonal (squared distance 2), pair 1 identical (0).
    assert alignment(z1, z2) == pytest.approx(1.0)
    points = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    distances = [4.0, 2.0, 2.0]  # squared, over the three pairs
    assert uniformity(points) == pytest.approx(math.log(sum(math.exp(-2 * d) for d in distances) / 3))


def test_the_monitor_sample_is_fixed_by_the_seed_and_logged():
    assert list(monitor_rows(1000, 0)) == list(monitor_rows(1000, 0))
    assert list(monitor_rows(1000, 0)) != list(monitor_rows(1000, 1))
    assert len(monitor_rows(100, 0)) == 100 and len(monitor_rows(10_000, 0)) == 512
    assert set(MONITOR_COLUMNS) <= set(LOG_COLUMNS)


def test_knn_scores_against_a_hand_computation_and_patients_are_never_neighbours():
    # Films on a circle: angles give cosine similarities we can write down.
    angles = torch.tensor([0.0, 0.1, 0.2, 3.0, 3.1])
    features = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    targets = np.array([1, 1, 0, 0, 0])
    groups = ["p", "q", "p", "r", "s"]
    scores = knn_scores(features, targets, groups, k=2, temperature=0.5)

    def expected(i):
        others = [j for j in range(5) if groups[j] != groups[i]]
        nearest = sorted(others, key=lambda j: -math.cos(float(angles[i] - angles[j])))[:2]
        weights = [math.exp(math.cos(float(angles[i] - angles[j])) / 0.5) for j in nearest]
        return sum(w * targets[j] for w, j in zip(weights, nearest)) / sum(weights)

    np.testing.assert_allclose(scores, [expected(i) for i in range(5)], rtol=1e-7)  # float32 features
    # Film 0's nearest film is film 2 of its own patient; it is skipped, so film 1 and film 3 vote.
    assert scores[0] == pytest.approx(expected(0)) and scores[0] > 0.5


def test_knn_auc_separates_clusters_and_refuses_one_class():
    rng = np.random.default_rng(0)
    positive = rng.normal([5, 0], 0.3, size=(20, 2))
    negative = rng.normal([0, 5], 0.3, size=(20, 2))
    features = np.vstack([positive, negative])
    targets = np.array([1] * 20 + [0] * 20)
    groups = [f"p{i // 2}" for i in range(40)]
    assert knn_auc(features, targets, groups) == 1.0
    shuffled = rng.permutation(targets)
    assert knn_auc(features, shuffled, groups) < 0.8
    with pytest.raises(ValueError, match="both classes"):
        knn_auc(features, np.ones(40), groups)
    with pytest.raises(ValueError, match="two patients"):
        knn_auc(features, targets, ["one"] * 40)
