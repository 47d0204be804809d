"""Decoded images ready for the network, from a manifest or from a cache.

Pretraining and feature extraction read pixels through an ``ImageSet`` and never
decode inside their loops. Given a manifest, the images are decoded once, on all
cores, into memory; given a cache folder (``cxrssl cache``), the pixels are
memory-mapped and read as they are needed, so a data set larger than memory works.
A cache made at another size than the one asked for is resized per batch on the
fly (bilinear with antialiasing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrssl.data.cache import open_cache
from cxrssl.data.imageset import ImageSet
from cxrssl.data.io import load_square_images
from cxrssl.data.manifest import Manifest, read_manifest
from cxrssl.errors import CxrsslError
from cxrssl.hardware import available_memory_bytes


def open_data(data: str | Path | Manifest | ImageSet) -> Manifest | ImageSet:
    """A manifest file as a Manifest, a cache folder as a memory-mapped ImageSet; nothing decoded.

    Callers open their data once, choose rows from ``manifest_of(opened)``, then pass
    the opened data itself to ``open_image_set``, so no manifest is read and validated twice.
    """
    if isinstance(data, (Manifest, ImageSet)):
        return data
    if Path(data).is_dir():
        return open_cache(data)
    return read_manifest(data)


def manifest_of(opened: Manifest | ImageSet) -> Manifest:
    """The rows of opened data: the manifest itself, or the cache's manifest."""
    return opened.manifest if isinstance(opened, ImageSet) else opened


def open_image_set(data: str | Path | Manifest | ImageSet, size: int, progress: bool = True, rows: Sequence[int] | None = None) -> ImageSet:
    """Pixels of the readable images of a manifest (file or object) or a cache (folder or opened).

    ``rows`` (indices into ``manifest_of(open_data(data))``) picks images before
    anything is decoded, so pretraining on 1 % of a large manifest decodes only that 1 %.
    """
    opened = open_data(data)
    if isinstance(opened, ImageSet):
        images = opened if opened.size == size else replace(opened, size=size)
        return images if rows is None else images.select(rows)
    return decode_manifest(opened if rows is None else opened.select(list(rows)), size, progress)


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
        f"{manifest.path or manifest.root}: decoding its {len(manifest)} images at {size} px needs {needed / 2**30:.1f} GiB{per_process}, "
        f"more than {MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available; write a memory-mapped cache once with "
        f"`cxrssl cache {manifest.path or 'MANIFEST'} -o CACHE --size {size}` and pass the CACHE folder instead"
    )
