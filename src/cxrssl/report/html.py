"""One self-contained HTML page per run: config, loss, the paired comparisons of
``cxrssl compare`` when given, Table III, per-checkpoint metric, t-SNE, Grad-CAM and error
galleries, for one or more labelled tasks.

Every figure is a PNG embedded as a data URI, so the page is a single file that can be
mailed or archived. A few lines of script mark any figure that failed to load (and
let the browser test count them); the page reads fine without script.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrssl import __version__
from cxrssl.data.images import manifest_of, open_data
from cxrssl.errors import CxrsslError
from cxrssl.eval.evaluate import load_task
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.metrics import METRICS
from cxrssl.eval.multilabel import MACRO, FindingsProbeResult, require_finding
from cxrssl.eval.probe import ProbeSettings
from cxrssl.eval.sweep import sweep_run
from cxrssl.explain.gallery import chosen_finding, draw_galleries
from cxrssl.explain.tsne import tsne_panels
from cxrssl.fileio import atomic_write_text
from cxrssl.report.plots import plot_label_efficiency, plot_loss_curve, plot_paired_differences
from cxrssl.report.sweep import plot_sweep_figure
from cxrssl.report.tables import HEADERS, MEAN_AUC, estimate_cell, finding_auc_cell, format_cell, metric_cells, p_value_cell
from cxrssl.run import RunFolder

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; } figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; } th:first-child, td:first-child { text-align: left; }
.config td { text-align: left; } .broken { outline: 3px solid #c00; }
"""
SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  images.forEach(function (img) { if (!(img.complete && img.naturalWidth > 0)) img.classList.add('broken'); });
  document.body.setAttribute('data-figures-loaded', loaded.length + '/' + images.length);
});
"""


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _table(header: list[str], rows: list[list[str]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _even_picks(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[i] for i in sorted({round(x) for x in np.linspace(0, len(items) - 1, count)})]


def _findings_table(rows: list[dict], dataset: str) -> str:
    """The per-finding table of probe results: AUC per finding and the macro mean, CheXpert-style."""
    findings = list(dict.fromkeys(entry["finding"] for row in rows for entry in row["findings"]))
    cells = [
        [
            dataset,
            row["label"],
            *(finding_auc_cell(row, name) for name in findings),
            format_cell(row["macro_auc"], row.get("macro_auc_95")),
            row["n_test"],
        ]
        for row in rows
    ]
    return _table(["dataset", "pretext", *findings, MEAN_AUC, "test images"], cells, "table3")


def _task_section(
    run: RunFolder, task_path: str, workdir: Path, index: int, settings: ProbeSettings, progress: bool, finding: str | None = None
) -> str:
    image_size = BackboneSpec.from_checkpoint(run.saved_checkpoints()[-1]).image_size
    task = load_task(task_path, image_size, progress, settings)
    sweep = sweep_run(run.root, task_path, settings, progress, task=task)
    sweep_figure = plot_sweep_figure(sweep, workdir / f"sweep_{index}.png")
    rows, final, result = sweep.rows, sweep.specs[-1], sweep.results[-1]
    dataset = rows[0]["dataset"]
    per_finding = isinstance(result, FindingsProbeResult)
    if per_finding:
        shown = chosen_finding(result, finding)
        table3 = _findings_table([rows[-1], rows[0]], dataset)
        left_out = "; ".join(f"{html.escape(name)} ({html.escape(why)})" for name, why in rows[-1]["excluded"].items())
        heading = "<h3>Per finding: final checkpoint against its random initialisation</h3>"
        caption = (
            f'<p class="meta">AUC in percent, 95 % bootstrap intervals over test patients; {MEAN_AUC}: the macro mean over the findings scored.'
            + (f" Left out: {left_out}." if left_out else "")
            + "</p>"
        )
        counts = {entry["finding"]: entry["train_positive_patients"] + entry["test_positive_patients"] for entry in rows[-1]["findings"]}
        what = f"positive patients per finding: {', '.join(f'{html.escape(k)} {v}' for k, v in counts.items())}"
    else:
        shown = result.positive
        table3 = _table(
            ["dataset", "pretext", *(HEADERS[m] for m in METRICS), "C", "test images"],
            [[dataset, row["label"], *metric_cells(row), row["chosen_c"], row["n_test"]] for row in (rows[-1], rows[0])],
            "table3",
        )
        heading = "<h3>Table III: final checkpoint against its random initialisation</h3>"
        caption = '<p class="meta">Percent, 95 % bootstrap intervals over test patients.</p>'
        what = "; ".join(f"{html.escape(k)} {v}" for k, v in sorted(task.manifest.label_counts().items())) + f"; positive class {html.escape(shown)}"
    per_epoch = _table(
        ["epoch", "ACC", "AUC", "C"], [[row["epoch"], *(metric_cells(row)[:2]), row.get("chosen_c", "per finding")] for row in rows], "sweep"
    )
    tsne, _ = tsne_panels(
        _even_picks(sweep.specs[1:], 4),
        task,
        workdir / f"tsne_{index}.png",
        seed=settings.seed,
        progress=progress,
        finding=shown if per_finding else None,
    )
    gradcam, errors = draw_galleries(
        final, task, result, workdir / f"gradcam_{index}.png", workdir / f"errors_{index}.png", finding=shown if per_finding else None
    )
    return "\n".join(
        [
            f"<h2>{html.escape(dataset)}</h2>",
            f'<p class="meta">{html.escape(str(task_path))}: {len(task)} labelled images, {len(set(task.manifest.patient_keys))} patients; '
            f"split: {html.escape(rows[-1]['split_source'])}; {what}.</p>",
            heading,
            table3,
            caption,
            "<h3>Downstream probe per checkpoint</h3>" + ('<p class="meta">ACC and AUC: means over the findings scored.</p>' if per_finding else ""),
            _figure(
                sweep_figure,
                "Pretext loss per epoch (left); probe ACC and AUC per saved checkpoint, 0 = random init (middle); label-free monitors per epoch, when the run logged them (right)",
            ),
            per_epoch,
            "<h3>t-SNE of frozen features</h3>",
            _figure(tsne, f"t-SNE per checkpoint, coloured by {'the finding ' + shown if per_finding else 'class'} (all labelled images)"),
            "<h3>Grad-CAM</h3>",
            _figure(gradcam, f"Correctly classified {shown} test images, epoch {final.epoch}: where the probe's evidence comes from"),
            "<h3>Errors for review</h3>",
            _figure(errors, f"Most confident false positives and false negatives of the test part, with P({shown if per_finding else 'positive'})"),
        ]
    )


def _compare_section(payload: dict, workdir: Path, index: int) -> str:
    """A ``cxrssl compare`` result: the label-efficiency curve, the paired differences and the table."""
    efficiency = plot_label_efficiency(payload, workdir / f"compare_efficiency_{index}.png")
    differences = plot_paired_differences(payload, workdir / f"compare_differences_{index}.png")
    reference = payload["reference"]
    blocks = [
        "<h2>Does pretraining pay? Paired comparison at label budgets</h2>",
        _figure(
            efficiency,
            "Probe AUC against labelled patients per class (log axis; for a task evaluated per finding: its macro mean AUC against labelled "
            "patients, over the findings scored at each budget, listed below), mean over folds with its 95 % interval, per backbone",
        ),
        _figure(
            differences, f"AUC minus the reference ({reference}) per budget, paired over the same folds and label draws, 95 % interval; 0 = no gain"
        ),
    ]
    for task in payload["tasks"]:
        per_finding = bool(task.get("findings"))
        rows = [
            [
                row["budget"],
                row["backbone"],
                *(estimate_cell(row["metrics"][m]) for m in ("auc", "accuracy")),
                estimate_cell((row["difference"] or {}).get("auc"), signed=True) if row["difference"] else "(reference)",
                p_value_cell((row["difference"] or {}).get("auc")),
                f"{row['train_images']:.0f}",
            ]
            for row in task["rows"]
        ]
        blocks += [
            f"<h3>{html.escape(task['task'])}</h3>",
            f'<p class="meta">{html.escape(str(task["images"]))} images of {html.escape(str(task["patients"]))} patients, '
            + (f"{len(task['findings'])} findings (rows: their {MEAN_AUC})" if per_finding else f"positive class {html.escape(task['positive'])}")
            + f"; {html.escape(task['design_text'])}. Intervals and p: {html.escape(task['statistic'])}.</p>",
            _table(
                ["labelled patients" if per_finding else "labels/class", "backbone", "AUC", "ACC", f"Δ AUC vs {reference}", "p", "training images"],
                rows,
                "compare",
            ),
        ]
        if per_finding:
            blocks += [
                f"<h4>{html.escape(task['task'])} per finding: AUC, Δ vs {html.escape(reference)} [paired 95 % interval]</h4>",
                _compare_findings_table(task),
            ]
    return "\n".join(blocks)


def _compare_findings_table(task: dict) -> str:
    """Per budget × backbone, each finding's AUC and its paired difference to the reference; '–' where a finding was left out."""
    findings = task["findings"]
    by_key = {(r["mode"], r["budget"], r["backbone"], r["finding"]): r for r in task["finding_rows"] + task["rows"]}
    cells = []
    for row in task["rows"]:
        line = [row["budget"], row["backbone"]]
        for name in [*findings, MACRO]:
            found = by_key.get((row["mode"], row["budget"], row["backbone"], name))
            text = "–" if found is None else estimate_cell(found["metrics"]["auc"])
            if found is not None and found["difference"]:
                text += f" (Δ {estimate_cell(found['difference']['auc'], signed=True)})"
            line.append(text)
        cells.append(line)
    return _table(["labelled patients", "backbone", *findings, MEAN_AUC], cells, "compare")


