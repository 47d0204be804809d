"""A decoded-pixel cache: every image of a manifest, decoded once, in one uint8 array.

Layout of a cache folder (``cxrssl cache manifest.csv -o DIR --size 256``)::

    DIR/pixels.u8       (N, S, S) uint8, C order, no header: np.memmap reads it
    DIR/manifest.csv    the N readable rows, in the array's order (so a cache is also a manifest)
    DIR/unreadable.csv  path, reason of every image that could not be decoded (if any)
    DIR/cache.json      the completion record: format, size, count, the manifest it was
                        built from (path and digest) and the digests of the two files above

Building: the pixels file is allocated in full before anything is decoded
(``os.posix_fallocate``, else zeros written), so a disk too small is a one-line error
at the start, not a SIGBUS from the memory map an hour in. ``cache.json`` is written
last, after the pixels are complete and renamed into place: a folder without it (a
build killed or failing halfway) is never read as a cache, and rerunning the same
``cxrssl cache`` command completes it. A cache whose files no longer match their
digests is rebuilt in place by that same command.

Opening checks, before a pixel is read: ``cache.json`` is an object of the right
types (anything else is one line, never a traceback); size and count agree with the
pixels file's real size; ``manifest.csv`` has ``count`` rows; the digests match.

What the digests cover, and why: ``manifest.csv`` is digested in full (it is small:
~10 MB for 100,000 rows). ``pixels.u8`` is digested in full up to
``FULL_DIGEST_BYTES`` (256 MiB, about 0.25 s at the 1.1 GB/s of SHA-256 measured on
the development machine), above that by its size plus ``SAMPLED_BLOCKS`` blocks of
``BLOCK_BYTES`` spread evenly over the file, first and last included (16 MiB read
whatever the size: 15 ms for a 512 MiB file, against 0.48 s in full). A full digest
of a 256 px cache of NIH ChestX-ray14 (112,120 images, 7.3 GiB) would read 7 GiB at
every open: 7 s from memory, tens of seconds from most disks. Measured: the 64 px
cache of the shared pool (5,573 images, 22.8 MB of pixels, 0.6 MB manifest) is
digested in full in 18-50 ms, its whole ``open_cache`` 35-55 ms. Sampling catches a
truncated, extended or replaced pixels file and damage inside a sampled block; a few
bytes changed elsewhere in a large cache are not caught. Pixels are the same as
decoding the files at size S (``io.square_resize``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrssl.data.imageset import ImageSet
from cxrssl.data.io import decode_into, read_unreadable_list, write_unreadable_list
from cxrssl.data.manifest import Manifest, read_manifest, write_manifest
from cxrssl.errors import CxrsslError, ManifestError
from cxrssl.fileio import atomic_write_json
from cxrssl.outputs import FOLDER_LOCK, FOLDER_RECORD

FORMAT = "cxrssl-cache/2"
PIXELS, MANIFEST, UNREADABLE, INFO = "pixels.u8", "manifest.csv", "unreadable.csv", "cache.json"
PARTIAL = PIXELS + ".partial"
FULL_DIGEST_BYTES = 256 * 2**20
SAMPLED_BLOCKS, BLOCK_BYTES = 64, 256 * 2**10
_ZEROS_BLOCK = 16 * 2**20  # bytes written at a time where the file system cannot allocate
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class CacheSummary:
    folder: Path
    images: int
    unreadable: list[tuple[str, str]]
    size: int
    seconds: float
    reused: bool = False
    rebuilt: str = ""  # why a damaged cache in the folder was rebuilt in place, if one was


@dataclass(frozen=True)
class CacheInfo:
    """``cache.json``, checked: see :func:`read_info`."""

    size: int
    count: int
    manifest: str  # the manifest the cache was built from, for messages
    manifest_sha256: str  # its ``manifest_digest``: reuse only for the same manifest
    digests: dict[str, str]  # MANIFEST and PIXELS -> ``file_digest``


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


def file_digest(path: Path) -> str:
    """SHA-256 of the file in full up to FULL_DIGEST_BYTES, else of its size and sampled blocks (module docstring)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{size}|".encode())
    with open(path, "rb") as handle:
        if size <= FULL_DIGEST_BYTES:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            for offset in np.linspace(0, size - BLOCK_BYTES, SAMPLED_BLOCKS).astype(np.int64).tolist():
                handle.seek(offset)
                digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()


