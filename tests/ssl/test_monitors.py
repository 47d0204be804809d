import math

import pytest
import torch

from cxrssl.run import LOG_COLUMNS
from cxrssl.ssl.monitors import MONITOR_COLUMNS, alignment, monitor_rows, rankme, uniformity


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
