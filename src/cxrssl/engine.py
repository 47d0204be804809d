"""The training step of every pretraining method and what feeds it, shared by ``cxrssl.train`` and the benchmarks.

Each piece is written so that a GPU is never left waiting on the host:

- ``BatchFeeder`` reads the next uint8 batch (from memory or a memory-mapped cache)
  in a background thread and copies it to the device from pinned memory while the
  current batch trains;
- ``make_views`` augments a batch twice (plus any small crops) on its own device, view 2
  from the partner films when positives pair films (``paired_loader``); ``training_step`` does one
  optimisation step, returning the loss as a tensor (reading it would wait for the GPU);
- ``LossTracker`` sums the losses and notes the first step whose loss was not finite
  on the device; the loop reads it every few steps rather than after every step;
- ``prepare_device`` and ``make_optimizer`` choose cuDNN autotuning, TF32 and fused
  Adam on a GPU.

The benchmarks import these rather than copying them, so what they time is what
``cxrssl pretrain`` runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from cxrssl.ssl.augment import BatchAugment

# How often the loop reads the loss back on a GPU. Reading it makes the host wait
# for every queued kernel, after which the GPU idles while the host prepares the
# next step. A divergence found late loses nothing: the resumable state is written
# only at the end of an epoch.
GPU_SYNC_EVERY = 16


def prepare_device(device: torch.device) -> None:
    """Let cuDNN time its algorithms (every step has the same shapes: the last, short
    batch is dropped) and let float32 matmuls use TF32, as bf16 autocast already
    trades that precision in the convolutions."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def sync_interval(device: torch.device) -> int:
    """Steps between reads of the loss: on a CPU a read costs nothing, so every step."""
    return GPU_SYNC_EVERY if device.type == "cuda" else 1


class BatchFeeder:
    """The batches of one epoch, on ``device``, the next one read while the current one trains.

    ``load(indices)`` returns (B, S, S) uint8 pixels on the CPU (``ImageSet.batch``).
    The batches are ``order`` cut into runs of ``batch_size``; a last, shorter run is
    dropped, as the sampler already dropped what did not divide among processes.
    """

    def __init__(
        self,
        load: Callable[[Sequence[int]], torch.Tensor],
        order: Sequence[int],
        batch_size: int,
        device: torch.device,
        prefetch: bool | None = None,
    ):
        self.load = load
        self.order = torch.as_tensor(order, dtype=torch.int64)
        self.batch_size = batch_size
        self.device = device
        # On a CPU every core is busy with the step, and reading a batch from memory or
        # the cache takes well under 1 % of it (bench/cache_vs_files.py), so a reader
        # thread would only compete with the step for the cores.
        self.prefetch = device.type == "cuda" if prefetch is None else prefetch

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def _read(self, step: int) -> torch.Tensor:
        pixels = self.load(self.order[step * self.batch_size : (step + 1) * self.batch_size].numpy())
        if self.device.type == "cuda":
            # From pinned memory the copy is asynchronous and overlaps the running step.
            return pixels.pin_memory().to(self.device, non_blocking=True)
        return pixels.to(self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if not self.prefetch:
            for step in range(len(self)):
                yield self._read(step)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrssl-batches") as reader:
            upcoming = reader.submit(self._read, 0) if len(self) else None
            for step in range(len(self)):
                batch = upcoming.result()
                if step + 1 < len(self):
                    upcoming = reader.submit(self._read, step + 1)
                yield batch


def paired_loader(load: Callable[[Sequence[int]], torch.Tensor], partners: np.ndarray) -> Callable[[Sequence[int]], torch.Tensor]:
    """``load`` for positives from other films: (2, B, S, S) pixels, the films and then their partners (``partners[i]``)."""

    def load_pairs(indices: Sequence[int]) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        return torch.stack([load(indices), load(partners[indices])])

    return load_pairs


def make_views(
    augment: BatchAugment,
    pixels: torch.Tensor,
    generator: torch.Generator,
    channels_last: bool,
    paired: bool = False,
    small: BatchAugment | None = None,
    small_crops: int = 0,
) -> tuple[torch.Tensor, ...]:
    """The views of one step, on the batch's device: two full-size ones, then ``small_crops`` small ones.

    ``paired``: ``pixels`` are (2, B, S, S) from :func:`paired_loader`, and view 2 is
    drawn from the partner films. Small crops come from the films themselves. With
    neither, the random draws are those of two plain views, so old runs resume exactly.
    """
    films, partners = (pixels[0], pixels[1]) if paired else (pixels, pixels)
    views = [augment(films, generator), augment(partners, generator)]
    views += [small(films, generator) for _ in range(small_crops)] if small_crops else []
    if channels_last:
        views = [view.contiguous(memory_format=torch.channels_last) for view in views]
    return tuple(views)


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    views: tuple[torch.Tensor, ...],
    autocast: AbstractContextManager | None = None,
) -> torch.Tensor:
    """One optimisation step of the method on its views (two, plus any small crops); the loss, detached and not read back."""
    with autocast or nullcontext():
        loss = model(*views)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def make_optimizer(parameters, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    # On a GPU the fused Adam updates every parameter in one kernel, not one per tensor.
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda" or None)


def scheduled_lr(base: float, step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """Learning rate at optimiser step ``step`` (from 0) of ``total_steps``.

    A linear warm-up over the first ``warmup_steps`` steps, then either the base rate
    (``constant``) or a half cosine from the base rate to 0 at ``total_steps``
    (``cosine``, Loshchilov & Hutter 2017, as SimCLR and BYOL use). A function of the
    step alone, so a resumed run continues the same curve.
    """
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class LossTracker:
    """An epoch's loss sum and its first non-finite step, kept on the device until read."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.first_bad_loss = torch.zeros((), device=device)
        self.last = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.total += loss.double()
        newly_bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(newly_bad, step, self.first_bad_step)
        self.first_bad_loss = torch.where(newly_bad, loss.float(), self.first_bad_loss)
        self.last = loss

    def diverged_at(self) -> tuple[int, float] | None:
        """(step from 0, loss) of the first NaN or infinite loss, or None; waits for the device."""
        step = int(self.first_bad_step)
        return None if step < 0 else (step, float(self.first_bad_loss))