def _rebuild_advice(folder: Path, info: CacheInfo | None = None) -> str:
    command = f"cxrssl cache {info.manifest} -o {folder} --size {info.size}" if info else f"cxrssl cache MANIFEST -o {folder} --size SIZE"
    return f"rebuild the cache: `{command}` rebuilds it in place, or give another -o folder for a new one"


def read_info(folder: Path) -> CacheInfo:
    """``cache.json`` of ``folder``, checked for types and against the pixels file's real size."""
    path = folder / INFO
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ManifestError(f"{path}: is damaged, not JSON ({type(error).__name__}); {_rebuild_advice(folder)}") from None
    if not isinstance(info, dict):
        raise ManifestError(f"{path}: is damaged (a JSON {type(info).__name__}, not an object); {_rebuild_advice(folder)}")
    if info.get("format") != FORMAT:
        raise ManifestError(
            f"{path}: format {str(info.get('format'))[:40]!r} is not {FORMAT} (another version of cxrssl made it); {_rebuild_advice(folder)}"
        )
    size, count, digests = info.get("size"), info.get("count"), info.get("digests")
    texts = (info.get("manifest"), info.get("manifest_sha256"))
    if not (
        _positive_int(size)
        and _positive_int(count)
        and info.get("dtype") == "uint8"
        and all(isinstance(t, str) for t in texts)
        and isinstance(digests, dict)
        and all(isinstance(digests.get(name), str) and _HEX64.fullmatch(digests[name]) for name in (MANIFEST, PIXELS))
    ):
        raise ManifestError(f"{path}: is damaged (size, count, dtype, manifest or digests missing or of the wrong type); {_rebuild_advice(folder)}")
    checked = CacheInfo(size, count, texts[0], texts[1], {name: digests[name] for name in (MANIFEST, PIXELS)})
    pixels = folder / PIXELS
    actual = pixels.stat().st_size if pixels.is_file() else None
    if actual != count * size * size:  # size and count size the memory map: they must describe this very file
        found = "is missing" if actual is None else f"holds {actual} bytes"
        raise ManifestError(
            f"{pixels}: {found}, but {INFO} says {count} images of {size}x{size} = {count * size * size} bytes; {_rebuild_advice(folder, checked)}"
        )
    return checked


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def verify_content(folder: Path, info: CacheInfo) -> None:
    """Refuse a cache whose manifest.csv or pixels.u8 changed after it was built (one line naming the file)."""
    for name in (MANIFEST, PIXELS):
        path = folder / name
        if not path.is_file() or file_digest(path) != info.digests[name]:
            raise ManifestError(
                f"{path}: {'is missing' if not path.is_file() else 'was changed after the cache was built'} (its digest in {INFO} differs); {_rebuild_advice(folder, info)}"
            )


def _leftover(name: str) -> bool:
    """A file a cache build writes: the cache's own, the temporary files of a build killed
    halfway, or the output record and lock the ``cache`` verb keeps in its folder (:mod:`cxrssl.outputs`)."""
    ours = (PIXELS, PARTIAL, MANIFEST, UNREADABLE, INFO)
    return name in (*ours, FOLDER_RECORD, FOLDER_LOCK) or any(name.startswith(f".{own}.") and name.endswith(".tmp") for own in ours)


def reuse_cache(manifest: Manifest, folder: str | Path, size: int) -> CacheSummary | None:
    """The complete, intact cache of ``manifest`` at ``size`` in ``folder``, or None when there is none to reuse.

    A cache there of another manifest or size is refused (it is never replaced); a damaged
    one is None (``build_cache`` rebuilds it). Cheap: nothing is decoded.
    """
    return _existing(Path(folder), manifest_digest(manifest), size)[0]


def _existing(folder: Path, digest: str, size: int) -> tuple[CacheSummary | None, str]:
    """(the reusable cache, or None; why the cache there is damaged, or "")."""
    started = time.perf_counter()
    if not is_cache(folder):
        return None, ""
    try:
        info = read_info(folder)
    except ManifestError as error:
        return None, str(error)
    if info.manifest_sha256 != digest or info.size != size:
        raise ManifestError(f"{folder}: already holds a cache of another manifest or size; choose another -o folder or delete it")
    try:
        verify_content(folder, info)
        unreadable = read_unreadable_list(folder / UNREADABLE)
    except ManifestError as error:
        return None, str(error)
    return CacheSummary(folder, info.count, unreadable, size, time.perf_counter() - started, reused=True), ""


