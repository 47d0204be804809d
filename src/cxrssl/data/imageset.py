"""``ImageSet``: decoded pixels ready for the network, and the manifest rows they belong to.

An ImageSet is made by decoding a manifest (:func:`cxrssl.data.images.decode_manifest`)
or by opening a pixel cache (:func:`cxrssl.data.cache.open_cache`); both modules build
on this one, which depends on neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from cxrssl.data.manifest import Manifest


@dataclass
class ImageSet:
    manifest: Manifest  # one row per image, in the order of `rows`
    pixels: np.ndarray  # (M, S, S) uint8, in memory or memory-mapped; M >= len(rows)
    rows: np.ndarray  # which rows of `pixels` this set holds
    size: int  # the side length batches come out at
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    origin: str = "files"  # "files" or "cache <folder>", for messages

    def __len__(self) -> int:
        return len(self.rows)

    @cached_property
    def digest(self) -> str:
        """The images' decoded pixels and paths, in order: any change gives another digest.

        Computed once per set (a sweep keys the features of every checkpoint with it);
        ``select`` makes a new set with its own.
        """
        digest = hashlib.blake2b(digest_size=20)
        for row in self.manifest.rows:
            digest.update(row.path.encode() + b"\0")
        for start in range(0, len(self), 256):
            digest.update(self.pixels[self.rows[start : start + 256]].tobytes())
        digest.update(f"|{self.size}".encode())
        return digest.hexdigest()

    def select(self, indices) -> ImageSet:
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.manifest.select(indices.tolist()), self.pixels, self.rows[indices], self.size, self.unreadable, self.origin)

    def batch(self, indices) -> torch.Tensor:
        """(B, size, size) uint8 pixels of the images at ``indices`` (positions in this set)."""
        pixels = torch.from_numpy(np.ascontiguousarray(self.pixels[self.rows[np.asarray(indices, dtype=np.int64)]]))
        return pixels if pixels.shape[-1] == self.size else resize_batch(pixels, self.size)


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """A cache made at another size, resized per batch (bilinear with antialiasing)."""
    resized = F.interpolate(pixels.unsqueeze(1).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).squeeze(1)
