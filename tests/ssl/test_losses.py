import math

import pytest
import torch

from cxrssl.ssl.losses import multi_view_nt_xent_loss, nt_xent_loss


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Slow, literal NT-Xent: a Python loop over the 2B anchors (SimCLR's Eq. 1)."""
    views = torch.cat([z1, z2]).double()
    n = views.shape[0]
    batch = n // 2

    def sim(a, b):
        return torch.dot(a, b) / (a.norm() * b.norm())

    total = 0.0
    for i in range(n):
        j = (i + batch) % n
        numerator = torch.exp(sim(views[i], views[j]) / temperature)
        denominator = sum(torch.exp(sim(views[i], views[k]) / temperature) for k in range(n) if k != i)
        total = total - torch.log(numerator / denominator)
    return total / n


@pytest.mark.parametrize("batch", [2, 3, 8, 17])
@pytest.mark.parametrize("dim", [1, 4, 128])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0, 2.0])
def test_matches_reference_value_and_gradient(batch, dim, temperature):
    generator = torch.Generator().manual_seed(batch * 1000 + dim + int(temperature * 100))
    z1 = torch.randn(batch, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(batch, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    fast = nt_xent_loss(z1, z2, temperature)
    fast_grads = torch.autograd.grad(fast, (z1, z2))
    slow = reference_nt_xent(z1, z2, temperature)
    slow_grads = torch.autograd.grad(slow, (z1, z2))
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    for got, want in zip(fast_grads, slow_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_float32_and_bfloat16_inputs_are_computed_in_float32():
    z1, z2 = torch.randn(8, 32, dtype=torch.float64), torch.randn(8, 32, dtype=torch.float64)
    exact = reference_nt_xent(z1, z2, 0.5).item()
    assert nt_xent_loss(z1.float(), z2.float()).dtype == torch.float32
    assert nt_xent_loss(z1.float(), z2.float()).item() == pytest.approx(exact, rel=1e-5)
    assert nt_xent_loss(z1.bfloat16(), z2.bfloat16()).item() == pytest.approx(exact, rel=2e-2)


def test_perfect_alignment_reaches_the_bound():
    # Orthogonal images, identical views: each anchor's positive has similarity 1 and
    # its 2B-2 negatives similarity 0.
    batch, temperature = 4, 0.5
    z = torch.eye(batch)
    loss = nt_xent_loss(z, z.clone(), temperature)
    e = math.exp(1 / temperature)
    expected = -math.log(e / (e + (2 * batch - 2)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_scale_invariant_and_symmetric():
    z1, z2 = torch.randn(6, 16), torch.randn(6, 16)
    loss = nt_xent_loss(z1, z2)
    assert nt_xent_loss(3 * z1, 0.2 * z2).item() == pytest.approx(loss.item(), rel=1e-5)
    assert nt_xent_loss(z2, z1).item() == pytest.approx(loss.item(), rel=1e-5)


def test_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(4, 8), torch.randn(4, 8), temperature=0)


def reference_info_nce(z1, z2, bank, temperature):
    """Literal InfoNCE with a memory bank: per anchor, its positive against the bank only."""
    total = 0.0
    for k in range(len(z1)):
        anchor = z1[k] / z1[k].norm()
        positive = torch.exp(torch.dot(anchor, z2[k] / z2[k].norm()) / temperature)
        negatives = sum(torch.exp(torch.dot(anchor, row / row.norm()) / temperature) for row in bank)
        total = total - torch.log(positive / (positive + negatives))
    return total / len(z1)


@pytest.mark.parametrize("batch,bank_size,dim", [(1, 1, 3), (4, 7, 16), (9, 32, 128)])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_memory_bank_form_matches_a_loop_value_and_gradient(batch, bank_size, dim, temperature):
    generator = torch.Generator().manual_seed(batch * 100 + bank_size)
    z1, z2, bank = (torch.randn(n, dim, generator=generator, dtype=torch.float64, requires_grad=True) for n in (batch, batch, bank_size))
    fast = nt_xent_loss(z1, z2, temperature, negatives=bank)
    slow = reference_info_nce(z1, z2, bank, temperature)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-10)
    for got, want in zip(torch.autograd.grad(fast, (z1, z2, bank)), torch.autograd.grad(slow, (z1, z2, bank))):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_memory_bank_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match="negatives must be"):
        nt_xent_loss(torch.randn(2, 4), torch.randn(2, 4), negatives=torch.randn(5, 3))


def test_byol_loss_matches_a_loop_and_sends_no_gradient_to_the_target():
    from cxrssl.ssl.losses import byol_loss

    generator = torch.Generator().manual_seed(3)
    p = torch.randn(6, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 10, generator=generator, dtype=torch.float64, requires_grad=True)
    slow = sum(((p[k] / p[k].norm() - z[k] / z[k].norm()) ** 2).sum() for k in range(6)) / 6
    fast = byol_loss(p, z)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-12)
    torch.testing.assert_close(torch.autograd.grad(fast, p)[0], torch.autograd.grad(slow, p, retain_graph=True)[0])
    fast2 = byol_loss(p, z)
    assert torch.autograd.grad(fast2, z, allow_unused=True)[0] is None
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-12)  # same direction: no loss


def reference_multi_view(views, temperature):
    """Every view an anchor, the other views of its image its positives: a double loop over the V*B views."""
    normalised = [torch.nn.functional.normalize(v.double(), dim=1) for v in views]
    flat = [(v, b) for v in range(len(views)) for b in range(views[0].shape[0])]
    total = 0.0
    for v, b in flat:
        others = [(w, c) for w, c in flat if (w, c) != (v, b)]
        denominator = sum(torch.exp(normalised[v][b] @ normalised[w][c] / temperature) for w, c in others)
        positives = [(w, c) for w, c in others if c == b]
        total = total - sum(torch.log(torch.exp(normalised[v][b] @ normalised[w][c] / temperature) / denominator) for w, c in positives) / len(
            positives
        )
    return total / len(flat)


@pytest.mark.parametrize("count", [3, 4, 6])
def test_multi_view_loss_matches_a_loop_value_and_gradient(count):
    generator = torch.Generator().manual_seed(count)
    views = [torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(count)]
    loss = multi_view_nt_xent_loss(views, 0.3)
    expected = reference_multi_view(views, 0.3)
    assert float(loss) == pytest.approx(float(expected), rel=1e-10)
    grads = torch.autograd.grad(loss, views)
    expected_grads = torch.autograd.grad(expected, views)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_multi_view_loss_of_two_views_is_nt_xent_and_bad_shapes_are_refused():
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    assert float(multi_view_nt_xent_loss([z1, z2], 0.5)) == float(nt_xent_loss(z1, z2, 0.5))
    assert float(reference_multi_view([z1, z2], 0.5)) == pytest.approx(float(reference_nt_xent(z1.double(), z2.double(), 0.5)), rel=1e-9)
    with pytest.raises(ValueError, match="at least two"):
        multi_view_nt_xent_loss([z1], 0.5)
    with pytest.raises(ValueError, match="equal shape"):
        multi_view_nt_xent_loss([z1, z2, torch.randn(5, 8)], 0.5)
