import math

import numpy as np
import pytest
import torch

from cxrssl.engine import BatchFeeder, LossTracker, make_optimizer, make_views, training_step
from cxrssl.seeding import derived_generator
from cxrssl.ssl.augment import AugmentConfig, BatchAugment
from cxrssl.ssl.methods import SimCLR


def pixel_source(count=23, side=8):
    pixels = np.arange(count * side * side, dtype=np.int64).reshape(count, side, side) % 251
    calls = []

    def load(indices):
        calls.append(list(indices))
        return torch.from_numpy(pixels[np.asarray(indices)].astype(np.uint8))

    return pixels, load, calls


@pytest.mark.parametrize("prefetch", [False, True])
def test_feeder_yields_the_order_cut_into_whole_batches(prefetch):
    pixels, load, calls = pixel_source()
    order = np.random.default_rng(3).permutation(len(pixels))
    feeder = BatchFeeder(load, order, 5, torch.device("cpu"), prefetch=prefetch)
    batches = list(feeder)
    assert len(feeder) == len(batches) == 4  # 23 images: the last 3 are dropped
    for step, batch in enumerate(batches):
        expected = pixels[order[step * 5 : (step + 1) * 5]].astype(np.uint8)
        np.testing.assert_array_equal(batch.numpy(), expected)
    assert len(calls) == 4  # reading ahead never reads past the last whole batch


def test_feeder_reads_ahead_in_another_thread():
    import threading

    readers = set()
    _, load, _ = pixel_source()

    def recording_load(indices):
        readers.add(threading.get_ident())
        return load(indices)

    list(BatchFeeder(recording_load, range(20), 5, torch.device("cpu"), prefetch=True))
    assert readers and threading.get_ident() not in readers


def test_feeder_with_fewer_images_than_a_batch_yields_nothing():
    _, load, calls = pixel_source(count=3)
    assert list(BatchFeeder(load, range(3), 5, torch.device("cpu"), prefetch=True)) == []
    assert calls == []


def test_tracker_sums_losses_and_keeps_the_first_bad_step():
    tracker = LossTracker(torch.device("cpu"))
    losses = [2.5, 1.25, float("nan"), float("inf"), 3.0]
    for step, loss in enumerate(losses[:2]):
        tracker.add(torch.tensor(loss), step)
    assert tracker.diverged_at() is None
    assert float(tracker.total) == 3.75
    for step, loss in enumerate(losses[2:], start=2):
        tracker.add(torch.tensor(loss), step)
    step, loss = tracker.diverged_at()
    assert step == 2 and math.isnan(loss)  # the later inf does not overwrite it
    assert float(tracker.last) == 3.0


def test_training_step_matches_a_hand_written_step():
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (6, 40, 40), dtype=torch.uint8)
    augment = BatchAugment(AugmentConfig(), 32)
    models = [SimCLR("resnet18", 32, 16) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [make_optimizer(model.parameters(), 1e-3, 0.0, torch.device("cpu")) for model in models]

    views = make_views(augment, pixels, derived_generator(0, 1), channels_last=True)
    assert views[0].is_contiguous(memory_format=torch.channels_last)
    loss = training_step(models[0], optimizers[0], views)

    generator = derived_generator(0, 1)
    view1, view2 = augment(pixels, generator), augment(pixels, generator)
    reference = models[1](view1, view2)
    optimizers[1].zero_grad()
    reference.backward()
    optimizers[1].step()

    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference.detach())
    for mine, theirs in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(mine, theirs)


def test_scheduled_lr_warms_up_then_holds_or_decays_on_a_half_cosine():
    from cxrssl.engine import scheduled_lr

    assert [scheduled_lr(1.0, step, 10, "constant", 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert scheduled_lr(2.0, 0, 10, "cosine") == 2.0
    # After a warm-up of 2 of 10 steps, the cosine spans the remaining 8: halfway is step 6.
    assert scheduled_lr(1.0, 6, 10, "cosine", 2) == pytest.approx(0.5)
    assert scheduled_lr(1.0, 10, 10, "cosine", 2) == pytest.approx(0.0)
    assert scheduled_lr(1.0, 1, 10, "cosine", 2) == 1.0  # the last warm-up step reaches the base rate
