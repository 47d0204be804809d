"""compare.json's content: per task × budget × backbone the metrics and the paired differences.

Statistics (``eval.stats``): the corrected resampled t-test over the R·K folds for the
CV design, a patient-level paired bootstrap for a fixed test part.
"""

from __future__ import annotations

import warnings

import numpy as np

from cxrssl.eval.compare.plan import FINETUNED, CompareSettings, TaskPlan, budget_name, score_key
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import MACRO, MIN_TRAINING_PATIENTS
from cxrssl.eval.stats import Estimate, bootstrap_estimate, corrected_t, patient_resample_weights, weighted_metrics


def summarise(plans: list[TaskPlan], done: dict, names: list[str], reference: str, settings: CompareSettings) -> dict:
    """compare.json's content: per task × budget × backbone the metrics and the paired differences.

    Fine-tuned rows (``settings.finetune``) form a group of their own, on the folds of
    the first ``finetune_repeats`` repetitions, paired with the fine-tuned reference.
    """
    tasks = []
    all_records = []
    for plan in plans:
        weights = None
        if plan.design == "fixed_test":
            test = plan.folds[0].test
            weights = patient_resample_weights(plan.patients[test].astype(str), settings.bootstrap, [settings.probe.seed, 99])
        groups = [("probe", names, reference, settings.budgets, plan.folds)]
        if settings.finetune:
            folds = [fold for fold in plan.folds if fold.repeat < settings.finetune_repeats]
            groups.append(("finetune", [n + FINETUNED for n in names], reference + FINETUNED, settings.finetune_budgets, folds))
        rows, finding_rows, macro_over, excluded = [], [], {}, {}
        for mode, group_names, group_reference, budgets, folds in groups:
            results = [done[(mode, plan.name, fold.repeat, fold.fold)] for fold in folds]
            records = [record for result in results for record in result["records"]]
            all_records += records
            for budget in map(budget_name, budgets):
                if not plan.findings:
                    rows += _summary_rows(plan, folds, results, records, group_names, group_reference, budget, weights, settings, mode)
                    continue
                summary = _findings_summary(plan, folds, results, records, group_names, group_reference, budget, weights, settings, mode)
                rows += summary[0]
                finding_rows += summary[1]
                macro_over[f"{mode}|{budget}"], excluded[f"{mode}|{budget}"] = summary[2], summary[3]
        findings = {}
        if plan.findings:
            findings = {"findings": list(plan.findings.names), "finding_rows": finding_rows, "macro_over": macro_over, "excluded": excluded}
        tasks.append(
            {
                **findings,
                "budget_unit": plan.budget_unit,
                "task": plan.name,
                "design": plan.design,
                "design_text": plan.describe(settings),
                "statistic": plan.statistic,
                "positive": plan.positive,
                "negative": plan.negative,
                "images": plan.n_images,
                "patients": int(len(set(plan.patients))),
                "purged_images": plan.purged[0],
                "purged_patients": plan.purged[1],
                "rows": rows,
            }
        )
    return {"kind": "cxrssl-compare", "settings": settings.to_dict(), "reference": reference, "tasks": tasks, "folds": all_records}


def _findings_summary(plan: TaskPlan, folds, results, records, names, reference, budget, weights, settings: CompareSettings, mode: str):
    """A multi-label task at one budget: the macro-mean rows, the rows of each finding, the findings averaged and those left out.

    A finding enters the macro mean, and gets rows, only when every fold of the group
    fitted and scored it (too few positive patients in a fold's training or test part
    leaves it out there); the mean is then over the same findings on every fold, so its
    per-fold values are paired across backbones like any other metric.
    """
    at_budget = [r for r in records if r["budget"] == budget]
    excluded, over = {}, []
    for finding in plan.findings.names:
        missing = sum(1 for r in at_budget if r["backbone"] == reference and r["finding"] == finding and not np.isfinite(r["auc"]))
        if missing:
            excluded[finding] = (
                f"not fitted or scored in {missing} of {len(folds)} {'folds' if plan.design == 'cv' else 'draws'}: fewer than {MIN_TRAINING_PATIENTS} positive or negative "
                f"patients in a training part, or {settings.probe.min_patients} in a test part"
            )
        else:
            over.append(finding)
    finding_rows = []
    for finding in over:
        finding_rows += _summary_rows(
            plan, folds, results, at_budget, names, reference, budget, weights, settings, mode, finding=finding, over=[finding]
        )
    macro = []
    for group in _group_by(at_budget, lambda r: (r["backbone"], r["repeat"], r["fold"])).values():
        chosen = [r for r in group if r["finding"] in over]
        first = group[0]
        means = {m: float(np.mean([r[m] for r in chosen])) if chosen else float("nan") for m in METRICS}  # NaN: no finding to average
        macro.append(
            {key: first[key] for key in ("task", "backbone", "budget", "repeat", "fold", "n_train", "n_train_patients", "n_test")}
            | {"finding": MACRO, **means}
        )
    rows = _summary_rows(plan, folds, results, macro, names, reference, budget, weights, settings, mode, finding=MACRO, over=over)
    return rows, finding_rows, over, excluded


