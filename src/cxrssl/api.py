"""The Python API: what the command line does, as functions to call from a notebook or a script.

``import cxrssl`` gives the stable names (see ``cxrssl.__all__`` and docs/api.md); each
verb of the command line parses its flags and calls one of the functions here.

A *backbone* argument is a checkpoint's ``.json`` (from ``pretrain``), ``"random"``,
``"imagenet"`` or a weights file, or a :class:`~cxrssl.eval.features.BackboneSpec`.
A *data* argument is a manifest CSV, a cache folder, or a ``Manifest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from cxrssl.eval.backbones import backbone_spec, named_backbones
from cxrssl.eval.features import DEFAULT_READOUT, BackboneSpec
from cxrssl.eval.probe import ProbeSettings


def _spec(backbone, image_size: int | None = None, arch: str | None = None, seed: int = 0, readout: str = DEFAULT_READOUT) -> BackboneSpec:
    if isinstance(backbone, BackboneSpec):
        spec = backbone
    elif str(backbone).endswith(".json"):
        spec = backbone_spec(checkpoint=backbone, arch=arch)
    else:
        spec = backbone_spec(init=str(backbone), arch=arch, image_size=image_size or 128, seed=seed)
    changes = {"readout": readout}
    if image_size:
        changes["image_size"] = image_size
    return replace(spec, **changes)


# --- pretraining --------------------------------------------------------------------------


def pretrain(data, out, config: str = "cpu", resume: bool = False, progress: bool = True, **settings):
    """Pretrain a backbone self-supervised on the images of ``data`` into the run folder ``out``.

    ``config``: a preset (``paper``, ``cpu``, ``demo``) or a YAML file; ``settings``
    override it (``epochs=5``, ``method="moco"``, ``method_settings={"queue_size": 256}``).
    Returns the run's result: ``.checkpoints`` (their ``.json`` files), ``.losses``.

    >>> run = cxrssl.pretrain("pool.csv", "runs/simclr", config="cpu", epochs=5)  # doctest: +SKIP
    """
    from cxrssl.config import pretrain_config
    from cxrssl.train import pretrain as train

    return train(data, out, pretrain_config(out, config, settings, resume), resume=resume, progress=progress)


# --- backbones and features ---------------------------------------------------------------


def load_backbone(source, arch: str | None = None) -> nn.Module:
    """A backbone as a plain ``torch.nn.Module`` (a torchvision ResNet with a one-channel stem,
    no classifier: it returns the pooled features), in eval mode, ready for your own code.

    ``source``: a checkpoint ``.json``, a folder of ``probe/finetune --save-model``,
    ``"random"``, ``"imagenet"`` or a weights file (then ``arch`` names its architecture).
    Its input: one-channel images scaled as :func:`cxrssl.models.normalize_pixels` does.

    >>> backbone = cxrssl.load_backbone("runs/simclr/checkpoints/epoch_0040.json")  # doctest: +SKIP
    >>> features = backbone(torch.zeros(2, 1, 128, 128))  # (2, 512)  # doctest: +SKIP
    """
    path = Path(str(source))
    if path.is_dir():
        from cxrssl.eval.model import load_model

        return load_model(path).backbone.eval()
    return _spec(source, arch=arch).build().eval()


def extract_features(
    backbone, data, image_size: int | None = None, readout: str = DEFAULT_READOUT, progress: bool = False
) -> tuple[np.ndarray, object]:
    """Frozen features of every readable image of ``data``: an (images, features) array and
    the manifest of those images (in the same order). ``readout``: ``last`` or ``blocks``.

    >>> features, manifest = cxrssl.extract_features("random", "task.csv", image_size=64)  # doctest: +SKIP
    """
    from cxrssl.data.images import open_image_set
    from cxrssl.eval.features import features_for

    spec = _spec(backbone, image_size=image_size, readout=readout)
    images = open_image_set(data, spec.image_size, progress=progress)
    return features_for(spec, images, progress=progress), images.manifest


# --- evaluation ---------------------------------------------------------------------------


def probe(
    backbone, task, settings: ProbeSettings | None = None, image_size: int | None = None, readout: str = DEFAULT_READOUT, progress: bool = False
):
    """The paper's evaluation: a logistic-regression probe of frozen features on ``task``'s
    patient-level split (per finding for a multi-label task). Returns a ``ProbeResult``
    (``.metrics``, ``.intervals``) or a ``FindingsProbeResult`` (``.fit.metrics`` per finding).

    >>> result = cxrssl.probe("runs/simclr/checkpoints/epoch_0040.json", "task.csv")  # doctest: +SKIP
    >>> result.metrics["auc"]  # doctest: +SKIP
    """
    from cxrssl.eval.evaluate import evaluate_backbone, load_task

    settings = settings or ProbeSettings()
    spec = _spec(backbone, image_size=image_size, readout=readout)
    return evaluate_backbone(spec, load_task(task, spec.image_size, progress=progress, settings=settings), settings, progress=progress)


def compare(
    backbones: dict,
    tasks: Sequence,
    out,
    settings=None,
    image_size: int | None = None,
    readout: str = DEFAULT_READOUT,
    overwrite: bool = False,
    progress: bool = False,
):
    """Does pretraining pay? Every backbone (``{"name": backbone}``) probed on identical
    patient-grouped folds and label budgets of every task, with paired differences
    against the reference (random initialisation by default) and their 95 % intervals.

    Writes compare.json/.csv/.md and the figures into ``out`` (the journal of finished
    folds lets a killed comparison resume); returns the ``Comparison`` (``.payload``).

    >>> found = cxrssl.compare({"simclr": "runs/simclr/checkpoints/epoch_0040.json", "random": "random"},
    ...                        ["task.csv"], "compare", CompareSettings(budgets=(25, None)))  # doctest: +SKIP
    """
    from cxrssl.eval.compare import CompareSettings, NamedBackbone

    pretrained = [b for b in backbones.values() if isinstance(b, BackboneSpec) or str(b).endswith(".json")]
    size = image_size or (_spec(pretrained[0]).image_size if pretrained else 128)  # the first checkpoint's size, as the command line
    named = [NamedBackbone(name, _spec(b, image_size=size, readout=readout)) for name, b in backbones.items()]
    return _compare_named(named, tasks, out, settings or CompareSettings(), overwrite=overwrite, progress=progress)


def _compare_named(backbones, tasks, out, settings, outputs=None, overwrite: bool = False, progress: bool = False):
    from contextlib import nullcontext

    from cxrssl.eval.compare import common_image_size, compare_backbones
    from cxrssl.eval.evaluate import dataset_name, load_task
    from cxrssl.report.compare import write_compare_outputs

    size = common_image_size(backbones)  # refused here, before any task is decoded
    loaded = [(dataset_name(task), load_task(task, size, progress=progress, settings=settings.probe)) for task in tasks]
    with outputs.writing() if outputs is not None else nullcontext():
        comparison = compare_backbones(backbones, loaded, out, settings, progress=progress, overwrite=overwrite)
        write_compare_outputs(comparison.payload, comparison.folder)
    return comparison


def compare_tasks(
    tasks,
    out,
    settings,
    outputs=None,
    checkpoints=(),
    inits=(),
    arch=None,
    image_size=None,
    seed=0,
    readout=DEFAULT_READOUT,
    overwrite=False,
    progress=True,
):
    """``cxrssl compare``: backbones given as ``[NAME=]CK.json`` checkpoints and initialisations."""
    backbones = named_backbones(checkpoints, inits, arch, image_size, seed, readout)
    return _compare_named(backbones, tasks, out, settings, outputs, overwrite=overwrite, progress=progress)


def sweep_checkpoints(
    run,
    task,
    out,
    settings: ProbeSettings | None = None,
    outputs=None,
    progress: bool = False,
    monitor=None,
    readout: str = DEFAULT_READOUT,
    budgets=None,
):
    """Probe every saved checkpoint of a pretraining run on ``task`` (the metric per epoch, beside
    the loss and the label-free monitors, and the checkpoint each monitor would keep); writes
    sweep.csv/json/png into ``out``. ``monitor``: a small labelled manifest for the k-NN monitor.
    ``budgets``: a ``CompareSettings``; every checkpoint is also compared at its label budgets
    and folds, and sweep_budgets.csv says per budget which checkpoint each monitor keeps.

    >>> found = cxrssl.sweep_checkpoints("runs/simclr", "task.csv", "sweep", budgets=cxrssl.CompareSettings((25, None)))  # doctest: +SKIP
    >>> found.budgets["25"]["choices"]["rankme"]["auc_lost"]  # doctest: +SKIP
    """
    from contextlib import nullcontext

    from cxrssl.eval.sweep import sweep_run
    from cxrssl.report.sweep import write_sweep_outputs

    with outputs.writing() if outputs is not None else nullcontext():
        found = sweep_run(run, task, settings or ProbeSettings(), progress=progress, monitor=monitor, readout=readout, budgets=budgets, journal=out)
        write_sweep_outputs(found, out)
    return found


@dataclass
class FinetuneDone:
    result: object  # ProbeResult-shaped, for predictions and tables
    fit: object  # FinetuneFit: the chosen epoch, validation curve, the network
    payload: dict  # what the result JSON holds
    per_finding: bool
    saved: Path | None = None


def finetune(backbone, task, output, settings: ProbeSettings | None = None, finetune_settings=None, progress: bool = False) -> FinetuneDone:
    """Fine-tune the backbone end to end with a linear head on ``task``'s split (the probe's
    rules), writing the result JSON ``output`` and its predictions; resumable.

    >>> done = cxrssl.finetune("runs/simclr/checkpoints/epoch_0040.json", "task.csv", "ft.json")  # doctest: +SKIP
    """
    from cxrssl.eval.finetune import FinetuneSettings
    from cxrssl.outputs import Outputs

    settings = settings or ProbeSettings()
    finetune_settings = finetune_settings or FinetuneSettings()
    output = Path(output)
    outputs = Outputs("finetune", {"api": str(output)}, files=[output, output.with_name(output.stem + "_predictions.csv")], overwrite=True)
    return finetune_task(_spec(backbone), task, settings, finetune_settings, output, outputs.check(), progress=progress)


def finetune_task(
    spec, task_data, settings, finetune_settings, output, outputs, dataset=None, label=None, gradcam=(), finding=None, save_model=None, progress=True
) -> FinetuneDone:
    """``cxrssl finetune``: fine-tune, write the result, its predictions, and optionally the
    Grad-CAM figures of the fine-tuned network and the saved model."""
    from cxrssl.eval.evaluate import finetune_backbone, finetune_findings_backbone, load_task, write_predictions
    from cxrssl.eval.multilabel import require_finding, wants_findings
    from cxrssl.fileio import atomic_write_json

    output = Path(output)
    task = load_task(task_data, spec.image_size, progress=progress, settings=settings)
    require_finding(task.manifest, settings, finding)  # before the fine-tune, not after it
    per_finding = wants_findings(task.manifest, settings)
    run = finetune_findings_backbone if per_finding else finetune_backbone
    result, fit, payload = run(spec, task, task_data, settings, finetune_settings, output, dataset, label, progress=progress)
    probe = (
        fit.findings_probe([n for n in result.fit.names if n in result.fit.thresholds])
        if per_finding
        else fit.probe(result.positive, result.negative)
    )
    saved = None
    with outputs.writing():
        atomic_write_json(output, payload)
        write_predictions(result, task, output.with_name(output.stem + "_predictions.csv"))
        if gradcam:
            from cxrssl.eval.model import ProbeModel
            from cxrssl.explain.gallery import draw_galleries

            network = ProbeModel(fit.model.backbone, probe.folded()).eval()
            draw_galleries(spec, task, result, Path(gradcam[0]), Path(gradcam[1]), model=network, finding=finding)
        if save_model:
            from cxrssl.eval.model import save_model as save

            metrics = result.fit.metrics if per_finding else result.metrics
            saved = save(save_model, fit.model.backbone, probe, spec.arch, spec.image_size, f"fine-tuned from {spec.description}", metrics)
    return FinetuneDone(result, fit, payload, per_finding, saved)


# --- explanations -----------------------------------------------------------------------------


def shown_class(result, finding: str | None) -> str:
    """The class a Grad-CAM gallery shows: the positive class, or the finding explained."""
    from cxrssl.explain.gallery import chosen_finding

    return chosen_finding(result, finding) if hasattr(result, "fit") else result.positive


def gradcam_figures(spec, task_data, settings, output, errors, outputs, count: int = 8, finding=None, progress: bool = True) -> str:
    """``cxrssl gradcam``: probe, then Grad-CAM of correct positives and of errors on the test part;
    returns the class shown."""
    from cxrssl.eval.evaluate import evaluate_backbone, load_task
    from cxrssl.eval.multilabel import require_finding
    from cxrssl.explain.gallery import draw_galleries

    task = load_task(task_data, spec.image_size, progress=progress, settings=settings)
    require_finding(task.manifest, settings, finding)
    result = evaluate_backbone(spec, task, settings, progress=progress)
    with outputs.writing():
        draw_galleries(spec, task, result, Path(output), Path(errors), count=count, finding=finding)
    return shown_class(result, finding)


def tsne_figure(checkpoints, task_data, output, outputs, random: bool = False, finding=None, seed: int = 0, progress: bool = True) -> tuple[int, int]:
    """``cxrssl tsne``: one t-SNE panel per checkpoint (and the random initialisation);
    returns (panels, images)."""
    from cxrssl.errors import CxrsslError
    from cxrssl.eval.evaluate import load_task
    from cxrssl.explain.tsne import tsne_panels

    specs = [BackboneSpec.from_checkpoint(path) for path in checkpoints]
    if len({spec.image_size for spec in specs}) > 1:
        raise CxrsslError("the checkpoints were trained at different image sizes; give checkpoints of one run (or one image size)")
    if random:
        specs.insert(0, BackboneSpec.random(specs[0].arch, specs[0].image_size, seed))
    settings = ProbeSettings(seed=seed, findings=(finding,)) if finding else ProbeSettings()
    task = load_task(task_data, specs[0].image_size, progress=progress, settings=settings)
    with outputs.writing():
        tsne_panels(specs, task, output, seed=seed, progress=progress, finding=finding)
    return len(specs), len(task)


def predict(model, images: Sequence, heatmaps=None, finding: str | None = None):
    """Probabilities and classes of ``images`` (paths) from a saved model folder; returns
    (predictions, unreadable (path, reason) pairs).

    >>> predictions, unreadable = cxrssl.predict("model", ["film.png"])  # doctest: +SKIP
    """
    from cxrssl.explain.predict import predict_images

    return predict_images(model, list(images), heatmaps=heatmaps, finding=finding)
