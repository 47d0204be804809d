"""The work of one fold: every backbone probed (or fine-tuned) at every budget, as records and test scores.

A fold's result is a plain dict (it is journalled as one JSON line): ``mode``, ``task``,
``repeat``, ``fold``, the ``records`` (one per backbone × budget [× finding], the
metrics on the fold's test part) and, for a fixed test part, the ``scores`` the paired
bootstrap resamples.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrssl.data.imageset import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.eval.compare.journal import finetune_state
from cxrssl.eval.compare.plan import FINETUNED, CompareError, CompareSettings, Fold, TaskPlan, budget_name, score_key
from cxrssl.eval.finetune import finetune
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import finetune_findings, fit_and_score_findings
from cxrssl.eval.probe import ProbeError, fit_and_score


def fit_fold(plan: TaskPlan, fold: Fold, features: dict[str, np.ndarray], settings: CompareSettings) -> dict:
    """Every backbone at every budget on one fold: the records and (fixed test) the test scores."""
    probe = replace(settings.probe, seed=fold.seed, bootstrap=0)
    records, scores = [], {}
    if plan.findings:
        for name, values in features.items():
            for budget, train in fold.train.items():
                _record_findings(
                    records, scores, plan, fold, name, budget, train, fit_and_score_findings(values, plan.findings, train, fold.test, probe)
                )
        return {"mode": "probe", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}
    for name, values in features.items():
        for budget, train in fold.train.items():
            try:
                fit = fit_and_score(values, plan.targets, plan.patients, train, fold.test, probe)
            except ProbeError as error:
                raise CompareError(f"{plan.name}, budget {budget_name(budget)}: {error}") from None
            _record(records, scores, plan, fold, name, budget, train, fit.metrics, fit.test_scores, chosen_c=fit.chosen_c)
    return {"mode": "probe", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}


def _record_findings(records, scores, plan: TaskPlan, fold: Fold, name, budget, train, fit, **extra) -> None:
    """``_record`` per finding of a FindingsFit (probe or fine-tune): NaN metrics where the fold could not fit or score it."""
    for j, finding in enumerate(plan.findings.names):
        found = fit.metrics.get(finding, dict.fromkeys(METRICS, float("nan")))
        _record(
            records,
            scores,
            plan,
            fold,
            name,
            budget,
            train,
            found,
            fit.test_scores[:, j],
            finding=finding,
            chosen_c=fit.chosen_c.get(finding),
            **extra,
        )
        if plan.design == "fixed_test":
            scores["threshold|" + score_key(name, budget_name(budget), finding)] = fit.thresholds.get(finding, 0.5)


def _record(
    records: list, scores: dict, plan: TaskPlan, fold: Fold, name: str, budget, train, metrics: dict, test_scores, finding=None, **extra
) -> None:
    """One backbone at one budget on one fold: its record, and (fixed test part) its test scores for the bootstrap."""
    if finding is not None:
        extra = {"finding": finding, **extra}
    records.append(
        {
            "task": plan.name,
            "backbone": name,
            "budget": budget_name(budget),
            "repeat": fold.repeat,
            "fold": fold.fold,
            "n_train": int(len(train)),
            "n_train_patients": int(len(set(plan.patients[train]))),
            "n_test": int(len(fold.test)),
            **extra,
            **{metric: float(metrics[metric]) for metric in METRICS},
        }
    )
    if plan.design == "fixed_test":
        scores[score_key(name, budget_name(budget), finding)] = test_scores.round(7).tolist()


def finetune_fold(plan: TaskPlan, fold: Fold, backbones, images: ImageSet, settings: CompareSettings, out_dir: Path) -> dict:
    """Every backbone fine-tuned at every fine-tuning budget of one fold (in this process: torch uses the cores)."""
    records, scores = [], {}
    for index, backbone in enumerate(backbones):
        for budget in settings.finetune_budgets:
            train = fold.train[budget]
            # One resumable state per fine-tune: a killed comparison resumes the one it was in.
            state = finetune_state(out_dir, f"{plan.name}_r{fold.repeat}_f{fold.fold}_b{index}_{budget_name(budget)}")
            tune = replace(settings.finetune, seed=fold.seed)
            try:
                if plan.findings:
                    fit, tuned = finetune_findings(backbone.spec, images, plan.findings, train, fold.test, tune, settings.probe.min_patients, state)
                    _record_findings(records, scores, plan, fold, backbone.name + FINETUNED, budget, train, fit, chosen_epoch=tuned.chosen_epoch)
                    continue
                fit = finetune(backbone.spec, images, plan.targets, plan.patients, train, fold.test, tune, work_dir=state)
            except CxrsslError as error:
                raise CompareError(f"{plan.name}, fine-tuning at budget {budget_name(budget)}: {error}") from None
            _record(
                records,
                scores,
                plan,
                fold,
                backbone.name + FINETUNED,
                budget,
                train,
                fit.metrics,
                fit.test_scores,
                chosen_c=None,
                chosen_epoch=fit.chosen_epoch,
            )
    return {"mode": "finetune", "task": plan.name, "repeat": fold.repeat, "fold": fold.fold, "records": records, "scores": scores}
