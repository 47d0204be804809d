"""Decoded images ready for the network, from a manifest or from a cache.

Pretraining and feature extraction read pixels through an ``ImageSet`` and never
decode inside their loops. Given a manifest, the images are decoded once, on all
cores, into memory; given a cache folder (``cxrssl cache``), the pixels are
memory-mapped and read as they are needed, so a data set larger than memory works.
A cache made at another size than the one asked for is resized per batch on the
fly (bilinear with antialiasing).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cxrssl.data.io import load_square_images
from cxrssl.data.manifest import Manifest, read_manifest
from cxrssl.errors import CxrsslError
from cxrssl.hardware import available_memory_bytes


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

    def select(self, indices) -> "ImageSet":
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.manifest.select(indices.tolist()), self.pixels, self.rows[indices], self.size, self.unreadable, self.origin)

    def batch(self, indices) -> torch.Tensor:
        """(B, size, size) uint8 pixels of the images at ``indices`` (positions in this set)."""
        pixels = torch.from_numpy(np.ascontiguousarray(self.pixels[self.rows[np.asarray(indices, dtype=np.int64)]]))
        return pixels if pixels.shape[-1] == self.size else resize_batch(pixels, self.size)


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    resized = F.interpolate(pixels.unsqueeze(1).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).squeeze(1)


def open_source(data: str | Path | Manifest | ImageSet) -> Manifest | ImageSet:
    """A manifest file as a Manifest, a cache folder as a memory-mapped ImageSet; nothing decoded.

    Callers read a source once, choose rows from ``source_rows(source)``, then pass
    the source itself to ``open_image_set``, so no manifest is read and validated twice.
    """
    if isinstance(data, (Manifest, ImageSet)):
        return data
    if Path(data).is_dir():
        from cxrssl.data.cache import open_cache

        return open_cache(data)
    return read_manifest(data)


def source_rows(source: Manifest | ImageSet) -> Manifest:
    """The rows of an opened source: the manifest itself, or the cache's manifest."""
    return source.manifest if isinstance(source, ImageSet) else source


def open_image_set(
    data: str | Path | Manifest | ImageSet, size: int, progress: bool = True, rows: Sequence[int] | None = None
) -> ImageSet:
    """Pixels of the readable images of a manifest (file or object) or a cache (folder or opened).

    ``rows`` (indices into ``source_rows(open_source(data))``) picks images before
    anything is decoded, so pretraining on 1 % of a large manifest decodes only that 1 %.
    """
    source = open_source(data)
    if isinstance(source, ImageSet):
        images = source if source.size == size else replace(source, size=size)
        return images if rows is None else images.select(rows)
    return decode_manifest(source if rows is None else source.select(list(rows)), size, progress)


def decode_manifest(manifest: Manifest, size: int, progress: bool = True) -> ImageSet:
    require_memory_for(manifest, size)
    loaded = load_square_images(manifest.files, size, progress=progress)
    rows = np.arange(len(loaded.kept), dtype=np.int64)
    return ImageSet(manifest.select(loaded.kept), loaded.pixels, rows, size, loaded.unreadable, "files")


# Decoded pixels may take this share of the memory still available; the rest is left
# for the model, its activations and everything else on the machine.
MEMORY_SHARE = 0.8


def require_memory_for(manifest: Manifest, size: int) -> None:
    """Refuse, before decoding for minutes, a data set that would not fit in memory.

    Under torchrun every process on the machine (LOCAL_WORLD_SIZE) decodes its own
    copy, so they are counted together. A memory-mapped cache has no such limit.
    """
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    needed = len(manifest) * size * size * copies
    available = available_memory_bytes()
    if available is None or needed <= MEMORY_SHARE * available:
        return
    per_process = f" (one copy in each of its {copies} processes on this machine)" if copies > 1 else ""
    raise CxrsslError(
        f"{manifest.source or manifest.root}: decoding its {len(manifest)} images at {size} px needs {needed / 2**30:.1f} GiB{per_process}, "
        f"more than {MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available; write a memory-mapped cache once with "
        f"`cxrssl cache {manifest.source or 'MANIFEST'} -o CACHE --size {size}` and pass the CACHE folder instead"
    )
