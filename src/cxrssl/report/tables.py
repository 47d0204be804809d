"""Table III-style results: ACC, AUC, SEN, SPE, F1 in percent, with 95 % CIs.

Markdown (printed, table.md, compare.md) and CSV (table.csv, compare.csv) of probe,
per-finding and compare results. Every user-given name (dataset, label, backbone,
task, finding) goes through ``report.markdown.md_text`` in Markdown and through
``fileio.csv_text`` (formula cells neutralised) in CSV.
"""

from __future__ import annotations

import math

from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import MACRO
from cxrssl.eval.stats import CORRECTED_T, PATIENT_BOOTSTRAP
from cxrssl.fileio import csv_dict_text, csv_text
from cxrssl.report.markdown import Markdown, md_header, md_row, md_text

MEAN_AUC = "mean AUC"  # the column of the macro mean over findings
HEADERS = {"accuracy": "ACC", "auc": "AUC", "sensitivity": "SEN", "specificity": "SPE", "f1": "F1"}


def _percent(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def format_cell(value: float, interval: tuple[float, float] | None) -> str:
    if not interval:
        return _percent(value)
    return f"{_percent(value)} [{_percent(interval[0])}–{_percent(interval[1])}]"


def metric_cells(result: dict) -> list[str]:
    """ACC, AUC, SEN, SPE, F1 of a ProbeResult.to_dict(), each with its interval when there is one."""
    return [format_cell(result["metrics"][m], result.get("intervals_95", {}).get(m)) for m in METRICS]


def _metric_csv_header() -> list[str]:
    """Each metric's column, then the low and high ends of its interval."""
    return [column for metric in METRICS for column in (HEADERS[metric], f"{HEADERS[metric]}_low", f"{HEADERS[metric]}_high")]


def _markdown(lead_headers: list[str], rows: list[tuple[list[str], dict]]) -> str:
    """A markdown table: the leading cells of each row, then its metrics, C and test size."""
    lines = [md_header([*lead_headers, *(HEADERS[m] for m in METRICS), "C", "test images"])]
    for lead, result in rows:
        chosen = result["chosen_c"] if result.get("chosen_c") is not None else f"epoch {result.get('chosen_epoch', '?')}"
        lines.append(md_row([*lead, *metric_cells(result), chosen, result["n_test"]]))
    return "\n".join(lines) + "\n"


def paper_table_rows(results: list[dict]) -> list[tuple[str, str, dict]]:
    """(dataset, pretext, result) rows in Table III order: by dataset as first seen, then as given."""
    order = list(dict.fromkeys(result.get("dataset", "?") for result in results))
    return [(dataset, result.get("label", "?"), result) for dataset in order for result in results if result.get("dataset", "?") == dataset]


def paper_markdown_table(results: list[dict]) -> str:
    """Table III: rows = dataset × pretext (fraction and epoch, or a run label), percent with 95 % CIs.

    A footnote counts the training images that ``--split-policy purge`` dropped.
    """
    rows = paper_table_rows(results)
    table = _markdown(["dataset", "pretext"], [([dataset, pretext], result) for dataset, pretext, result in rows])
    notes = [
        f"{md_text(dataset)}, {md_text(pretext)}: the official test part was kept; --split-policy purge dropped {result['purged_images']} training "
        f"image(s) of {result['purged_patients']} patient(s) who are also in it."
        for dataset, pretext, result in rows
        if result.get("purged_images")
    ]
    return table + "".join(f"\n{note}\n" for note in notes)


def paper_csv_table(results: list[dict]) -> str:
    """Table III as CSV: one line per dataset × pretext, each metric in percent with its interval's ends, then C and the test size."""
    lines = []
    for dataset, pretext, result in paper_table_rows(results):
        line = [dataset, pretext]
        for metric in METRICS:
            low, high = result.get("intervals_95", {}).get(metric, (math.nan, math.nan))
            line += [_percent(result["metrics"][metric]), _percent(low), _percent(high)]
        lines.append(line + [result["chosen_c"], result["n_test"]])
    return csv_text(["dataset", "pretext", *_metric_csv_header(), "C", "n_test"], lines)


def estimate_cell(estimate: dict | None, signed: bool = False) -> str:
    if not estimate or estimate["value"] is None or not math.isfinite(estimate["value"]):
        return "–"
    sign = "+" if signed else ""
    low, high = estimate["low"], estimate["high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{100 * estimate['value']:{sign}.1f}"
    return f"{100 * estimate['value']:{sign}.1f} [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"


def p_value_cell(estimate: dict | None) -> str:
    if not estimate or not math.isfinite(estimate.get("p_value", math.nan)):
        return "–"
    p = estimate["p_value"]
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _finding_columns(results: list[dict]) -> list[str]:
    """Every finding of the results, in the order first seen."""
    return list(dict.fromkeys(entry["finding"] for result in results for entry in result["findings"]))


def finding_auc_cell(result: dict, finding: str) -> str:
    entry = next((e for e in result["findings"] if e["finding"] == finding), None)
    if entry is None or "metrics" not in entry:
        return "–"
    return format_cell(entry["metrics"]["auc"], entry.get("intervals_95", {}).get("auc"))


def _left_out_text(left_out: dict) -> str:
    """``name (why); ...`` of the findings left out, escaped."""
    return "; ".join(f"{md_text(name)} ({md_text(why)})" for name, why in left_out.items())


def findings_markdown_table(results: list[dict]) -> str:
    """Per-finding probe (or fine-tune) results, CheXpert-style: rows = dataset × backbone, columns = each finding's AUC and the mean.

    AUC in percent with its 95 % interval; '–' marks a finding left out (too few
    patients in a part), named in a note under the table and never in the mean.
    """
    findings = _finding_columns(results)
    lines = [md_header(["dataset", "pretext", *findings, MEAN_AUC, "test images"])]
    notes = []
    for dataset, pretext, result in paper_table_rows(results):
        mean = format_cell(
            result["macro_auc"], result.get("macro_auc_95") if result.get("macro_auc_95") and math.isfinite(result["macro_auc_95"][0]) else None
        )
        cells = [finding_auc_cell(result, finding) for finding in findings]
        lines.append(md_row([dataset, pretext, *cells, mean, result["n_test"]]))
        left_out = result.get("excluded", {})
        if left_out:
            notes.append(f"{md_text(dataset)}, {md_text(pretext)}: left out of the mean: {_left_out_text(left_out)}.")
    notes.append(f"{MEAN_AUC}: the macro mean over the findings scored. Other metrics per finding are in the result files.")
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)


def findings_csv_table(results: list[dict]) -> str:
    """One line per dataset × backbone × finding (and the mean): every metric with its interval, or why it was left out."""
    lines = []
    for dataset, pretext, result in paper_table_rows(results):
        for entry in result["findings"]:
            line = [dataset, pretext, entry["finding"]]
            for metric in METRICS:
                low, high = entry.get("intervals_95", {}).get(metric, (math.nan, math.nan))
                line += [_percent(entry.get("metrics", {}).get(metric, math.nan)), _percent(low), _percent(high)]
            lines.append(line + [entry.get("threshold", ""), entry.get("chosen_c", ""), entry.get("test_images", ""), entry.get("excluded", "")])
        low, high = result.get("macro_auc_95") or (math.nan, math.nan)
        line = [dataset, pretext, MEAN_AUC]
        for metric in METRICS:
            line += [_percent(result["macro_auc"]), _percent(low), _percent(high)] if metric == "auc" else ["", "", ""]
        lines.append(line + ["", "", result["n_test"], ""])
    return csv_text(["dataset", "pretext", "finding", *_metric_csv_header(), "threshold", "C", "test_images", "excluded"], lines)


def compare_findings_markdown(task: dict, reference: str) -> str:
    """A multi-label task of a comparison: per budget × backbone, each finding's AUC and the mean; Δ vs the reference with its paired interval."""
    findings = task["findings"]
    lines = [
        f"Per finding (AUC, and below it Δ AUC vs {md_text(reference)} with its paired 95 % interval); budgets are labelled patients:",
        "",
        md_header(["labelled patients", "backbone", *findings, MEAN_AUC]),
    ]
    by_key = {(r["mode"], r["budget"], r["backbone"], r["finding"]): r for r in task["finding_rows"] + task["rows"]}
    for row in task["rows"]:
        cells = []
        for finding in [*findings, MACRO]:
            found = by_key.get((row["mode"], row["budget"], row["backbone"], finding))
            if found is None:
                cells.append("–")
                continue
            cell = md_text(estimate_cell(found["metrics"]["auc"]))
            if found["difference"]:
                cell += f"<br>Δ {md_text(estimate_cell(found['difference']['auc'], signed=True))}"
            cells.append(Markdown(cell))  # the <br> is cxrssl's own; the numbers in it are escaped
        lines.append(md_row([row["budget"], row["backbone"], *cells]))
    notes = []
    for key, over in task.get("macro_over", {}).items():
        mode, budget = key.split("|")
        left_out = task["excluded"].get(key, {})
        over_text = ", ".join(md_text(name) for name in over) or "no finding"
        note = f"{'Fine-tuned, ' if mode == 'finetune' else ''}{md_text(budget)} labelled patients: {MEAN_AUC} over {over_text}"
        if left_out:
            note += f"; left out: {_left_out_text(left_out)}"
        notes.append(note + ".")
    return "\n".join(lines) + "".join(f"\n\n{note}" for note in notes)


def _statistic_text(statistic: str) -> str:
    """The statistic of a compare task: cxrssl's own words as they are (the ``&`` of a citation too), anything else escaped."""
    return Markdown(statistic) if statistic in (CORRECTED_T, PATIENT_BOOTSTRAP) else md_text(statistic)


def compare_markdown_table(payload: dict) -> str:
    """A ``cxrssl compare`` result: per task, budget × backbone, metrics and the paired AUC difference.

    Percent; 95 % intervals; Δ is the backbone minus the reference, paired over the same
    folds and label draws.
    """
    reference = payload["reference"]
    blocks = []
    for task in payload["tasks"]:
        per_finding = bool(task.get("findings"))
        what = f"{len(task['findings'])} findings, rows below: their {MEAN_AUC}" if per_finding else f"positive class {md_text(task['positive'])}"
        lines = [
            f"**{md_text(task['task'])}**: {task['images']} images of {task['patients']} patients, {what}; {md_text(task['design_text'])}.",
            "",
            md_header(
                ["labelled patients" if per_finding else "labels/class", "backbone", *(HEADERS[m] for m in METRICS), f"Δ AUC vs {reference}", "p"]
            ),
        ]
        for row in task["rows"]:
            difference = (row["difference"] or {}).get("auc")
            cells = [estimate_cell(row["metrics"][m]) for m in METRICS]
            delta = estimate_cell(difference, signed=True) if difference else "(reference)"
            p_value = Markdown(p_value_cell(difference))  # cxrssl's own: "<0.001" is no tag, shown as it is
            lines.append(md_row([row["budget"], row["backbone"], *cells, delta, p_value]))
        notes = [f"Intervals and p: {_statistic_text(task['statistic'])}."]
        finetuned = [row for row in task["rows"] if row.get("mode") == "finetune"]
        if finetuned:
            notes.append(
                f"Rows marked (fine-tuned): the whole network trained end to end (`cxrssl finetune`) on {finetuned[0]['n_folds']} "
                f"of the folds, each compared with {md_text(finetuned[0]['reference'])} on the same folds."
            )
        if task.get("purged_images"):
            notes.append(
                f"--split-policy purge dropped {task['purged_images']} training image(s) of {task['purged_patients']} patient(s) also in the test part."
            )
        lines += ["", " ".join(notes)]
        if per_finding:
            lines += ["", compare_findings_markdown(task, reference)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def compare_csv_table(payload: dict) -> str:
    """One line per task × budget × backbone: metrics with 95 % intervals, differences to the reference with p."""
    header = ["task", "design", "budget", "backbone", "reference", "n_folds", "train_images", "train_patients", "test_images"]
    for metric in METRICS:
        header += [metric, f"{metric}_low", f"{metric}_high"]
    for metric in METRICS:
        header += [f"delta_{metric}", f"delta_{metric}_low", f"delta_{metric}_high", f"p_{metric}"]
    lines = []
    for task in payload["tasks"]:
        for row in task["rows"] + task.get("finding_rows", []):
            line = [
                task["task"],
                task["design"],
                row["budget"],
                row["backbone"],
                row["reference"],
                row["n_folds"],
                f"{row['train_images']:.1f}",
                f"{row['train_patients']:.1f}",
                f"{row['test_images']:.1f}",
            ]
            for metric in METRICS:
                found = row["metrics"][metric]
                line += [f"{found[k]:.4f}" for k in ("value", "low", "high")]
            for metric in METRICS:
                found = (row["difference"] or {}).get(metric)
                line += [f"{found[k]:.4f}" for k in ("value", "low", "high", "p_value")] if found else [""] * 4
            lines.append(line + [task["statistic"], row.get("finding", "")])
    return csv_text(header + ["statistic", "finding"], lines)


def compare_folds_csv(payload: dict) -> str:
    """The per-fold values every summary is computed from."""
    columns = [
        "task",
        "backbone",
        "budget",
        "repeat",
        "fold",
        "n_train",
        "n_train_patients",
        "n_test",
        "chosen_c",
        "chosen_epoch",
        *METRICS,
        "finding",
    ]
    order = sorted(
        payload["folds"], key=lambda r: (r["task"], r["backbone"], _budget_order(r["budget"]), r["repeat"], r["fold"], r.get("finding", ""))
    )
    return csv_dict_text(columns, order)


def _budget_order(budget: str) -> float:
    return math.inf if budget == "all" else float(budget)


def compare_tables(payloads: list[dict]) -> tuple[str, str]:
    """The Markdown and the CSV of one or more compare results; the CSV has one header line."""
    markdown = "\n".join(compare_markdown_table(payload) for payload in payloads)
    parts = [compare_csv_table(payload) for payload in payloads]
    return markdown, parts[0] + "".join(part.split("\n", 1)[1] for part in parts[1:])
