"""A decoded-pixel cache: every image of a manifest, decoded once, in one uint8 array.

Layout of a cache folder (``cxrssl cache manifest.csv -o DIR --size 256``)::

    DIR/pixels.u8       (N, S, S) uint8, C order, no header: np.memmap reads it
    DIR/manifest.csv    the N readable rows, in the array's order (so a cache is also a manifest)
    DIR/unreadable.csv  path, reason of every image that could not be decoded (if any)
    DIR/cache.json      format, size, count, and the source manifest's SHA-256

``cache.json`` is written last, after the pixels are complete and renamed into
place: a folder without it is an interrupted build and is never read as a cache.
Pixels are the same as decoding the files at size S (``io.square_resize``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrssl.data.images import ImageSet
from cxrssl.data.io import decode_into, read_unreadable_list, write_unreadable_list
from cxrssl.data.manifest import Manifest, read_manifest, write_manifest
from cxrssl.errors import ManifestError
from cxrssl.fileio import atomic_write_json

FORMAT = "cxrssl-cache/1"
PIXELS, MANIFEST, UNREADABLE, INFO = "pixels.u8", "manifest.csv", "unreadable.csv", "cache.json"


@dataclass
class CacheSummary:
    folder: Path
    images: int
    unreadable: list[tuple[str, str]]
    size: int
    seconds: float
    reused: bool = False


def is_cache(folder: Path) -> bool:
    return (Path(folder) / INFO).is_file()


def manifest_digest(manifest: Manifest) -> str:
    """SHA-256 over the rows and the files' sizes and modification times: a changed image invalidates the cache."""
    digest = hashlib.sha256()
    for row, path in zip(manifest.rows, manifest.files):
        stat = path.stat() if path.exists() else None
        facts = (str(path.resolve()), row.patient_id, row.label, row.split, stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1)
        digest.update(repr(facts).encode())
    return digest.hexdigest()


def build_cache(manifest: Manifest, folder: str | Path, size: int, workers: int | None = None, progress: bool = True) -> CacheSummary:
    """Decode every image of ``manifest`` once into ``folder`` (see the module docstring)."""
    folder = Path(folder)
    started = time.perf_counter()
    source_digest = manifest_digest(manifest)
    if is_cache(folder):
        info = json.loads((folder / INFO).read_text())
        if info.get("source_sha256") == source_digest and info.get("size") == size:
            return CacheSummary(folder, info["count"], read_unreadable_list(folder / UNREADABLE), size, time.perf_counter() - started, reused=True)
        raise ManifestError(f"{folder}: already holds a cache of another manifest or size; choose another -o folder or delete it")
    leftovers = {PIXELS + ".partial", MANIFEST, UNREADABLE}  # of a cache whose build was killed: rebuilt
    if folder.is_dir() and any(p.name not in leftovers for p in folder.iterdir()):
        raise ManifestError(f"{folder}: is not empty and is not a cxrssl cache; choose a new or empty -o folder (nothing there was changed)")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (PIXELS + ".partial")
    pixels = np.memmap(partial, dtype=np.uint8, mode="w+", shape=(max(len(manifest), 1), size, size))
    kept, unreadable = decode_into(pixels, [str(path) for path in manifest.files], workers, progress, desc=f"cache {size}px")
    pixels.flush()
    del pixels
    if not kept:
        partial.unlink()
        raise ManifestError(f"{manifest.name}: none of its {len(manifest)} images could be decoded; nothing to cache")
    os.truncate(partial, len(kept) * size * size)  # drop the rows reserved for unreadable images
    os.replace(partial, folder / PIXELS)
    write_manifest(manifest.select(kept), folder / MANIFEST)
    if unreadable:
        write_unreadable_list(folder / UNREADABLE, unreadable)
    atomic_write_json(
        folder / INFO,
        {"format": FORMAT, "size": size, "count": len(kept), "source": manifest.name, "source_sha256": source_digest, "dtype": "uint8"},
    )
    return CacheSummary(folder, len(kept), unreadable, size, time.perf_counter() - started)


def open_cache(folder: str | Path) -> ImageSet:
    """The cache as an ImageSet (memory-mapped), batches at the cache's size (``open_image_set`` picks another)."""
    folder = Path(folder)
    if folder.is_dir() and not is_cache(folder):
        raise ManifestError(f"{folder}: is a folder but not a complete cxrssl cache (no {INFO}); pass a manifest CSV, or build a cache with `cxrssl cache MANIFEST -o {folder}`")
    if not is_cache(folder):
        raise ManifestError(f"{folder}: not a complete cxrssl cache (no {INFO}); build it with `cxrssl cache MANIFEST -o {folder}`")
    info = json.loads((folder / INFO).read_text())
    if info.get("format") != FORMAT:
        raise ManifestError(f"{folder / INFO}: format {info.get('format')!r} is not {FORMAT}; rebuild the cache with this version")
    side, count = int(info["size"]), int(info["count"])
    expected = count * side * side
    if (folder / PIXELS).stat().st_size != expected:
        raise ManifestError(f"{folder / PIXELS}: holds {(folder / PIXELS).stat().st_size} bytes, expected {expected}; rebuild the cache")
    manifest = read_manifest(folder / MANIFEST, check_files=False)  # the pixels are here even if the files moved
    pixels = np.memmap(folder / PIXELS, dtype=np.uint8, mode="r", shape=(count, side, side))
    rows = np.arange(count, dtype=np.int64)
    return ImageSet(manifest, pixels, rows, side, read_unreadable_list(folder / UNREADABLE), f"cache {folder}")

