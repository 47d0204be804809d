"""Run a comparison: plan every task, fit the folds not journalled yet (in worker processes), summarise.

The result is returned, not written: ``report.compare.write_compare_outputs`` writes
compare.json and its tables and figures, then discards the journal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm

from cxrssl.data.imageset import ImageSet
from cxrssl.eval.compare.fit import finetune_fold, fit_fold
from cxrssl.eval.compare.journal import append_journal, fold_key, journal_key, read_journal, start_journal
from cxrssl.eval.compare.plan import CompareError, CompareSettings, NamedBackbone, common_image_size, plan_for
from cxrssl.eval.compare.summary import summarise
from cxrssl.eval.features import features_for


@dataclass
class Comparison:
    payload: dict  # what compare.json holds
    folder: Path  # the output folder: its journal of finished folds, and where the result files go


def compare_backbones(
    backbones: Sequence[NamedBackbone],
    tasks: Sequence[tuple[str, ImageSet]],
    out_dir: str | Path,
    settings: CompareSettings = CompareSettings(),
    progress: bool = True,
    overwrite: bool = False,
    features: dict[str, dict[str, np.ndarray]] | None = None,
) -> Comparison:
    """Compare ``backbones`` on every (name, images) task; journal the finished folds in ``out_dir``.

    Returns the comparison; write its files with ``report.compare.write_compare_outputs``.
    ``features[task][backbone]``: features computed before (e.g. by ``cxrssl extract``);
    by default they are extracted here, through the feature cache.
    """
    out_dir = Path(out_dir)
    names = [b.name for b in backbones]
    if len(backbones) < 2:
        raise CompareError("give at least two backbones to compare (e.g. --checkpoint CK.json --init random)")
    if len(set(names)) != len(names):
        raise CompareError(f"two backbones share a name ({', '.join(names)}); name them with --checkpoint NAME=CK.json")
    common_image_size(backbones)
    reference = settings.reference or next((b.name for b in backbones if b.spec.checkpoint is None and b.spec.init == "random"), names[0])
    if reference not in names:
        raise CompareError(f"--reference {reference!r} is not one of the backbones ({', '.join(names)})")
    task_names = [name for name, _ in tasks]
    if len(set(task_names)) != len(task_names):
        raise CompareError(f"two tasks share a name ({', '.join(task_names)}); give each --task its own manifest name or folder")
    if (out_dir / "compare.json").exists() and not overwrite:
        raise CompareError(f"{out_dir}: already holds compare.json; choose another -o or pass --overwrite")
    say = print if progress else (lambda *a, **k: None)

    plans = [plan_for(name, images, settings) for name, images in tasks]
    if features is None:
        features = {
            plan.name: {b.name: features_for(b.spec, images, progress=progress) for b in backbones} for plan, (_, images) in zip(plans, tasks)
        }
    key = journal_key(features, tasks, settings, plans)
    done = read_journal(out_dir, key)
    todo = [(plan, fold) for plan in plans for fold in plan.folds if ("probe", plan.name, fold.repeat, fold.fold) not in done]
    fits = len(todo) * len(backbones) * len(settings.budgets)
    say(f"compare: {len(backbones)} backbones x {len(plans)} task(s); {fits} probe fits to run ({len(done)} folds done before)")
    out_dir.mkdir(parents=True, exist_ok=True)
    start_journal(out_dir, key, done)
    for result in run_folds(todo, features, settings, progress):
        done[fold_key(result)] = result
        append_journal(out_dir, result)
    if settings.finetune:
        images_of = {plan.name: images for plan, (_, images) in zip(plans, tasks)}
        for plan in plans:
            for fold in plan.folds:
                if fold.repeat < settings.finetune_repeats and ("finetune", plan.name, fold.repeat, fold.fold) not in done:
                    say(
                        f"fine-tuning {len(backbones)} backbone(s) at {len(settings.finetune_budgets)} budget(s): {plan.name}, repeat {fold.repeat}, fold {fold.fold}"
                    )
                    result = finetune_fold(plan, fold, backbones, images_of[plan.name], settings, out_dir)
                    done[fold_key(result)] = result
                    append_journal(out_dir, result)
    payload = summarise(plans, done, names, reference, settings)
    payload["backbones"] = [
        {
            "name": b.name,
            "description": b.spec.description,
            "arch": b.spec.arch,
            "image_size": b.spec.image_size,
            "epoch": b.spec.epoch,
            "checkpoint": str(b.spec.checkpoint) if b.spec.checkpoint else None,
            "readout": b.spec.readout,
        }
        for b in backbones
    ]
    return Comparison(payload, out_dir)


def run_folds(todo, features, settings: CompareSettings, progress: bool):
    """Fit the folds, in worker processes when there are several cores; results as they finish."""
    jobs = settings.jobs or (os.cpu_count() or 1)
    if jobs == 1 or len(todo) <= 1:
        for plan, fold in tqdm(todo, desc="folds", unit="fold", disable=not progress, leave=False):
            yield fit_fold(plan, fold, features[plan.name], settings)
        return
    # One BLAS thread per worker: the workers, not BLAS, use the cores.
    with parallel_config(backend="loky", inner_max_num_threads=1):
        parallel = Parallel(n_jobs=min(jobs, len(todo)), return_as="generator_unordered")
        yield from parallel(delayed(fit_fold)(plan, fold, features[plan.name], settings) for plan, fold in todo)
