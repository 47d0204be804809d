import csv
import io

from cxrssl.report.tables import format_cell, paper_csv_table, paper_markdown_table


def _result(dataset, label, auc, low, high):
    metrics = {"accuracy": 0.8, "auc": auc, "sensitivity": 0.75, "specificity": 0.85, "f1": 0.7777}
    intervals = {name: [value - 0.05, value + 0.05] for name, value in metrics.items()}
    intervals["auc"] = [low, high]
    return {"dataset": dataset, "label": label, "metrics": metrics, "intervals_95": intervals, "chosen_c": 0.1, "n_test": 200}


def test_cells_are_percent_with_one_decimal_and_the_interval():
    assert format_cell(0.96612, (0.9401, 0.98)) == "96.6 [94.0–98.0]"
    assert format_cell(float("nan"), None) == "–"


def test_rows_are_grouped_by_dataset_in_first_seen_order():
    results = [
        _result("cell", "1 %, epoch 100", 0.966, 0.95, 0.98),
        _result("nih", "1 %, epoch 100", 0.791, 0.75, 0.83),
        _result("cell", "random init", 0.70, 0.65, 0.75),
    ]
    lines = paper_markdown_table(results).splitlines()
    assert lines[0].startswith("| dataset | pretext | ACC | AUC | SEN | SPE | F1 |")
    assert [line.split(" | ")[:2] for line in lines[2:]] == [["| cell", "1 %, epoch 100"], ["| cell", "random init"], ["| nih", "1 %, epoch 100"]]
    assert "| 96.6 [95.0–98.0] |" in lines[2] and "77.8 [72.8–82.8]" in lines[2]
    table = list(csv.DictReader(io.StringIO(paper_csv_table(results))))
    assert [(row["dataset"], row["pretext"], row["AUC"], row["AUC_low"]) for row in table] == [
        ("cell", "1 %, epoch 100", "96.6", "95.0"),
        ("cell", "random init", "70.0", "65.0"),
        ("nih", "1 %, epoch 100", "79.1", "75.0"),
    ]
