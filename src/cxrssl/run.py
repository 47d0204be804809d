"""A run folder of ``cxrssl pretrain``: its layout, log, status and saved settings.

Training writes these files; evaluation, the report and the demo read them through
this module, so none of them imports the training loop.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_json, atomic_write_text

# rankme, alignment, uniformity: the label-free monitors of cxrssl.ssl.monitors (empty in older runs).
LOG_COLUMNS = ("epoch", "loss", "lr", "images_per_s", "wall_s", "rankme", "alignment", "uniformity")


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

    def set_status(self, state: str, **details) -> None:
        atomic_write_json(self.status, {"state": state, "cxrssl_version": __version__, **details})
