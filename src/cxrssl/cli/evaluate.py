"""Verbs that evaluate backbones: extract, probe, finetune, compare, sweep."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cxrssl.cli.common import (
    DEFAULT_LABELS,
    add_backbone_flags,
    add_budget_flags,
    add_findings_flags,
    add_finetune_flags,
    add_overwrite_flag,
    add_readout_flag,
    add_result_flags,
    add_split_policy_flag,
    add_sweep_flags,
    architectures,
    backbone_spec,
    bootstrap_count,
    budgets,
    checkpoint_inputs,
    data_inputs,
    figure_path,
    finetune_settings,
    fold_count,
    output_file,
    outputs_for,
    positive_int,
    probe_settings,
    seed_value,
    sibling,
)


def register(verbs) -> None:
    for add in (_extract, _probe, _finetune, _compare, _sweep):
        add(verbs)


def _backbone_inputs(args) -> list:
    init = getattr(args, "init", None)
    return [*checkpoint_inputs(args.checkpoint), *(checkpoint_inputs(init) if init not in (None, "random", "imagenet") else [])]


# --- extract ---------------------------------------------------------------------------------


def _extract(verbs) -> None:
    verb = verbs.add_parser("extract", help="frozen features (global-average-pooled last layer) of a manifest's images")
    add_backbone_flags(verb)
    verb.add_argument("--data", required=True, help="manifest CSV or cache folder")
    verb.add_argument(
        "-o", "--output", type=output_file("features file", ".npz"), default="features.npz", help="npz with features, path, patient_id, label, split"
    )
    verb.add_argument("--no-cache", action="store_true", help="recompute even if the feature cache has them")
    add_readout_flag(verb)
    add_overwrite_flag(verb)
    verb.set_defaults(handler=extract)


def extract(args) -> None:
    from cxrssl.data.images import open_image_set
    from cxrssl.eval.features import features_for, save_features

    outputs = outputs_for(args, files=[args.output], inputs=[*data_inputs(args.data), *_backbone_inputs(args)])
    spec = replace(backbone_spec(args), readout=args.readout)
    images = open_image_set(args.data, spec.image_size, progress=not args.quiet)
    features = features_for(spec, images, progress=not args.quiet, use_cache=not args.no_cache)
    with outputs.writing():
        output = save_features(args.output, features, images.manifest)
    skipped = f"; {len(images.unreadable)} unreadable image(s) skipped" if images.unreadable else ""
    print(f"wrote {output}: {features.shape[0]} x {features.shape[1]} features of {spec.description}{skipped}")


# --- probe -----------------------------------------------------------------------------------


def _probe(verbs) -> None:
    verb = verbs.add_parser("probe", help="logistic-regression probe of frozen features on a labelled manifest")
    add_result_flags(verb, "probe.json", "pretext fraction and epoch, or 'random init'")
    add_readout_flag(verb)
    verb.add_argument("--folds", type=fold_count, default=5, help="cross-validation folds for choosing C (default 5)")
    verb.add_argument("--save-model", metavar="DIR", help="also save backbone + probe for `cxrssl predict` (safetensors + JSON)")
    verb.set_defaults(handler=probe)


def probe(args) -> None:
    from cxrssl.eval.evaluate import evaluate_backbone, load_task, result_payload, write_predictions
    from cxrssl.eval.model import save_probe_model
    from cxrssl.eval.multilabel import FindingsProbeResult
    from cxrssl.fileio import atomic_write_json
    from cxrssl.report.tables import findings_markdown_table, paper_markdown_table

    output, predictions = Path(args.output), sibling(args.output, "_predictions.csv")
    inputs = [*data_inputs(args.task), *_backbone_inputs(args)]
    outputs = outputs_for(args, files=[output, predictions], folders=[args.save_model] if args.save_model else [], inputs=inputs)
    spec = backbone_spec(args)
    settings = probe_settings(args)
    task = load_task(args.task, spec.image_size, progress=not args.quiet, settings=settings)
    result = evaluate_backbone(spec, task, settings, progress=not args.quiet)
    payload = result_payload(spec, args.task, result, args.dataset, args.label)
    with outputs.writing():
        atomic_write_json(output, payload)
        write_predictions(result, task, predictions)
        saved = save_probe_model(args.save_model, spec, result) if args.save_model else None
    if isinstance(result, FindingsProbeResult):
        print(findings_markdown_table([payload]))
    else:
        print(paper_markdown_table([payload]))
        print(f"chosen C {result.chosen_c} (cross-validated AUC {result.cv_auc[result.chosen_c]:.3f}); confusion {result.confusion}")
    if result.purged[0]:
        print(f"--split-policy purge: dropped {result.purged[0]} training image(s) of {result.purged[1]} patient(s) who are also in the test part")
    print(f"wrote {output} and {predictions}")
    if saved:
        print(f"saved the backbone and probe to {saved.parent} (use: cxrssl predict --model {saved.parent} IMAGE...)")


# --- finetune --------------------------------------------------------------------------------


def _finetune(verbs) -> None:
    verb = verbs.add_parser("finetune", help="train backbone + linear head end to end on a labelled task; output as `probe`")
    add_result_flags(verb, "finetune.json", "the backbone and 'fine-tuned'")
    verb.add_argument(
        "--gradcam", type=figure_path, metavar="FIG.png", help="also draw Grad-CAM of the fine-tuned network on test images (+ FIG_errors.png)"
    )
    verb.add_argument("--finding", help="multi-label task: the finding --gradcam explains (default: the best-scored)")
    verb.add_argument("--save-model", metavar="DIR", help="save the fine-tuned network for `cxrssl predict` (safetensors + JSON)")
    add_finetune_flags(verb)
    verb.set_defaults(handler=finetune)


def finetune(args) -> None:
    from cxrssl.api import finetune_task, shown_class
    from cxrssl.report.tables import findings_markdown_table, paper_markdown_table

    output, predictions = Path(args.output), sibling(args.output, "_predictions.csv")
    figures = [Path(args.gradcam), sibling(args.gradcam, "_errors.png")] if args.gradcam else []
    inputs = [*data_inputs(args.task), *_backbone_inputs(args)]
    outputs = outputs_for(args, files=[output, predictions, *figures], folders=[args.save_model] if args.save_model else [], inputs=inputs)
    spec = backbone_spec(args)
    done = finetune_task(
        spec,
        args.task,
        probe_settings(args),
        finetune_settings(args),
        output,
        outputs,
        dataset=args.dataset,
        label=args.label,
        gradcam=figures,
        finding=args.finding,
        save_model=args.save_model,
        progress=not args.quiet,
    )
    print((findings_markdown_table if done.per_finding else paper_markdown_table)([done.payload]))
    fit = done.fit
    curve = ", ".join(f"{auc:.3f}" for auc in fit.val_auc)
    print(f"chosen epoch {fit.chosen_epoch} of {len(fit.val_auc)} by validation AUC ({curve}); {fit.n_fit} images fitted, {fit.n_val} validated")
    print(f"wrote {output} and {predictions}")
    if figures:
        print(
            f"wrote {figures[0]} (correctly classified {shown_class(done.result, args.finding)}) and {figures[1]} (false positives and negatives), from the test part"
        )
    if done.saved:
        print(f"saved the fine-tuned network to {done.saved.parent} (use: cxrssl predict --model {done.saved.parent} IMAGE...)")


# --- compare ---------------------------------------------------------------------------------


def _compare(verbs) -> None:
    verb = verbs.add_parser("compare", help="does pretraining pay? backbones on identical folds and label budgets, paired differences")
    verb.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]CK.json", help="a checkpoint to compare (repeatable)")
    verb.add_argument(
        "--init",
        action="append",
        default=[],
        metavar="random|imagenet|FILE",
        help="add an initialisation, repeatable: random (the default reference), imagenet, a weights file",
    )
    verb.add_argument("--arch", help=f"architecture of --init: {architectures()} (default: the first checkpoint's, else the default architecture)")
    verb.add_argument(
        "--image-size",
        type=positive_int,
        help="image size every backbone is probed at (default: the first checkpoint's, else 128); "
        "a checkpoint may be probed at a larger size than it was pretrained at",
    )
    verb.add_argument("--task", action="append", required=True, help="labelled manifest CSV or cache folder (repeatable)")
    add_budget_flags(verb, default=list(DEFAULT_LABELS))
    verb.add_argument("--reference", help="backbone the others are compared with (default: random init)")
    verb.add_argument("--positive", help="the disease class (default: the class that is not normal)")
    add_findings_flags(verb)
    verb.add_argument("--seed", type=seed_value, default=0, help="seed of the folds, the label draws and --init random")
    verb.add_argument("--bootstrap", type=bootstrap_count, default=2000, help="patient resamples when the task has an official test split")
    add_split_policy_flag(verb)
    add_readout_flag(verb)
    verb.add_argument("--finetune", action="store_true", help="also fine-tune every backbone end to end (see `cxrssl finetune`)")
    verb.add_argument(
        "--finetune-labels",
        type=budgets,
        default=[25, 100, None],
        metavar="25,100,all",
        help="budgets to fine-tune at, among --labels (default 25,100,all)",
    )
    verb.add_argument("--finetune-repeats", type=positive_int, default=1, help="repetitions of the folds to fine-tune on (default 1)")
    add_finetune_flags(verb)
    verb.add_argument("-o", "--output", default="compare", help="folder for compare.json/.csv/.md and the figures (default ./compare)")
    verb.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in that folder")
    verb.add_argument("--quiet", action="store_true")
    verb.set_defaults(handler=compare)


def compare(args) -> None:
    from cxrssl.api import compare_tasks
    from cxrssl.eval.compare import CompareSettings
    from cxrssl.report.compare import COMPARE_FILES
    from cxrssl.report.tables import compare_markdown_table

    settings = CompareSettings(
        tuple(args.labels),
        args.folds,
        args.repeats,
        replace(probe_settings(args), bootstrap=0),  # compare's --bootstrap is its own (fixed-test design)
        args.reference,
        args.bootstrap,
        args.jobs,
        finetune_settings(args) if args.finetune else None,
        tuple(args.finetune_labels),
        args.finetune_repeats,
    )
    checkpoints = [path for text in args.checkpoint for path in checkpoint_inputs(_named_path(text))]
    inits = [path for init in args.init if init not in ("random", "imagenet") for path in checkpoint_inputs(init)]
    inputs = [*(path for task in args.task for path in data_inputs(task)), *checkpoints, *inits]
    outputs = outputs_for(args, folders=[args.output], inputs=inputs, keep_finished="compare.json")
    comparison = compare_tasks(
        args.task,
        args.output,
        settings,
        outputs,
        checkpoints=args.checkpoint,
        inits=args.init,
        arch=args.arch,
        image_size=args.image_size,
        seed=args.seed,
        readout=args.readout,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(compare_markdown_table(comparison.payload))
    print(f"wrote {comparison.folder}/: {', '.join(COMPARE_FILES)}")


def _named_path(text: str) -> str:
    from cxrssl.eval.backbones import split_named

    return split_named(text)[1]


# --- sweep -----------------------------------------------------------------------------------


def _sweep(verbs) -> None:
    verb = verbs.add_parser("sweep", help="probe every saved checkpoint of a run; metric per epoch beside the loss (Fig. 2)")
    add_sweep_flags(verb)
    verb.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    verb.add_argument("-o", "--output", help="folder for sweep.csv/json/png (default RUN/sweep_<dataset>)")
    add_readout_flag(verb)
    verb.add_argument(
        "--monitor",
        metavar="SMALL.csv",
        help="a small labelled manifest: the k-NN AUC of every checkpoint on it, as a monitor that chooses a checkpoint (see pretrain --monitor)",
    )
    add_budget_flags(verb, default=None)
    verb.set_defaults(handler=sweep)


def sweep(args) -> None:
    from cxrssl.api import sweep_checkpoints
    from cxrssl.eval.compare import CompareSettings
    from cxrssl.eval.evaluate import dataset_name
    from cxrssl.eval.sweep import sweep_folder

    folder = Path(args.output) if args.output else sweep_folder(args.run, dataset_name(args.task))
    outputs = outputs_for(args, folders=[folder], inputs=[args.run, *data_inputs(args.task), *(data_inputs(args.monitor) if args.monitor else [])])
    settings = probe_settings(args)
    budgets = CompareSettings(tuple(args.labels), args.folds, args.repeats, replace(settings, bootstrap=0), jobs=args.jobs) if args.labels else None
    found = sweep_checkpoints(
        args.run, args.task, folder, settings, outputs, progress=not args.quiet, monitor=args.monitor, readout=args.readout, budgets=budgets
    )
    best = max(found.rows, key=lambda row: row["metrics"]["auc"])
    print(f"best AUC {100 * best['metrics']['auc']:.1f} at epoch {best['epoch']}; wrote {folder}/sweep.csv, sweep.json, sweep.png")
    for name, monitor in found.monitors.items():
        rho = (
            f"Spearman rho {monitor['spearman_with_auc']:+.2f} with the probe AUC over {monitor['checkpoints']} checkpoints; "
            if "spearman_with_auc" in monitor
            else ""
        )
        print(f"  {name}: {rho}keeps epoch {monitor['keeps_epoch']}, {100 * monitor['auc_lost']:.1f} AUC points below the best checkpoint")
    for budget, at in (found.budgets or {}).items():
        kept = ", ".join(f"{name} {choice['keeps_epoch']} ({-100 * choice['auc_lost']:+.1f})" for name, choice in at["choices"].items())
        best = next(iter(at["choices"].values()))
        print(f"{budget}/class: best epoch {best['best_epoch']} (AUC {100 * best['best_auc']:.1f}); kept: {kept}")
    if found.budgets:
        print(f"  (AUC over {args.folds} x {args.repeats} patient-grouped folds; wrote {folder}/sweep_budgets.csv)")
