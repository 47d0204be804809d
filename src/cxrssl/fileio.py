"""Atomic file writes: a reader sees the old file or the whole new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


def refuse_overwriting_inputs(outputs, inputs) -> None:
    """Stop, before any work, when an output file would replace one of the command's own inputs.

    Paths are compared resolved (links and ``..`` followed); a folder input (a cache)
    counts as everything inside it.
    """
    from cxrssl.errors import CxrsslError

    resolved_inputs = [Path(i).resolve() for i in inputs if i]
    for output in outputs:
        target = Path(output).resolve()
        for source in resolved_inputs:
            if target == source or (source.is_dir() and source in target.parents):
                raise CxrsslError(f"{output}: would overwrite the input {source}; choose another output name (-o)")


def check_outputs(outputs, inputs) -> None:
    """Before any work: no output may replace an input, and every output's folder must be writable.

    A read-only or full location is then found in a second, not after an hour of work.
    """
    refuse_overwriting_inputs(outputs, inputs)
    for folder in sorted({Path(output).resolve().parent for output in outputs}):
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".cxrssl-write-check.", suffix=".tmp", dir=folder)
        os.close(handle)
        os.unlink(probe)


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
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, payload) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_npz(destination: str | os.PathLike, **arrays) -> Path:
    """``np.savez`` to exactly ``path`` (through a file object: savez would append '.npz' to a name)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: np.asarray(values) for name, values in arrays.items()})

    return atomic_write(destination, write)
