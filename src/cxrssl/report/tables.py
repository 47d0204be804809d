"""Table III-style results: ACC, AUC, SEN, SPE, F1 in percent, with 95 % CIs."""

from __future__ import annotations

import csv
import io
import math

from cxrssl.eval.metrics import METRICS

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


def _markdown(lead_headers: list[str], rows: list[tuple[list[str], dict]]) -> str:
    """A markdown table: the leading cells of each row, then its metrics, C and test size."""
    lines = [
        "| " + " | ".join(lead_headers) + " | " + " | ".join(HEADERS[m] for m in METRICS) + " | C | test images |",
        "|" + "---|" * len(lead_headers) + "---|" * (len(METRICS) + 2),
    ]
    for lead, result in rows:
        lines.append("| " + " | ".join([*lead, *metric_cells(result)]) + f" | {result['chosen_c']} | {result['n_test']} |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """``rows`` are (row label, ProbeResult.to_dict()) pairs."""
    return _markdown(["model"], [([label], result) for label, result in rows])


def csv_table(rows: list[tuple[str, dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["model"]
    for metric in METRICS:
        header += [HEADERS[metric], f"{HEADERS[metric]}_low", f"{HEADERS[metric]}_high"]
    writer.writerow(header + ["C", "n_test"])
    for label, result in rows:
        line = [label]
        for metric in METRICS:
            low, high = result.get("intervals_95", {}).get(metric, (math.nan, math.nan))
            line += [_percent(result["metrics"][metric]), _percent(low), _percent(high)]
        writer.writerow(line + [result["chosen_c"], result["n_test"]])
    return buffer.getvalue()


def paper_table_rows(results: list[dict]) -> list[tuple[str, str, dict]]:
    """(dataset, pretext, result) rows in Table III order: by dataset as first seen, then as given."""
    order = list(dict.fromkeys(result.get("dataset", "?") for result in results))
    return [(dataset, result.get("label", "?"), result) for dataset in order for result in results if result.get("dataset", "?") == dataset]


def paper_markdown_table(results: list[dict]) -> str:
    """Table III: rows = dataset × pretext (fraction and epoch, or a run label), percent with 95 % CIs."""
    return _markdown(["dataset", "pretext"], [([dataset, pretext], result) for dataset, pretext, result in paper_table_rows(results)])


def paper_csv_table(results: list[dict]) -> str:
    rows = paper_table_rows(results)
    body = csv_table([(pretext, result) for _, pretext, result in rows]).splitlines()
    lines = ["dataset," + body[0].replace("model", "pretext", 1)]
    lines += [f"{_csv_field(dataset)},{line}" for (dataset, _, _), line in zip(rows, body[1:])]
    return "\n".join(lines) + "\n"


def _csv_field(text: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()
