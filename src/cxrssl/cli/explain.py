"""Verbs that explain a backbone or a saved model: tsne, gradcam, predict."""

from __future__ import annotations

import sys
from pathlib import Path

from cxrssl.cli.common import (
    MIN_PATIENTS_HELP,
    add_backbone_flags,
    add_overwrite_flag,
    add_split_policy_flag,
    bootstrap_count,
    checkpoint_inputs,
    data_inputs,
    figure_path,
    outputs_for,
    positive_int,
    seed_value,
    sibling,
)


def register(verbs) -> None:
    for add in (_tsne, _gradcam, _predict):
        add(verbs)


def _tsne(verbs) -> None:
    verb = verbs.add_parser("tsne", help="t-SNE of frozen features, one panel per checkpoint (Fig. 3)")
    verb.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint .json files, e.g. epochs 10 25 50 100")
    verb.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    verb.add_argument("--random", action="store_true", help="add a panel for the random initialisation")
    verb.add_argument(
        "--finding", help="multi-label task: colour the points by this finding (positive or negative; images where it is not labelled are left out)"
    )
    verb.add_argument(
        "-o", "--output", type=figure_path, default="tsne.png", help="figure (.png, .pdf, .svg); the 2-D coordinates go to the same name .csv"
    )
    verb.add_argument("--seed", type=seed_value, default=0)
    verb.add_argument("--quiet", action="store_true")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=tsne)


def tsne(args) -> None:
    from cxrssl.api import tsne_figure

    figure, coordinates = Path(args.output), Path(args.output).with_suffix(".csv")
    inputs = [*data_inputs(args.task), *(p for ck in args.checkpoints for p in checkpoint_inputs(ck))]
    outputs = outputs_for(args, files=[figure, coordinates], inputs=inputs)
    panels, images = tsne_figure(
        args.checkpoints, args.task, figure, outputs, random=args.random, finding=args.finding, seed=args.seed, progress=not args.quiet
    )
    print(f"wrote {figure} ({panels} panels, {images} images) and {coordinates}")


def _gradcam(verbs) -> None:
    verb = verbs.add_parser("gradcam", help="Grad-CAM grid of correct positives and a gallery of errors (Fig. 4, 5)")
    add_backbone_flags(verb)
    verb.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    verb.add_argument("--positive")
    verb.add_argument("--finding", help="multi-label task: the finding to explain (default: the one with the best test AUC)")
    verb.add_argument("--min-patients", type=positive_int, default=5, help=MIN_PATIENTS_HELP)
    verb.add_argument("-n", type=positive_int, default=8, help="images per figure (default 8)")
    verb.add_argument("--bootstrap", type=bootstrap_count, default=200, help="bootstrap resamples of the probe run first")
    add_split_policy_flag(verb)
    verb.add_argument("-o", "--output", type=figure_path, default="gradcam.png", help="figure (.png, .pdf, .svg); errors go to <name>_errors.png")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=gradcam)


def gradcam(args) -> None:
    from cxrssl.api import gradcam_figures
    from cxrssl.cli.common import backbone_spec, probe_settings

    output, errors = Path(args.output), sibling(args.output, "_errors.png")
    init = [] if args.init in (None, "random", "imagenet") else checkpoint_inputs(args.init)
    outputs = outputs_for(args, files=[output, errors], inputs=[*data_inputs(args.task), *checkpoint_inputs(args.checkpoint), *init])
    args.findings = (args.finding,) if args.finding else None
    shown = gradcam_figures(
        backbone_spec(args), args.task, probe_settings(args), output, errors, outputs, count=args.n, finding=args.finding, progress=not args.quiet
    )
    print(f"wrote {output} (correctly classified {shown}) and {errors} (false positives and negatives), from the test part")


def _predict(verbs) -> None:
    verb = verbs.add_parser("predict", help="probability and class per image from a saved model")
    verb.add_argument("--model", required=True, help="folder written by `cxrssl probe --save-model`")
    verb.add_argument("images", nargs="+", help="image files (PNG, JPEG, DICOM)")
    verb.add_argument("--heatmaps", metavar="DIR", help="also write a Grad-CAM overlay per image here (multi-label: per finding above its threshold)")
    verb.add_argument("--finding", help="multi-label model: heat maps of this finding only, for every image")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=predict)


def predict(args) -> int:
    from cxrssl.explain.predict import predict_images
    from cxrssl.outputs import require_complete

    model = Path(args.model)
    require_complete(model / "model.json" if model.is_dir() else model)
    outputs = outputs_for(args, folders=[args.heatmaps] if args.heatmaps else [], inputs=[args.model, *args.images])
    with outputs.writing():
        predictions, unreadable = predict_images(args.model, args.images, heatmaps=args.heatmaps, finding=args.finding)
    for path, reason in unreadable:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    for prediction in predictions:
        if prediction.probabilities is not None:
            cells = "\t".join(f"p({name})={p:.4f}" for name, p in prediction.probabilities.items())
            print(f"{prediction.path}\t{cells}\t{prediction.predicted}")
        else:
            print(f"{prediction.path}\tp({prediction.positive})={prediction.probability:.4f}\t{prediction.predicted}")
    return 0 if predictions else 2
