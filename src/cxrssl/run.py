"""A run folder of ``cxrssl pretrain``: its layout, log, status and saved settings.

Training writes these files; evaluation, the report and the demo read them through
this module, so none of them imports the training loop.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_json, atomic_write_text

# rankme, alignment, uniformity: the label-free monitors of cxrssl.ssl.monitors (empty in older runs).
LOG_COLUMNS = ("epoch", "loss", "lr", "images_per_s", "wall_s", "rankme", "alignment", "uniformity")
MARKER = ".cxrssl-run"  # marks a folder made by `cxrssl pretrain`
LOCK = ".lock"  # held by the process training the run: its pid, host and start time


class RunFolder:
    """Paths of one run, and the small files that describe it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.state = self.root / "state" / "last.json"
        self.config = self.root / "config.json"
        self.log = self.root / "log.csv"
        self.status = self.root / "status.json"
        self.subset = self.root / "pretext_manifest.csv"
        self.unreadable = self.root / "unreadable.csv"
        self.marker = self.root / MARKER
        self.lock = self.root / LOCK

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.json"

    def saved_checkpoints(self) -> list[Path]:
        return sorted(self.checkpoints.glob("epoch_*.json"))

    def read_config(self) -> dict:
        """The run's saved settings (config.json): the one reader of it."""
        try:
            config = json.loads(self.config.read_text())
        except FileNotFoundError:
            raise CxrsslError(f"{self.config}: not found; is {self.root} the folder of a `cxrssl pretrain` run?") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise CxrsslError(f"{self.config}: unreadable ({error}); restore it from the run's state, or start a new run") from None
        if not isinstance(config, dict) or not isinstance(config.get("pretrain"), dict):
            raise CxrsslError(f"{self.config}: has no 'pretrain' settings; it was not written by `cxrssl pretrain`")
        return config

    def read_log(self) -> list[dict]:
        if not self.log.is_file():
            return []
        with self.log.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def write_log(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n", restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.log, buffer.getvalue())

    def is_run(self) -> bool:
        """Whether the folder was made by `cxrssl pretrain` (its marker, or, for older runs, its config.json)."""
        if self.marker.is_file():
            return True
        try:
            return isinstance(json.loads(self.config.read_text()).get("pretrain"), dict)
        except (OSError, ValueError, AttributeError):
            return False

    def claim(self) -> None:
        """Make ``root`` a run folder; refuse a non-empty folder that is not one (nothing in it is touched)."""
        if self.root.exists() and not self.root.is_dir():
            raise CxrsslError(f"{self.root}: is a file, not a folder; choose a new or empty folder for --out")
        if self.root.is_dir() and any(self.root.iterdir()) and not self.is_run():
            raise CxrsslError(f"{self.root}: is not empty and is not a cxrssl run folder; choose a new or empty folder for --out (nothing there was changed)")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.is_file():
            atomic_write_json(self.marker, {"format": "cxrssl-run/1", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cxrssl_version": __version__})

    @contextmanager
    def locked(self):
        """Hold the run's lock while training; a second process on the same run is refused.

        A lock left by a process that no longer exists on this host is stale and taken over.
        """
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for attempt in range(2):
            try:
                descriptor = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                if attempt == 0 and holder is not None and holder.get("host") == mine["host"] and not _alive(holder.get("pid")):
                    self.lock.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                who = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}" if holder else "another process"
                raise CxrsslError(
                    f"{self.root}: is being trained by {who}; wait for it to finish, or delete {self.lock} if that process no longer runs"
                ) from None
            with os.fdopen(descriptor, "w") as handle:
                json.dump(mine, handle)
            break
        try:
            yield
        finally:
            if self._lock_holder() == mine:
                self.lock.unlink(missing_ok=True)

    def _lock_holder(self) -> dict | None:
        try:
            holder = json.loads(self.lock.read_text())
            return holder if isinstance(holder, dict) else None
        except (OSError, ValueError):
            return None

    def remove_stale_temporaries(self) -> list[Path]:
        """Temporary files of saves that a killed process never finished (``.NAME.*.tmp``); removed under the lock."""
        stale = [p for folder in (self.root, self.root / "state", self.checkpoints) if folder.is_dir() for p in folder.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def set_status(self, state: str, **details) -> None:
        atomic_write_json(self.status, {"state": state, "cxrssl_version": __version__, **details})


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def data_identity(paths) -> str:
    """Which images a run trains on, in which order: SHA-256 over their resolved paths."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).resolve()).encode() + b"\n")
    return digest.hexdigest()
