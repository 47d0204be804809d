"""The output contract every verb follows: what it will write is named before any work.

A verb builds an :class:`Outputs` from the files and folders it will write (siblings
included) and the files and folders it reads, then calls :meth:`Outputs.check` before
it decodes, trains or fits anything. The check refuses, with one line:

- an output that *is* one of the command's inputs, lies inside an input folder and
  already exists (a file the command may read), or is a folder holding an input:
  never replaced, ``--overwrite`` or not;
- an existing file that is not this command's own earlier output, unless
  ``--overwrite`` is given;
- an output location that cannot be written (found in a second, not after an hour).

"Own earlier output" is decided by a provenance record that :meth:`Outputs.writing`
keeps beside the outputs: ``.NAME.cxrssl.json`` beside a file output (one record for a
verb's set of files, named after the first), ``FOLDER/.cxrssl-output.json`` inside a
folder output. The record names the verb, a key of the command's settings, and, once
the result is whole, each file's size and SHA-256. Re-running the very same command
replaces its own output (or resumes it); another command, with other settings, on the
same output is refused unless ``--overwrite`` is given.

While a verb writes, its record says ``complete: false`` and the verb holds a lock
(``.lock`` in a folder output, ``.NAME.lock`` beside a file output), so two writers on
one output are refused. The old result's files are removed before new ones appear, and
readers of results (:func:`require_complete`) refuse files whose record is incomplete
or whose bytes have changed since: a result is seen whole or not at all. Files
without a record (written by hand, or by an older cxrssl) are read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_json

FOLDER_RECORD = ".cxrssl-output.json"
FOLDER_LOCK = ".lock"
FORMAT = "cxrssl-output/1"
HASHED_BYTES = 256 * 2**20  # files up to this size carry a SHA-256; larger ones their size and mtime


class OutputError(CxrsslError):
    """An output would replace an input or a file cxrssl did not write for this command."""


def record_of_file(path: Path) -> Path:
    """The provenance record beside a file output."""
    return path.with_name(f".{path.name}.cxrssl.json")


def is_bookkeeping(path: Path) -> bool:
    """A provenance record's or a lock's name: never an output a user may name."""
    name = Path(path).name
    return name in (FOLDER_RECORD, FOLDER_LOCK) or (name.startswith(".") and (name.endswith(".cxrssl.json") or name.endswith(".lock")))


def lock_of_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def command_key(verb: str, settings: dict) -> str:
    """A digest of what defines a command's result (its verb and settings, paths resolved)."""
    canonical = json.dumps({"verb": verb, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def file_digest(path: Path) -> dict:
    """Size and SHA-256 of a file (size and mtime only above ``HASHED_BYTES``)."""
    stat = path.stat()
    entry = {"size": stat.st_size}
    if stat.st_size <= HASHED_BYTES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        entry["sha256"] = digest.hexdigest()
    else:
        entry["mtime_ns"] = stat.st_mtime_ns
    return entry


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
        return None
    return record


def _unchanged(path: Path, entry) -> bool:
    if not isinstance(entry, dict) or not path.is_file():
        return False
    try:
        now = file_digest(path)
    except OSError:
        return False
    return all(now.get(name) == entry.get(name) for name in ("size", "sha256", "mtime_ns"))


def _writer_of(path: Path, relative: str, folder_record: dict | None) -> str | None:
    """The verb that wrote ``path`` inside a folder output: the folder's record when it lists the
    file, else the file's own record beside it (e.g. `split`'s manifest in `phantom`'s folder)."""
    if folder_record is not None and relative in folder_record.get("files", {}):
        return folder_record.get("verb")
    own = _read_record(record_of_file(path))
    if own is not None and path.name in own.get("files", {}):
        return own.get("verb")
    return folder_record.get("verb") if folder_record is not None else None


class Outputs:
    """What one command writes and reads, checked before it works and recorded as it writes.

    ``files``: file outputs (the first names the record of the set); ``folders``: folders
    the command fills (one record each); ``inputs``: files and folders it reads.
    ``settings``: what defines the result (the key); ``overwrite``: the user's ``--overwrite``.
    """

    def __init__(
        self,
        verb: str,
        settings: dict,
        *,
        files: Iterable = (),
        folders: Iterable = (),
        inputs: Iterable = (),
        overwrite: bool = False,
        keep_finished: str | None = None,
    ):
        self.verb = verb
        self.key = command_key(verb, settings)
        self.files = [Path(f) for f in files if f]
        self.folders = [Path(f) for f in folders if f]
        self.overwrite = overwrite
        # A folder output whose finished result (this file in it) is costly: kept, even for the
        # same command, unless --overwrite is given (a comparison of hours is not redone by accident).
        self.keep_finished = keep_finished
        self._input_files: set[Path] = set()
        self._input_folders: list[Path] = []
        self._missing_input = False
        self._checked = False
        self._held = False
        self._created: list[Path] = []  # folders the check made: removed again if the command leaves them empty
        for item in inputs:
            if not item:
                continue
            if not Path(item).exists():
                self._missing_input = True
            resolved = Path(item).resolve()
            if resolved.is_dir():
                self._input_folders.append(resolved)
            else:
                self._input_files.add(resolved)

    def add_inputs(self, paths: Iterable) -> None:
        """More files the command reads (e.g. the images of a manifest)."""
        self._input_files.update(Path(p).resolve() for p in paths if p)

    # --- the check, before any work -------------------------------------------------

    def check(self) -> Outputs:
        """Refuse, before any work, what must not be written. An output that is an input is refused
        at once; while an input is missing, its reader's error comes before the other refusals,
        which then run when writing begins."""
        inputs_only = self._missing_input and not self._checked
        self._missing_input = False
        self._checked = not inputs_only
        for folder in self.folders:
            self._check_not_input(folder) if inputs_only else self._check_folder(folder)
        if self.files:
            record = _read_record(record_of_file(self.files[0]))
            for path in self.files:
                self._check_file(path, record, path.parent, inputs_only=inputs_only)
        if not inputs_only:
            self._check_writable()
        return self

    def _is_input(self, resolved: Path) -> Path | None:
        """The input that ``resolved`` is or lies in, if any."""
        if resolved in self._input_files:
            return resolved
        for folder in self._input_folders:
            if resolved == folder or folder in resolved.parents:
                return folder
        return None

    def _refuse_input(self, path: Path, source: Path) -> None:
        what = "the input" if source == path.resolve() else "a file inside the input"
        raise OutputError(f"{path}: would overwrite {what} {source}; choose another output name (--overwrite never replaces an input)")

    def _check_file(self, path: Path, record: dict | None, record_folder: Path, inputs_only: bool = False) -> None:
        if is_bookkeeping(path):
            raise OutputError(f"{path}: is the name of cxrssl's own provenance record or lock; choose another output name")
        resolved = path.resolve()
        source = self._is_input(resolved)
        if source is not None and (resolved == source or (path.exists() and not self._own(path, record, record_folder))):
            self._refuse_input(path, source)
        if inputs_only:
            return
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name for this output")
        if not path.exists() and not path.is_symlink():
            return
        if self._own(path, record, record_folder):
            return
        if self.overwrite:
            return
        raise OutputError(
            f"{path}: already exists and was not written by this `cxrssl {self.verb}` command; "
            f"choose another output name, move the file, or pass --overwrite to replace it"
        )

    def _own(self, path: Path, record: dict | None, record_folder: Path) -> bool:
        """Whether ``path`` is this very command's earlier output (complete or not)."""
        if record is None or record.get("verb") != self.verb or record.get("key") != self.key:
            return False
        relative = os.path.relpath(path.resolve(), record_folder.resolve())
        entry = record["files"].get(relative)
        if entry is None:
            return False
        return not record.get("complete") or _unchanged(path, entry)

    def check_folder_holds_no_input(self, folder) -> Outputs:
        """For a folder whose contents a verb manages itself (a pretraining run): only that it is
        not, and holds no, input of the command, and can be written."""
        self._check_not_input(Path(folder))
        return self

    def _check_not_input(self, folder: Path) -> None:
        resolved = folder.resolve()
        source = self._is_input(resolved)
        if source is not None and (resolved == source or (folder.exists() and not self._own_folder(folder))):
            self._refuse_input(folder, source)
        for item in [*self._input_files, *self._input_folders]:
            if resolved in item.parents:
                raise OutputError(
                    f"{folder}: would overwrite the input {item} inside it; choose another output folder (--overwrite never replaces an input)"
                )

    def _own_folder(self, folder: Path) -> bool:
        """A folder this verb filled before (e.g. a sweep inside the run folder it reads)."""
        record = _read_record(folder / FOLDER_RECORD)
        return record is not None and record.get("verb") == self.verb

    def _check_folder(self, folder: Path) -> None:
        self._check_not_input(folder)
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: is a file, not a folder; choose a new or empty folder for this output")
        if not folder.is_dir():
            return
        record = _read_record(folder / FOLDER_RECORD)
        if self.keep_finished and not self.overwrite and (folder / self.keep_finished).is_file():
            raise OutputError(f"{folder}: already holds {self.keep_finished}; choose another -o or pass --overwrite to compute it again")
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or is_bookkeeping(path) or path.name.endswith(".tmp"):
                continue  # records and locks are not results; the files they describe are
            relative = str(path.relative_to(folder))
            if record is not None and record.get("verb") == self.verb and record.get("key") == self.key:
                continue  # this command's own folder: resumed or replaced as a whole
            if self.overwrite and (record is None or relative in record["files"] or record.get("verb") == self.verb):
                continue
            writer = _writer_of(path, relative, record)
            if writer is not None:
                raise OutputError(
                    f"{folder}: already holds {relative}, written by `cxrssl {writer}` with other settings; "
                    "choose a new or empty folder, or pass --overwrite to replace that result"
                )
            raise OutputError(
                f"{folder}: is not empty and is not a cxrssl {self.verb} output (it holds {relative}); choose a new or empty folder, "
                "or pass --overwrite to write there anyway (files of the same names are replaced, nothing else is touched)"
            )

    def _check_writable(self) -> None:
        for folder in sorted({p.resolve().parent for p in self.files} | {f.resolve() for f in self.folders}):
            if not folder.exists():
                self._created.append(folder)
            folder.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(prefix=".cxrssl-write-check.", suffix=".tmp", dir=folder)
            os.close(handle)
            os.unlink(probe)

    # --- while writing ----------------------------------------------------------------

    def _records(self) -> list[tuple[Path, Path, list[Path]]]:
        """(record path, folder paths are relative to, files it covers)."""
        records = []
        if self.files:
            primary = self.files[0]
            records.append((record_of_file(primary), primary.parent, self.files))
        for folder in self.folders:
            records.append((folder / FOLDER_RECORD, folder, []))
        return records

    def _locks(self) -> list[tuple[Path, Path]]:
        """(lock, the output it guards: named in the refusal of a second writer)."""
        locks = [(lock_of_file(self.files[0]), self.files[0])] if self.files else []
        return locks + [(folder / FOLDER_LOCK, folder) for folder in self.folders]

    @contextmanager
    def holding(self) -> Iterator[Outputs]:
        """Hold the outputs' locks (for a whole command: a second writer is refused at once, not
        after an hour of work); :meth:`writing` inside it takes them no second time."""
        if self._held:
            yield self
            return
        try:
            with hold_locks(self._locks()):
                self._held = True
                try:
                    yield self
                except BaseException:
                    self._forget_unstarted()
                    raise
                finally:
                    self._held = False
        finally:
            self._remove_empty_folders()  # after the lock inside it is gone

    def _forget_unstarted(self) -> None:
        """A command that failed or was stopped before it wrote any output leaves no record of it."""
        for record_path, base, files in self._records():
            record = _read_record(record_path)
            if record is None or record.get("key") != self.key or record.get("complete"):
                continue
            written = [f for f in files if f.exists()] if files else _folder_files(base)  # a journal counts: it is resumable work
            if not written:
                record_path.unlink(missing_ok=True)

    def _remove_empty_folders(self) -> None:
        for folder in sorted(self._created, key=lambda f: len(f.parts), reverse=True):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass

    @contextmanager
    def writing(self) -> Iterator[Outputs]:
        """Hold the outputs' locks, mark them incomplete, remove an older result, and record
        the new one once the body has finished; an error or a signal leaves them marked
        incomplete (readers refuse them; the same command re-runs or resumes)."""
        if not self._checked:
            self.check()
        with self.holding():
            for record_path, base, files in self._records():
                old = _read_record(record_path)
                # The same command re-run (or resumed) writes its own files again; another command's
                # result (replaced with --overwrite) goes before any new file is shown.
                resumable = old is not None and old.get("verb") == self.verb and old.get("key") == self.key
                base.mkdir(parents=True, exist_ok=True)
                atomic_write_json(record_path, self._record(base, files, complete=False))
                if old is not None and not resumable:
                    for relative in old["files"]:  # the old result goes before any new file is shown
                        stale = base / relative
                        if stale.resolve() not in {f.resolve() for f in files} and self._is_input(stale.resolve()) is None:
                            stale.unlink(missing_ok=True)
            yield self
            for record_path, base, files in self._records():
                atomic_write_json(record_path, self._record(base, files or _folder_files(base), complete=True))

    def _record(self, base: Path, files: list[Path], complete: bool) -> dict:
        entries = {}
        for path in files:
            relative = os.path.relpath(path.resolve(), base.resolve())
            entries[relative] = file_digest(path) if complete and path.is_file() else {}
        if complete:
            entries = {name: entry for name, entry in entries.items() if entry}
        from cxrssl import __version__

        return {
            "format": FORMAT,
            "verb": self.verb,
            "key": self.key,
            "complete": complete,
            "files": entries,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cxrssl_version": __version__,
        }


def _folder_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (FOLDER_RECORD, FOLDER_LOCK) and not p.name.endswith(".tmp")]


# --- locks -------------------------------------------------------------------------------


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _holder(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


@contextmanager
def hold_lock(lock: Path, what=None, doing: str = "written") -> Iterator[None]:
    """One writer at a time: create ``lock`` exclusively (pid, host, start), remove it after.

    A lock left by a process that no longer exists on this host is stale and taken over.
    """
    lock = Path(lock)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    lock.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if attempt == 0 and holder is not None and holder.get("host") == mine["host"] and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            who = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}" if holder else "another process"
            raise OutputError(
                f"{what or lock.parent}: is being {doing} by {who}; wait for it to finish, or delete {lock} if that process no longer runs"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        break
    try:
        yield
    finally:
        if _holder(lock) == mine:
            lock.unlink(missing_ok=True)


@contextmanager
def hold_locks(locks: list[tuple[Path, Path]]) -> Iterator[None]:
    """Hold each (lock, output) in turn."""
    if not locks:
        yield
        return
    with hold_lock(*locks[0]):
        with hold_locks(locks[1:]):
            yield


# --- readers ------------------------------------------------------------------------------


def require_complete(path: str | os.PathLike) -> Path:
    """Refuse a result that its writer left incomplete or that changed since; files without a
    provenance record (by hand, or older cxrssl) pass."""
    path = Path(path)
    candidates = [(record_of_file(path), path.parent)]
    for folder in [path.parent, *path.parent.parents][:3]:
        candidates.append((folder / FOLDER_RECORD, folder))
    for sidecar in path.parent.glob(".*.cxrssl.json"):
        candidates.append((sidecar, path.parent))
    for record_path, base in candidates:
        record = _read_record(record_path)
        if record is None:
            continue
        relative = os.path.relpath(path.resolve(), base.resolve())
        covers = record_path.name == FOLDER_RECORD or relative in record["files"]
        if record.get("complete") is False and covers:
            raise OutputError(
                f"{path}: is part of an unfinished `cxrssl {record.get('verb')}` result (it was stopped before it finished); "
                "run that command again to finish it"
            )
        entry = record["files"].get(relative)
        if entry is not None and not _unchanged(path, entry):
            raise OutputError(f"{path}: has changed since `cxrssl {record.get('verb')}` wrote it; run that command again to recreate it")
        if entry is not None:
            return path
    return path
