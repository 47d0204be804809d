"""The resumable journal of a comparison: its finished folds, kept while it runs.

A killed comparison resumes: each finished fold is appended, as one JSON line, to
``.compare.partial.jsonl`` in the output folder, after a first line holding the key of
everything the folds depend on (:func:`journal_key`). Run again with the same inputs,
the folds found there are skipped; with other inputs, the journal is replaced. The
fine-tunes of ``--finetune`` keep their resumable state under ``.finetune_state/``.

This is partial state, not a result: once the result files are written
(``report.compare.write_compare_outputs``), :func:`discard_journal` removes both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from cxrssl.eval.compare.plan import CompareSettings, TaskPlan
from cxrssl.fileio import atomic_write_text

PARTIAL = ".compare.partial.jsonl"
FINETUNE_STATE = ".finetune_state"


def fold_key(result: dict) -> tuple:
    """(mode, task, repeat, fold): which fold a result is, in the journal and in the ``done`` dict."""
    return (result.get("mode", "probe"), result["task"], result["repeat"], result["fold"])


def journal_key(features: dict, tasks, settings: CompareSettings, plans: list[TaskPlan]) -> str:
    """What the fold results depend on: the features themselves (by content), the tasks' labels, patients and split, the settings."""
    digest = hashlib.sha256()
    for task_name in sorted(features):
        for name in sorted(features[task_name]):
            digest.update(f"{task_name}|{name}|{features[task_name][name].shape}".encode())
            digest.update(np.ascontiguousarray(features[task_name][name]).tobytes())
    text = json.dumps(
        {
            "tasks": [[name, images.manifest.labels, images.manifest.patient_keys, images.manifest.splits] for name, images in tasks],
            "settings": settings.to_dict(),
        },
        sort_keys=True,
    )
    digest.update(text.encode())
    for plan in plans:  # the targets too: a task's findings are not in its labels
        digest.update(f"{plan.name}|{'|'.join(plan.findings.names) if plan.findings else ''}".encode())
        digest.update(np.ascontiguousarray(plan.targets, dtype=float).tobytes())
    return digest.hexdigest()


def read_journal(out_dir: str | Path, key: str) -> dict:
    """Folds finished by an earlier run of the same comparison; anything else in the file is ignored."""
    path = Path(out_dir) / PARTIAL
    done = {}
    if not path.is_file():
        return done
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        return done  # another comparison's: it will be replaced
    for line in lines[1:]:
        try:
            result = json.loads(line)
        except ValueError:
            break  # a line cut short by a kill
        done[fold_key(result)] = result
    return done


def start_journal(out_dir: str | Path, key: str, done: dict) -> None:
    """The journal holds this comparison's key, then the folds kept from before (a torn last line dropped)."""
    atomic_write_text(Path(out_dir) / PARTIAL, json.dumps({"key": key}) + "\n" + "".join(json.dumps(r) + "\n" for r in done.values()))


def append_journal(out_dir: str | Path, result: dict) -> None:
    """One finished fold, on disk (fsync'd) before the next one starts."""
    with open(Path(out_dir) / PARTIAL, "a") as handle:
        handle.write(json.dumps(result) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def finetune_state(out_dir: str | Path, name: str) -> Path:
    """The resumable state folder of one fine-tune of the comparison."""
    return Path(out_dir) / FINETUNE_STATE / name


def discard_journal(out_dir: str | Path) -> None:
    """Remove the journal and the fine-tune states: call it once the comparison's results are written."""
    (Path(out_dir) / PARTIAL).unlink(missing_ok=True)
    shutil.rmtree(Path(out_dir) / FINETUNE_STATE, ignore_errors=True)
