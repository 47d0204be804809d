"""The one place where random seeds are set.

Training draws its randomness from generators derived from (seed, epoch, rank), see
`derived_generator`, so a resumed run replays exactly the same augmentations and
batch order as an uninterrupted one without having to save RNG state.
"""

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, *parts: int) -> int:
    """A seed for one sub-stream (e.g. one epoch on one rank), stable across runs."""
    sequence = np.random.SeedSequence([seed, *parts])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] % 2**63)


def derived_generator(seed: int, *parts: int, device: str | torch.device = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derived_seed(seed, *parts))
    return generator
