"""A run folder of ``cxrssl pretrain``: its layout, log, status and saved settings.

Training writes these files; evaluation, the report and the demo read them through
this module, so none of them imports the training loop.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_json, atomic_write_text, csv_dict_text
from cxrssl.outputs import hold_lock

# rankme, alignment, uniformity: the label-free monitors of cxrssl.ssl.monitors (empty in older runs).
LOG_COLUMNS = ("epoch", "loss", "lr", "images_per_s", "wall_s", "rankme", "alignment", "uniformity", "knn_auc")
LOG_REQUIRED = 5  # every row has the first five; a monitor's column is written when some row has it
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

    def write_config(self, record: dict) -> None:
        """The run's record (config.json): its settings, data and machine; written at the start of a run
        or of a resume that trains, never by one that trains nothing."""
        atomic_write_json(self.config, record)

    def state_weights_name(self, epoch: int) -> str:
        """The resumable state's weights of ``epoch``: a new file per epoch, so that state/last.json
        always names whole weights (it is replaced after them)."""
        return f"last_{epoch:04d}.safetensors"

    def remove_state_weights_except(self, name: str) -> None:
        """The state weights that state/last.json no longer names: removed once it names the new ones."""
        for old in self.state.parent.glob("last*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def read_log(self) -> list[dict]:
        """log.csv's rows, each with a whole epoch and a number for its loss; a damaged log is one line."""
        if not self.log.is_file():
            return []
        try:
            with self.log.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            for row in rows:
                int(row["epoch"]), float(row["loss"])
        except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as error:
            raise CxrsslError(
                f"{self.log}: damaged ({type(error).__name__}: {error}); the run's state holds the log: "
                "resume the run (`cxrssl pretrain ... --resume`) to write it again"
            ) from None
        return rows

    def read_status(self) -> dict:
        """status.json, or {} when it is absent or damaged (it only describes; nothing is decided by it)."""
        try:
            status = json.loads(self.status.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def write_log(self, rows: list[dict]) -> None:
        columns = [name for i, name in enumerate(LOG_COLUMNS) if i < LOG_REQUIRED or any(name in row for row in rows)]
        atomic_write_text(self.log, csv_dict_text(columns, rows, for_spreadsheets=False))

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
            raise CxrsslError(
                f"{self.root}: is not empty and is not a cxrssl run folder; choose a new or empty folder for --out (nothing there was changed)"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.is_file():
            atomic_write_json(self.marker, {"format": "cxrssl-run/1", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cxrssl_version": __version__})

    def locked(self):
        """Hold the run's lock while training; a second process on the same run is refused
        (a lock left by a process that no longer exists on this host is taken over)."""
        return hold_lock(self.lock, what=self.root, doing="trained")

    def remove_stale_temporaries(self) -> list[Path]:
        """Temporary files of saves that a killed process never finished (``.NAME.*.tmp``); removed under the lock."""
        stale = [p for folder in (self.root, self.root / "state", self.checkpoints) if folder.is_dir() for p in folder.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def set_status(self, state: str, **details) -> None:
        atomic_write_json(self.status, {"state": state, "cxrssl_version": __version__, **details})


IDENTITY_KIND = "content/1"  # what data_identity covers: paths, sizes and bytes
WHOLE_BYTES = 2**20  # files up to this size are digested whole; larger ones by their first and last SAMPLE_BYTES
SAMPLE_BYTES = 2**18


def data_identity(paths, content: bool = True) -> str:
    """Which images a run trains on, in which order: SHA-256 over their resolved paths and,
    with ``content``, their sizes and bytes (whole up to 1 MiB; the first and last 256 KiB
    of larger files, e.g. DICOMs, so that a resume check stays seconds on 100,000 films).

    Another file copied to the same path is a different identity. An absent file counts
    by its path (a cache's pixels are checked by the cache itself).
    """
    digest = hashlib.sha256()
    for path in paths:
        resolved = Path(path).resolve()
        digest.update(str(resolved).encode() + b"\n")
        if content:
            digest.update(_content_digest(resolved))
    return digest.hexdigest()


def _content_digest(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            part = hashlib.sha256(str(size).encode())
            if size <= WHOLE_BYTES:
                part.update(handle.read())
            else:
                part.update(handle.read(SAMPLE_BYTES))
                handle.seek(size - SAMPLE_BYTES)
                part.update(handle.read(SAMPLE_BYTES))
            return part.digest()
    except OSError:
        return b"absent"
