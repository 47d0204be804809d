"""Result dicts built by hand in the form the report writers read (probe, per-finding, compare), names chosen by the test."""

from __future__ import annotations

from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import MACRO

SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(1)>"
HOSTILE = [SCRIPT, IMAGE, "a|b", '=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "two\nlines", "`tick`", r"$\frac$"]
FINDINGS = [IMAGE, "a|b", "@SUM(A1)", "two\nlines"]


def estimate(value, p=None):
    """An estimate with its 95 % interval (and its p-value, for a difference)."""
    found = {"value": value, "low": value - 0.05, "high": value + 0.05}
    return found if p is None else {**found, "p_value": p}


def metrics():
    """ACC, AUC, SEN, SPE, F1 of a result."""
    return {"accuracy": 0.8, "auc": 0.9, "sensitivity": 0.7, "specificity": 0.75, "f1": 0.72}


def probe_result(dataset, label):
    """A binary probe result (``result_payload``) as table.md / table.csv read it."""
    values = metrics()
    return {
        "dataset": dataset,
        "label": label,
        "metrics": values,
        "intervals_95": {m: [v - 0.05, v + 0.05] for m, v in values.items()},
        "chosen_c": 0.1,
        "n_test": 40,
        "purged_images": 2,
        "purged_patients": 1,
    }


def findings_result(dataset, label):
    """A per-finding probe result: every finding but the last scored, the last left out for a reason."""
    scored = [
        {"finding": name, "metrics": metrics(), "intervals_95": {"auc": [0.85, 0.95]}, "threshold": 0.4, "chosen_c": 1.0, "test_images": 30}
        for name in FINDINGS[:-1]
    ]
    left_out = {FINDINGS[-1]: f"fewer than 2 positive patients {SCRIPT}"}
    return {
        "dataset": dataset,
        "label": label,
        "findings": scored + [{"finding": FINDINGS[-1], "excluded": left_out[FINDINGS[-1]]}],
        "macro_auc": 0.9,
        "macro_auc_95": [0.85, 0.95],
        "n_test": 40,
        "excluded": left_out,
    }


def compare_row(task, backbone, reference, budget, finding=None):
    """One row of a compare task: a backbone at a budget (of one finding, or the macro mean), with its difference unless it is the reference."""
    row = {
        "task": task,
        "mode": "probe",
        "budget": budget,
        "backbone": backbone,
        "reference": reference,
        "n_folds": 6,
        "train_images": 40.0,
        "train_patients": 20.0,
        "test_images": 20.0,
        "metrics": {m: estimate(0.8) for m in METRICS},
        "difference": None if backbone == reference else {m: estimate(-0.005, p=0.0001) for m in METRICS},
    }
    return row if finding is None else {"finding": finding, **row}


def compare_payload(backbones, task_name, findings=None):
    """A compare.json of two budgets, the first backbone the reference; per finding when ``findings`` are given."""
    reference = backbones[0]
    budgets = ["10", "all"]
    task = {
        "task": task_name,
        "design": "cv",
        "design_text": "3 x 5-fold patient-grouped cross-validation",
        "statistic": "corrected resampled t-test",
        "positive": SCRIPT,
        "negative": "NORMAL",
        "images": 80,
        "patients": 40,
        "purged_images": 1,
        "purged_patients": 1,
        "budget_unit": "patients per class",
    }
    if findings:
        task |= {
            "findings": findings,
            "positive": "",
            "budget_unit": "patients",
            "finding_rows": [compare_row(task_name, b, reference, budget, f) for f in findings[:-1] for budget in budgets for b in backbones],
            "macro_over": {f"probe|{budget}": findings[:-1] for budget in budgets},
            "excluded": {f"probe|{budget}": {findings[-1]: f"too rare {IMAGE}"} for budget in budgets},
        }
    task["rows"] = [compare_row(task_name, b, reference, budget, MACRO if findings else None) for budget in budgets for b in backbones]
    folds = [
        {
            "task": task_name,
            "backbone": b,
            "budget": budget,
            "repeat": 0,
            "fold": k,
            "n_train": 40,
            "n_train_patients": 20,
            "n_test": 20,
            "chosen_c": 0.1,
            **dict.fromkeys(METRICS, -0.5),
            **({"finding": findings[0]} if findings else {}),
        }
        for b in backbones
        for budget in budgets
        for k in range(2)
    ]
    return {"kind": "cxrssl-compare", "reference": reference, "tasks": [task], "folds": folds, "settings": {}}
