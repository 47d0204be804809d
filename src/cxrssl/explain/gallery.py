"""Picture grids: correctly classified positives with Grad-CAM (Fig. 4), and the errors (Fig. 5).

Which images: the test part of the probe only (never images the probe was fitted
on). Fig. 4 shows the most confidently correct positives; Fig. 5 the most confident
false positives and false negatives, each with its score, because the confident
mistakes are the ones a reviewer must look at first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrssl.data.imageset import ImageSet
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.model import LinearProbe, ProbeModel
from cxrssl.eval.multilabel import FindingsProbeResult, findings_task
from cxrssl.eval.probe import ProbeResult, ProbeSettings
from cxrssl.explain.gradcam import gradcam_maps, last_conv_block, overlay
from cxrssl.plotting import plot_text, plt, save_figure


@dataclass
class Pick:
    index: int  # row of the task
    score: float  # P(positive)
    caption: str


def pick_correct_positives(labels: list[str], test_rows, scores, positive: str, count: int, threshold: float = 0.5) -> list[Pick]:
    found = [(row, s) for row, s in zip(test_rows, scores) if labels[row] == positive and s >= threshold]
    found.sort(key=lambda item: -item[1])
    return [Pick(int(row), float(s), f"{positive}  p={s:.2f}") for row, s in found[:count]]


def pick_errors(labels: list[str], test_rows, scores, positive: str, count: int, threshold: float = 0.5) -> list[Pick]:
    """Up to count/2 confident false positives, then false negatives (more of one if the other is short)."""
    false_pos = sorted(((r, s) for r, s in zip(test_rows, scores) if labels[r] != positive and s >= threshold), key=lambda i: -i[1])
    false_neg = sorted(((r, s) for r, s in zip(test_rows, scores) if labels[r] == positive and s < threshold), key=lambda i: i[1])
    take_fp = min(len(false_pos), max(count // 2, count - len(false_neg)))
    chosen = [(r, s, "false positive") for r, s in false_pos[:take_fp]]
    chosen += [(r, s, "false negative") for r, s in false_neg[: count - take_fp]]
    return [Pick(int(r), float(s), f"{kind} ({labels[r]})  p={s:.2f}") for r, s, kind in chosen]


def heatmap_grid(model: ProbeModel, images: ImageSet, picks: list[Pick], out_path: str | Path, title: str, columns: int = 4, output: int = 0) -> Path:
    """Radiograph + Grad-CAM overlay per pick, captioned; a note instead of an empty figure when there is nothing to show."""
    rows = max(1, -(-len(picks) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows + 0.4), dpi=110, squeeze=False)
    if picks:
        pixels = images.batch([pick.index for pick in picks])
        heat = gradcam_maps(model, last_conv_block(model.backbone), pixels, output=output)
        for axis, pick, gray, cam in zip(axes.flat, picks, pixels.numpy(), heat):
            axis.imshow(overlay(gray, cam))
            axis.set_title(plot_text(pick.caption), fontsize=8)
    else:
        axes.flat[0].text(0.5, 0.5, "none in the test part", ha="center", va="center", fontsize=10)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle(plot_text(title), fontsize=11)
    return save_figure(figure, out_path)


def draw_galleries(
    spec: BackboneSpec,
    task: ImageSet,
    result: ProbeResult | FindingsProbeResult,
    gradcam_path: Path,
    errors_path: Path,
    count: int = 8,
    model: ProbeModel | None = None,
    finding: str | None = None,
) -> tuple[Path, Path]:
    """Fig. 4 (correct positives) and Fig. 5 (errors) for a result on its test part.

    ``model``: the network that made the scores (a fine-tuned one); by default the
    frozen backbone of ``spec`` with the probe of ``result`` folded on top. For a
    per-finding result, ``finding`` is the one explained (default: the best test AUC),
    on its labelled test images at its threshold.
    """
    if isinstance(result, FindingsProbeResult):
        return _finding_galleries(spec, task, result, gradcam_path, errors_path, count, model, finding)
    if model is None:
        probe = LinearProbe.from_pipeline(result.model, result.positive, result.negative, result.chosen_c)
        model = ProbeModel(spec.build_reader(), probe.folded()).eval()
    labels = task.manifest.labels
    correct = pick_correct_positives(labels, result.test_indices, result.test_scores, result.positive, count)
    errors = pick_errors(labels, result.test_indices, result.test_scores, result.positive, count)
    heatmap_grid(model, task, correct, gradcam_path, f"Grad-CAM, correctly classified {result.positive} (test part, most confident first)")
    heatmap_grid(model, task, errors, errors_path, "Errors: confident false positives, then false negatives (test part)")
    return Path(gradcam_path), Path(errors_path)


def chosen_finding(result: FindingsProbeResult, finding: str | None) -> str:
    """``finding``, checked to be scored, or the scored finding with the best test AUC."""
    fit = result.fit
    if finding is None:
        return max(fit.scored, key=lambda name: fit.metrics[name]["auc"])
    if finding not in fit.names:
        raise CxrsslError(f"--finding {finding!r}: not a finding of the task (its findings: {', '.join(fit.names)})")
    if finding not in fit.metrics:
        raise CxrsslError(f"--finding {finding!r}: was not scored ({fit.excluded.get(finding, 'left out')}); choose one of {', '.join(fit.scored)}")
    return finding


def _finding_galleries(spec, task: ImageSet, result: FindingsProbeResult, gradcam_path, errors_path, count, model, finding) -> tuple[Path, Path]:
    fit = result.fit
    name = chosen_finding(result, finding)
    outputs = [n for n in fit.names if n in fit.thresholds]  # the model's columns: every fitted finding, in the task's order
    if model is None:
        model = ProbeModel(spec.build_reader(), fit.model.folded()).eval()
    j = fit.names.index(name)
    truth = findings_task(task.manifest, ProbeSettings(findings=fit.names)).targets[:, j]
    labels = [name if value == 1 else f"no {name}" if value == 0 else "" for value in truth]
    labelled = [(row, score) for row, score in zip(result.test_indices, fit.test_scores[:, j]) if labels[row]]
    rows, scores = [row for row, _ in labelled], [score for _, score in labelled]
    threshold, output = fit.thresholds[name], outputs.index(name)
    correct = pick_correct_positives(labels, rows, scores, name, count, threshold)
    errors = pick_errors(labels, rows, scores, name, count, threshold)
    heatmap_grid(model, task, correct, gradcam_path, f"Grad-CAM of {name}, correctly classified (test part, most confident first)", output=output)
    heatmap_grid(model, task, errors, errors_path, f"{name}: confident false positives, then false negatives (test part)", output=output)
    return Path(gradcam_path), Path(errors_path)
