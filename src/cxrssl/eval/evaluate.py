"""From a backbone and a labelled task to a result a reviewer can rerun: the glue the verbs share."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxrssl.data.images import manifest_of, open_data, open_image_set
from cxrssl.data.imageset import ImageSet
from cxrssl.data.manifest import Manifest
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec, features_for
from cxrssl.eval.finetune import finetune
from cxrssl.eval.multilabel import (
    FindingsProbeResult,
    findings_result,
    findings_split,
    findings_task,
    finetune_findings,
    run_findings_probe,
    wants_findings,
)
from cxrssl.eval.probe import ProbeResult, ProbeSettings, binary_targets, probe_split, run_probe
from cxrssl.fileio import atomic_write_text, csv_text


def load_task(data: str | Path | Manifest, image_size: int, progress: bool = True, settings: ProbeSettings = ProbeSettings()) -> ImageSet:
    """The readable, labelled images of a task (manifest or cache), decoded once.

    Labelled means a class in ``label``, or, for a task evaluated per finding
    (``eval.multilabel.wants_findings``), at least one labelled finding.
    """
    source = open_data(data)
    manifest = manifest_of(source)
    if wants_findings(manifest, settings):
        labelled = list(findings_task(manifest, settings).labelled_rows())
        what = "a labelled finding"
    else:
        labelled = [i for i, row in enumerate(manifest.rows) if row.label]
        what = "a label"
    if not labelled:
        raise CxrsslError(f"{manifest.name}: no row has {what}; the probe needs a labelled task manifest")
    images = open_image_set(source, image_size, progress, rows=labelled)
    if images.unreadable:
        first_path, reason = images.unreadable[0]
        print(f"warning: skipped {len(images.unreadable)} unreadable image(s) of {manifest.name}, e.g. {first_path} ({reason})")
    return images


def dataset_name(data: str | Path) -> str:
    """A short name for a task: the manifest's stem, or its folder's name for a generic stem."""
    path = Path(data)
    if path.is_dir():  # a cache folder
        return path.name.removesuffix(".cache")
    return path.parent.name if path.stem in ("labels", "manifest", "split") else path.stem


def pretext_label(spec: BackboneSpec) -> str:
    """The Table III row name: the pretext share of patients and the epoch, or random init."""
    if spec.checkpoint is None:
        return spec.init_label
    fraction = spec.pretext_fraction
    share = f"{100 * fraction:g} %" if fraction is not None and math.isfinite(fraction) else "?"
    return f"{share}, epoch {spec.epoch}"


def evaluate_backbone(
    spec: BackboneSpec, task: ImageSet, settings: ProbeSettings = ProbeSettings(), progress: bool = True
) -> ProbeResult | FindingsProbeResult:
    """Frozen features (cached) -> the probe protocol of ``eval.probe``, or of ``eval.multilabel`` per finding."""
    features = features_for(spec, task, progress=progress)
    manifest = task.manifest
    if wants_findings(manifest, settings):
        return run_findings_probe(features, findings_task(manifest, settings), settings)
    return run_probe(features, manifest.labels, manifest.patient_keys, manifest.splits, settings)


def result_payload(
    spec: BackboneSpec, task_source: str | Path, result: ProbeResult | FindingsProbeResult, dataset: str | None = None, label: str | None = None
) -> dict:
    """Everything ``result.json`` holds: what was probed, on what, and the numbers (per finding for a FindingsProbeResult)."""
    return {
        "backbone": spec.description,
        "arch": spec.arch,
        "epoch": spec.epoch,
        "pretext_fraction": spec.pretext_fraction,
        "image_size": spec.image_size,
        "task": str(task_source),
        "dataset": dataset or dataset_name(task_source),
        "label": label or pretext_label(spec),
        **result.to_dict(),
    }


def write_predictions(result: ProbeResult | FindingsProbeResult, task: ImageSet, out_path: str | Path) -> Path:
    """Per-image test predictions, for review: path, patient, label, score, prediction (per finding: truth, P, predicted)."""
    if isinstance(result, FindingsProbeResult):
        return _write_finding_predictions(result, task, out_path)
    lines = []
    for row_index, score in zip(result.test_indices, result.test_scores):
        row = task.manifest.rows[row_index]
        predicted = result.positive if score >= 0.5 else result.negative
        lines.append([row.path, row.patient_id, row.label, f"{score:.6f}", predicted, int(predicted == row.label)])
    return atomic_write_text(out_path, csv_text(["path", "patient_id", "label", f"p_{result.positive}", "predicted", "correct"], lines))


def _write_finding_predictions(result: FindingsProbeResult, task: ImageSet, out_path: str | Path) -> Path:
    fit = result.fit
    findings = findings_task(task.manifest, ProbeSettings(findings=fit.names))
    fitted = [name for name in fit.names if name in fit.thresholds]
    lines = []
    for position, row_index in enumerate(result.test_indices):
        row = task.manifest.rows[row_index]
        cells = []
        for name in fitted:
            j = fit.names.index(name)
            truth, score = findings.targets[row_index, j], fit.test_scores[position, j]
            cells += ["" if np.isnan(truth) else int(truth), f"{score:.6f}", int(score >= fit.thresholds[name])]
        lines.append([row.path, row.patient_id, *cells])
    header = ["path", "patient_id", *(f"{kind}_{name}" for name in fitted for kind in ("true", "p", "predicted"))]
    return atomic_write_text(out_path, csv_text(header, lines))


def finetune_findings_backbone(
    spec, task: ImageSet, task_source, settings: ProbeSettings, finetune_settings, output, dataset=None, label=None, progress=True
):
    """``finetune_backbone`` for a task evaluated per finding: one output per finding, the same split and tables as its probe."""
    findings = findings_task(task.manifest, settings)
    train, test, source, purged = findings_split(findings, settings.seed, settings.split_policy)
    output = Path(output)
    fit, tuned = finetune_findings(
        spec,
        task,
        findings,
        train,
        test,
        replace(finetune_settings, seed=settings.seed),
        settings.min_patients,
        output.with_name(output.stem + "_state"),
        progress,
    )
    try:
        result = findings_result(findings, fit, train, test, source, purged, settings)
    except CxrsslError as error:
        raise CxrsslError(f"{task_source}: {error}") from None
    payload = result_payload(spec, task_source, result, dataset, label or f"{pretext_label(spec)}, fine-tuned")
    payload.update(
        {
            "method": "finetune",
            "chosen_epoch": tuned.chosen_epoch,
            "val_auc": tuned.val_auc,
            "n_fit": tuned.n_fit,
            "n_val": tuned.n_val,
            "finetune": finetune_settings.to_dict(),
        }
    )
    return result, tuned, payload


def finetune_backbone(
    spec: BackboneSpec,
    task: ImageSet,
    task_source: str | Path,
    settings: ProbeSettings,
    finetune_settings,
    output: str | Path,
    dataset: str | None = None,
    label: str | None = None,
    progress: bool = True,
):
    """Fine-tune on the probe's split (same rules, same output form); resumable from ``<output stem>_state/``.

    Returns the ProbeResult-shaped result (for predictions and tables), the FinetuneFit
    and the payload that ``finetune.json`` holds.
    """
    manifest = task.manifest
    targets, positive, negative = binary_targets(manifest.labels, settings.positive)
    split = probe_split(manifest.patient_keys, manifest.labels, manifest.splits, settings.seed, settings.split_policy)
    try:
        split.require_both_classes(targets, positive, negative)
    except CxrsslError as error:
        raise CxrsslError(f"{task_source}: {error}") from None
    output = Path(output)
    fit = finetune(
        spec,
        task,
        targets,
        manifest.patient_keys,
        split.train,
        split.test,
        replace(finetune_settings, seed=settings.seed),
        settings.bootstrap,
        output.with_name(output.stem + "_state"),
        progress,
    )
    result = ProbeResult(
        positive,
        negative,
        None,
        {},
        fit.metrics,
        fit.intervals,
        fit.confusion,
        len(split.train),
        len(split.test),
        split.origin,
        (split.purged_images, split.purged_patients),
        fit.test_scores,
        split.test,
    )
    payload = result_payload(spec, task_source, result, dataset, label or f"{pretext_label(spec)}, fine-tuned")
    payload.update(
        {
            "method": "finetune",
            "chosen_epoch": fit.chosen_epoch,
            "val_auc": fit.val_auc,
            "n_fit": fit.n_fit,
            "n_val": fit.n_val,
            "finetune": finetune_settings.to_dict(),
        }
    )
    return result, fit, payload