def build_cache(manifest: Manifest, folder: str | Path, size: int, workers: int | None = None, progress: bool = True) -> CacheSummary:
    """Decode every image of ``manifest`` once into ``folder`` (see the module docstring); an
    intact cache of the same manifest and size there is reused, a damaged one rebuilt."""
    folder = Path(folder)
    if not _positive_int(size):
        raise CxrsslError(f"cache --size {size!r}: give the side length in pixels, a whole number >= 1 (e.g. 256)")
    started = time.perf_counter()
    digest = manifest_digest(manifest)
    reusable, rebuilt = _existing(folder, digest, size)
    if reusable is not None:
        return reusable
    # A damaged cache is rebuilt in place (only its own files are written; a file of the user's beside them stays).
    if folder.is_dir() and not rebuilt and not all(_leftover(p.name) for p in folder.iterdir()):
        raise ManifestError(f"{folder}: is not empty and is not a cxrssl cache; choose a new or empty -o folder (nothing there was changed)")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (INFO, PIXELS, UNREADABLE):  # of a damaged or interrupted cache: the folder is incomplete from here on
        (folder / name).unlink(missing_ok=True)
    partial = folder / PARTIAL
    _allocate(partial, max(len(manifest), 1) * size * size, f"{len(manifest)} images at {size} px")
    pixels = np.memmap(partial, dtype=np.uint8, mode="r+", shape=(max(len(manifest), 1), size, size))
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
    record = {"format": FORMAT, "size": size, "count": len(kept), "dtype": "uint8", "manifest": manifest.name, "manifest_sha256": digest}
    record["digests"] = {name: file_digest(folder / name) for name in (MANIFEST, PIXELS)}
    atomic_write_json(folder / INFO, record)  # last: the cache is complete from here on
    return CacheSummary(folder, len(kept), unreadable, size, time.perf_counter() - started, rebuilt=rebuilt)


def _allocate(path: Path, nbytes: int, what: str) -> None:
    """Create ``path`` with ``nbytes`` really allocated on disk, or fail now with one line."""
    with open(path, "wb") as handle:
        try:
            fallocate = getattr(os, "posix_fallocate", None)
            try:
                if fallocate is None:
                    raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
                fallocate(handle.fileno(), 0, nbytes)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                _write_zeros(handle, nbytes)  # a file system that cannot allocate: write the space instead
        except OSError as error:
            handle.close()
            path.unlink(missing_ok=True)
            raise ManifestError(
                f"{path}: cannot allocate {nbytes / 2**30:.2f} GiB for {what} ({error.strerror or error}); free disk space or choose another -o folder"
            ) from None


def _write_zeros(handle, nbytes: int) -> None:
    zeros = bytes(min(nbytes, _ZEROS_BLOCK))
    left = nbytes
    while left > 0:
        handle.write(zeros[: min(left, len(zeros))])
        left -= min(left, len(zeros))
    handle.flush()
    os.fsync(handle.fileno())


def open_cache(folder: str | Path) -> ImageSet:
    """The cache as an ImageSet (memory-mapped), batches at the cache's size (``open_image_set`` picks another)."""
    folder = Path(folder)
    if folder.is_dir() and not is_cache(folder):
        raise ManifestError(
            f"{folder}: is a folder but not a complete cxrssl cache (no {INFO}); pass a manifest CSV, or build a cache with `cxrssl cache MANIFEST -o {folder}`"
        )
    if not is_cache(folder):
        raise ManifestError(f"{folder}: not a complete cxrssl cache (no {INFO}); build it with `cxrssl cache MANIFEST -o {folder}`")
    info = read_info(folder)
    verify_content(folder, info)
    manifest = read_manifest(folder / MANIFEST, check_files=False)  # the pixels are here even if the files moved
    if len(manifest) != info.count:
        raise ManifestError(f"{folder / MANIFEST}: has {len(manifest)} rows, but {INFO} says {info.count} images; {_rebuild_advice(folder, info)}")
    pixels = np.memmap(folder / PIXELS, dtype=np.uint8, mode="r", shape=(info.count, info.size, info.size))
    rows = np.arange(info.count, dtype=np.int64)
    return ImageSet(manifest, pixels, rows, info.size, read_unreadable_list(folder / UNREADABLE), f"cache {folder}")