def build_report(
    run_dir: str | Path,
    tasks: list[str],
    out_path: str | Path,
    settings: ProbeSettings = ProbeSettings(),
    progress: bool = True,
    compares: list[dict] = (),
    finding: str | None = None,
) -> Path:
    """Write the report of ``run_dir`` evaluated on each labelled task (see the module docstring)."""
    run = RunFolder(run_dir)
    if not run.saved_checkpoints() or not run.config.is_file():
        raise CxrsslError(f"{run.root}: no checkpoints or config.json; pass the folder of a `cxrssl pretrain` run")
    if not tasks:
        raise CxrsslError("give at least one labelled --task manifest to evaluate the run on")
    for task in tasks:  # --finding is checked on every task before any work
        require_finding(manifest_of(open_data(task)), settings, finding)
    config = run.read_config()
    status = run.read_status()
    log = run.read_log()
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        loss = plot_loss_curve([int(e["epoch"]) for e in log], [float(e["loss"]) for e in log], workdir / "loss.png")
        sections = [_compare_section(payload, workdir, i) for i, payload in enumerate(compares)]
        sections += [_task_section(run, task, workdir, i, settings, progress, finding) for i, task in enumerate(tasks)]
        settings = [[key, json.dumps(value) if isinstance(value, (dict, list)) else value] for key, value in config["pretrain"].items()]
        data = [
            [key, config.get(key, "")]
            for key in ("manifest", "images_used", "patients_used", "unreadable_images", "pixels_from", "processes", "device")
        ]
        page = "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>cxrssl report: {html.escape(run.root.name)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
                f"<h1>cxrssl report: {html.escape(run.root.name)}</h1>",
                f'<p class="meta">run {html.escape(str(run.root))}, status {html.escape(str(status.get("state", "?")))}, '
                f"{html.escape(str(status.get('epochs_done', len(log))))} of {html.escape(str(status.get('epochs', '?')))} epochs; made {time.strftime('%Y-%m-%d %H:%M')} "
                f"by cxrssl {__version__}.</p>",
                "<h2>Pretraining</h2>",
                _table(["setting", "value"], settings, "config"),
                _table(["data", "value"], data, "config"),
                _figure(loss, "Pretext loss per epoch"),
                *sections,
                "</body></html>",
            ]
        )
        return atomic_write_text(out_path, page)