def _group_by(records, key) -> dict:
    groups: dict = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def _summary_rows(
    plan: TaskPlan,
    folds,
    results,
    records,
    names,
    reference,
    budget,
    weights,
    settings: CompareSettings,
    mode: str,
    finding: str | None = None,
    over: list[str] | None = None,
) -> list[dict]:
    """The rows of one budget; for a multi-label task, of one ``finding`` (or the macro mean of the findings ``over``)."""
    if finding is not None:
        records = [r for r in records if r.get("finding") == finding]
    by_name = {
        name: sorted((r for r in records if r["backbone"] == name and r["budget"] == budget), key=lambda r: (r["repeat"], r["fold"]))
        for name in names
    }
    if plan.design == "cv":
        # n_test / n_train of the whole training part (1 / (K - 1) for K folds). A budget's
        # training sets are subsets that overlap less, so the correction is conservative there.
        ratio = float(np.mean([len(f.test) / f.train_size for f in folds]))
        estimates = {name: {m: corrected_t([r[m] for r in by_name[name]], ratio) for m in METRICS} for name in names}
        differences = {
            name: {m: corrected_t(np.array([r[m] for r in by_name[name]]) - np.array([r[m] for r in by_name[reference]]), ratio) for m in METRICS}
            for name in names
            if name != reference
        }
    else:
        estimates, differences = _bootstrap_rows(plan, results, names, reference, budget, weights, over)
    rows = []
    for name in names:
        found = by_name[name]
        rows.append(
            {
                **({"finding": finding} if finding is not None else {}),
                "task": plan.name,
                "mode": mode,
                "budget": budget,
                "backbone": name,
                "reference": reference,
                "n_folds": len(found),
                "train_images": float(np.mean([r["n_train"] for r in found])),
                "train_patients": float(np.mean([r["n_train_patients"] for r in found])),
                "test_images": float(np.mean([r["n_test"] for r in found])),
                "metrics": {m: estimates[name][m].clipped(0.0, 1.0).to_dict() for m in METRICS},
                "difference": {m: differences[name][m].clipped(-1.0, 1.0).to_dict() for m in METRICS} if name in differences else None,
            }
        )
    return rows


def _bootstrap_rows(plan: TaskPlan, results: list[dict], names, reference, budget, weights, findings: list[str] | None = None):
    """Fixed test part: the mean over repeats of each metric, and its paired patient bootstrap.

    For a multi-label task, ``findings`` are averaged (one finding, or the macro mean):
    each finding's metric on its labelled test images at its fitted threshold, then the
    mean over the findings, on the same patient resamples.
    """
    test = plan.folds[0].test
    point, draws = {}, {}
    if findings == []:  # a budget at which no finding could be scored: no mean to estimate
        nothing = {m: Estimate(float("nan"), float("nan"), float("nan")) for m in METRICS}
        return {name: nothing for name in names}, {name: nothing for name in names if name != reference}
    for name in names:
        per_finding = []
        for finding in findings or [None]:
            truth = plan.targets[test] if finding is None else plan.targets[test, plan.findings.names.index(finding)]
            labelled = np.isfinite(truth)
            truth, finding_weights = truth[labelled].astype(int), weights[:, labelled]
            key = score_key(name, budget, finding)
            runs = [(np.asarray(result["scores"][key], dtype=float)[labelled], result["scores"].get("threshold|" + key, 0.5)) for result in results]
            on_the_test_part = [weighted_metrics(truth, s, np.ones((1, len(truth))), t) for s, t in runs]
            found_point = {m: float(np.mean([found[m][0] for found in on_the_test_part])) for m in METRICS}
            per_run = [weighted_metrics(truth, s, finding_weights, t) for s, t in runs]
            with warnings.catch_warnings():  # a resample without a class leaves its metric NaN in every run
                warnings.simplefilter("ignore", RuntimeWarning)
                per_finding.append((found_point, {m: np.nanmean(np.stack([p[m] for p in per_run]), axis=0) for m in METRICS}))
        point[name] = {m: float(np.mean([p[m] for p, _ in per_finding])) for m in METRICS}
        draws[name] = {m: np.mean(np.stack([d[m] for _, d in per_finding]), axis=0) for m in METRICS}
    estimates = {name: {m: bootstrap_estimate(point[name][m], draws[name][m]) for m in METRICS} for name in names}
    differences = {
        name: {m: bootstrap_estimate(point[name][m] - point[reference][m], draws[name][m] - draws[reference][m], difference=True) for m in METRICS}
        for name in names
        if name != reference
    }
    return estimates, differences
