"""Atomic file writes: a reader sees the old file or the whole new one, never half."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path``.

    The temporary file sits in the same folder so that ``os.replace`` is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as tmp_file:
            os.fsync(tmp_file.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except OSError as error:
        tmp_path.unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:  # a write's error names no file: name the one being written
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except Exception as error:  # a writer library's own error (safetensors, matplotlib, numpy) for a full disk
        tmp_path.unlink(missing_ok=True)
        disk = disk_error(error, path) or _out_of_room(tmp_path.parent, path)
        if disk is not None:
            raise disk from error
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


# Phrases of the operating system's messages for a full disk or a file-size limit, as
# libraries that do not raise OSError (safetensors' Rust writer, for one) pass them on.
DISK_MESSAGES = {"no space left": errno.ENOSPC, "quota exceeded": errno.EDQUOT, "file too large": errno.EFBIG, "input/output error": errno.EIO}


def _out_of_room(folder: Path, path) -> OSError | None:
    """ENOSPC or EFBIG when the folder's disk is (nearly) full or a file-size limit is in force:
    what a library's bare error (torch.save's "unexpected pos") most likely meant."""
    import resource

    try:
        usage = os.statvfs(folder)
        if usage.f_bavail * usage.f_frsize < 2**20:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
    except (OSError, ValueError):
        return None
    return None


def disk_error(error: BaseException, path) -> OSError | None:
    """The OSError (with its errno, naming ``path``) that a library's error for a full disk stands for, or None."""
    text = str(error).lower()
    for phrase, number in DISK_MESSAGES.items():
        if phrase in text:
            return OSError(number, os.strerror(number), str(path))
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, payload) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_image(image, destination: str | os.PathLike, **options) -> Path:
    """``PIL.Image.save`` to exactly ``destination`` through a temporary file (the format from its suffix):
    a full disk leaves no half image, and its error names the file."""
    destination = Path(destination)
    kind = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(destination.suffix.lower())

    def write(tmp: Path) -> None:
        try:
            image.save(tmp, format=kind, **options)
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), str(destination)) from error

    return atomic_write(destination, write)


def atomic_save_npz(destination: str | os.PathLike, **arrays) -> Path:
    """``np.savez`` to exactly ``path`` (through a file object: savez would append '.npz' to a name)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: np.asarray(values) for name, values in arrays.items()})

    return atomic_write(destination, write)


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` so it is shown as text.

    Numbers (and text that reads as a number, such as ``-0.5``) are left as they are.
    """
    if not isinstance(cell, str) or not cell.startswith(FORMULA_PREFIXES):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell


def csv_text(header: Sequence[str] | None, rows: Iterable[Sequence], *, for_spreadsheets: bool = True) -> str:
    """The one CSV writer of cxrssl: ``header`` (if any) then ``rows``, ``\n`` line ends.

    ``for_spreadsheets`` (reports, tables, predictions) neutralises formula cells; data
    files that cxrssl reads back (manifests, skip lists) pass False so that a path is
    written exactly as it is.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    clean = spreadsheet_safe if for_spreadsheets else (lambda cell: cell)
    if header is not None:
        writer.writerow([clean(cell) for cell in header])
    for row in rows:
        writer.writerow([clean(cell) for cell in row])
    return buffer.getvalue()


def csv_dict_text(fieldnames: Sequence[str], rows: Iterable[dict], *, for_spreadsheets: bool = True) -> str:
    """:func:`csv_text` for rows given as dicts (missing keys are empty, extra keys ignored)."""
    return csv_text(fieldnames, ([row.get(name, "") for name in fieldnames] for row in rows), for_spreadsheets=for_spreadsheets)
