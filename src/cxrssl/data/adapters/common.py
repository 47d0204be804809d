"""What every dataset adapter shares: the result type, errors, and safe path handling.

An adapter turns a public dataset's own layout into a manifest. It never decodes
images (``cxrssl check`` does that); it reads metadata, applies the task definition,
and lists every row it could not use with the reason, rather than dropping it quietly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cxrssl.data.io import IMAGE_SUFFIXES
from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.errors import CxrsslError


class LayoutError(CxrsslError):
    """The dataset's layout is not what its adapter expects."""


@dataclass(frozen=True)
class IndexOptions:
    views: str = "frontal"  # chexpert: frontal, lateral or all
    # None = the adapter's default. nih14: pneumonia (default, the paper's task), all (unlabelled)
    # or findings (every image, its 14 findings); chexpert: pool (default, unlabelled),
    # competition (the five competition findings) or all-findings (the 14 observations)
    task: str | None = None
    seed: int = 0  # nih14: which 'No Finding' images are matched to the positives
    unlabelled: bool = False  # folder: every image below ROOT, no class
    uncertain: str | None = None  # chexpert's labelled tasks: what -1 (uncertain) becomes: ignore (not labelled, the default), ones (1) or zeros (0)

    def task_or(self, default: str) -> str:
        """The task asked for, or the adapter's ``default`` when none was."""
        return self.task or default


@dataclass
class IndexResult:
    manifest: Manifest
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)  # the rules applied, in words


def require_file(root: Path, names: tuple[str, ...], layout: str) -> Path:
    """The first of ``names`` under ``root``, or one sentence saying what was expected."""
    require_folder(root, layout)
    for name in names:
        if (root / name).is_file():
            return root / name
    raise LayoutError(f"{root}: no {' or '.join(names)} found; expected {layout}")


def require_folder(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder; expected {layout}")


def safe_relative(relative: str) -> str | None:
    """``relative`` as a clean POSIX path below the dataset root, or None if it leaves the root.

    Metadata files are data, not code: a row saying ``../../etc/passwd`` must not make
    the tool read outside the dataset.
    """
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        return None
    return str(path)


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A metadata CSV (UTF-8 with or without BOM; Latin-1 as a fallback, as some releases are)."""
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with open(path, newline="", encoding=encoding) as handle:
                reader = csv.DictReader(handle)
                header = [name.strip() for name in reader.fieldnames or []]
                reader.fieldnames = header  # rows are keyed by the stripped names too
                return header, list(reader)
        except UnicodeDecodeError:
            continue
    raise LayoutError(f"{path}: cannot be read as text")  # unreachable: latin-1 decodes any bytes


def column(header: list[str], path: Path, *names: str) -> str:
    """The header's spelling of the first of ``names`` (case-insensitive), or a clear error."""
    lowered = {name.lower(): name for name in header}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    raise LayoutError(f"{path}: no column {names[0]!r} (the header has {', '.join(header[:8])}...); is this the right metadata file?")


def find_images(folder: Path) -> list[Path]:
    """Image files below ``folder`` (any depth), sorted, hidden files excluded."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def finish(root: Path, rows: list[ManifestRow], skipped: list[tuple[str, str]], notes: list[str], metadata: str) -> IndexResult:
    """Drop (and list) rows whose file is missing or that repeat an image already listed; refuse an empty result."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row.path in seen:
            skipped = skipped + [(row.path, f"listed again in {metadata}; the first listing is kept")]
        else:
            seen.add(row.path)
            unique.append(row)
    rows = unique
    found = [(root / row.path).is_file() for row in rows]  # one stat per row: indexes reach 200k+ files
    present = [row for row, exists in zip(rows, found) if exists]
    missing = [(row.path, f"listed in {metadata} but not found under {root}") for row, exists in zip(rows, found) if not exists]
    if not present:
        detail = f"none of the {len(rows)} images listed in {metadata} were found" if rows else f"{metadata} yielded no image for this task"
        raise LayoutError(f"{root}: {detail}; check that ROOT is the dataset's top folder")
    return IndexResult(Manifest(present, root), skipped + missing, notes)
