"""The command line: each verb parses its flags, calls one library function, prints.

Errors the user can fix (CxrsslError) are printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from dataclasses import replace
from pathlib import Path

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.fileio import check_outputs


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 10,25,50,100, got {text!r}") from None


DEFAULT_LABELS = (10, 25, 50, 100, 250, None)
SPLIT_POLICY_HELP = (
    "a patient in both parts of the manifest's split: refuse (default), or purge: keep the test part and drop "
    "that patient's training images (counted in the output)"
)


def _budgets(text: str) -> list[int | None]:
    budgets = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            budgets.append(None)
        elif part.isdigit() and int(part) > 0:
            budgets.append(int(part))
        elif part:
            raise argparse.ArgumentTypeError(f"expected labelled patients per class like 10,25,50,100,250,all, got {text!r}")
    if not budgets:
        raise argparse.ArgumentTypeError("give at least one label budget, e.g. 25,all")
    return sorted(set(budgets), key=lambda b: float("inf") if b is None else b)


def _findings(text: str) -> tuple[str, ...]:
    """``all`` (every finding of the task: empty tuple) or comma-separated finding names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give 'all' or finding names separated by commas, e.g. Atelectasis,Edema")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a finding twice; name each once")
    return () if names == ("all",) else names


FINDINGS_HELP = ("evaluate per finding (a manifest with findings columns): 'all' or names separated by commas; "
                 "default: per finding when the manifest has findings and no label")  # fmt: skip
MIN_PATIENTS_HELP = "per finding: positive and negative labelled patients a test part needs for the finding to be scored (default 5)"


def _fractions(text: str) -> dict[str, float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test like 0.7,0.1,0.2, got {text!r}")
    return dict(zip(("train", "val", "test"), values))


def cmd_phantom(args) -> None:
    from cxrssl.data.phantom import parse_findings_option, parse_prevalence_option, write_phantom_chexpert, write_phantom_dataset

    findings = parse_findings_option(args.findings) if args.findings else False
    prevalence = parse_prevalence_option(args.prevalence) if args.prevalence else None
    if prevalence and not (findings or args.chexpert):
        raise CxrsslError("--prevalence needs --findings or --chexpert")
    if args.chexpert:
        tree = write_phantom_chexpert(args.out, n=args.n, seed=args.seed, size=args.size, uncertain_fraction=args.uncertain_fraction,
                                      valid_fraction=args.valid_fraction, findings=findings or True, prevalence=prevalence)  # fmt: skip
        n_valid = sum(film.split == "valid" for film in tree.films)
        print(f"wrote {args.n} phantom radiographs as a CheXpert tree: {tree.train_csv} ({args.n - n_valid} films) and {tree.valid_csv} ({n_valid}); "
              f"index it with `cxrssl index chexpert {tree.root} --task competition`")  # fmt: skip
        return
    manifest = write_phantom_dataset(args.out, n=args.n, size=args.size, seed=args.seed, positive_fraction=args.positive_fraction, findings=findings,
                                     prevalence=prevalence)  # fmt: skip
    print(f"wrote {args.n} phantom radiographs, {manifest} and {Path(args.out) / 'contact_sheet.png'}")


def cmd_split(args) -> None:
    from collections import Counter

    from cxrssl.data.findings import finding_labels
    from cxrssl.data.manifest import read_manifest, write_manifest
    from cxrssl.data.splits import DEFAULT_FRACTIONS, multilabel_patient_split, patient_grouped_split

    manifest = read_manifest(args.manifest, check_files=False)
    findings = finding_labels(manifest)
    if findings is not None and not any(manifest.labels):  # a manifest of findings: stratified over them
        splits = multilabel_patient_split(manifest.patient_keys, findings.values, args.fractions or DEFAULT_FRACTIONS, args.seed)
    else:
        splits = patient_grouped_split(manifest.patient_keys, manifest.labels, args.fractions or DEFAULT_FRACTIONS, args.seed)
    out = write_manifest(manifest.with_splits(splits), args.output)
    counts = Counter(splits)
    patients = {name: len({p for p, s in zip(manifest.patient_keys, splits) if s == name}) for name in counts}
    summary = ", ".join(f"{name} {counts[name]} images / {patients[name]} patients" for name in ("train", "val", "test") if name in counts)
    print(f"wrote {out}: {summary}")


def cmd_index(args) -> None:
    from collections import Counter

    from cxrssl.data.findings import finding_labels
    from cxrssl.data.io import write_unreadable_list
    from cxrssl.data.manifest import write_manifest
    from cxrssl.data.sources import IndexOptions, index_dataset

    options = IndexOptions(views=args.views, task=args.task, seed=args.seed, unlabelled=args.unlabelled, uncertain=args.uncertain)
    result = index_dataset(args.kind, args.root, options)
    output = write_manifest(result.manifest, args.output)
    manifest = result.manifest
    labels = Counter(row.label or "(unlabelled)" for row in manifest.rows)
    splits = Counter(row.split or "(none)" for row in manifest.rows)
    print(f"wrote {output}: {len(manifest)} images of {len(set(manifest.patient_keys))} patients")
    print("  labels: " + ", ".join(f"{label} {count}" for label, count in sorted(labels.items())))
    print("  splits: " + ", ".join(f"{split} {count}" for split, count in sorted(splits.items())))
    findings = finding_labels(manifest)
    if findings is not None:
        print(f"  findings: {len(findings.names)} ({', '.join(findings.names)})")
    for note in result.notes:
        print(f"  {note}")
    if result.skipped:
        listed = write_unreadable_list(output.with_name(output.stem + "_skipped.csv"), result.skipped)
        print(f"  skipped {len(result.skipped)} listed image(s) (e.g. {result.skipped[0][0]}: {result.skipped[0][1]}); all in {listed}")


def cmd_check(args) -> int:
    from cxrssl.data.check import check_manifest, format_report
    from cxrssl.data.manifest import read_manifest
    from cxrssl.fileio import atomic_write_json

    report = check_manifest(read_manifest(args.manifest, check_files=False), workers=args.workers, progress=not args.quiet)
    print(format_report(report, limit=args.limit))
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    return 1 if report.fatal else 0


def cmd_cache(args) -> None:
    from cxrssl.data.cache import INFO, MANIFEST, PIXELS, UNREADABLE, build_cache
    from cxrssl.data.manifest import read_manifest

    check_outputs([Path(args.output) / name for name in (PIXELS, MANIFEST, INFO, UNREADABLE)], [args.manifest])
    summary = build_cache(read_manifest(args.manifest, check_files=False), args.output, args.size, args.workers, progress=not args.quiet)
    if summary.reused:
        print(f"{summary.folder}: already a complete cache of this manifest at {summary.size} px ({summary.images} images); nothing to do")
        return
    gib = summary.images * summary.size**2 / 2**30
    print(
        f"cached {summary.images} images at {summary.size}x{summary.size} ({gib:.2f} GiB) in {summary.seconds:.1f} s "
        f"({summary.images / summary.seconds:.0f} img/s) into {summary.folder}"
    )
    if summary.unreadable:
        print(f"  skipped {len(summary.unreadable)} unreadable image(s), listed in {summary.folder / 'unreadable.csv'}")


def cmd_pretrain(args) -> None:
    from cxrssl.config import pretrain_config
    from cxrssl.train import pretrain

    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "arch": args.arch,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "warmup_epochs": args.warmup_epochs,
        "temperature": args.temperature,
        "method": args.method,
        "init": args.init,
        "momentum": args.momentum,
        "queue_size": args.queue_size,
        "seed": args.seed,
        "fraction": args.fraction,
        "keep_epochs": args.keep,
        "device": args.device,
        "compile": True if args.compile else None,
    }
    config = pretrain_config(args.out, args.config, overrides, args.resume)
    result = pretrain(args.data, args.out, config, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.losses[-1] if result.losses else float("nan")
        print(f"pretrained {config.arch} on {result.images} images for {len(result.losses)} epochs (last loss {last:.4f}); run folder {result.run_dir}")


INIT_HELP = ("a backbone that was not pretrained here: random (the baseline), imagenet (torchvision's ImageNet weights, "
             "from its cache) or a .pth/.safetensors state dict or cxrssl checkpoint .json")


READOUTS = ("last", "blocks")  # eval.features.READOUTS, named here so parsing imports no torch
READOUT_HELP = "features the probe reads: the last stage, pooled (default, the paper's), or every residual stage, pooled and concatenated"


def _backbone_spec(args):
    from cxrssl.eval.features import BackboneSpec

    if args.checkpoint:
        spec = BackboneSpec.from_checkpoint(args.checkpoint)
        if args.arch and args.arch != spec.arch:
            raise CxrsslError(f"{args.checkpoint}: is a {spec.arch} checkpoint, not {args.arch}; drop --arch or pass a {args.arch} checkpoint")
        return spec
    return BackboneSpec.from_init(args.init, args.arch or "resnet18", args.image_size, args.seed)


def _probe_settings(args):
    from cxrssl.eval.probe import ProbeSettings

    return ProbeSettings(
        positive=getattr(args, "positive", None),
        seed=args.seed,
        bootstrap=getattr(args, "bootstrap", 1000),
        folds=getattr(args, "folds", 5),
        split_policy=getattr(args, "split_policy", "refuse"),
        findings=getattr(args, "findings", None),
        min_patients=getattr(args, "min_patients", 5),
    )


def cmd_extract(args) -> None:
    from cxrssl.data.images import open_image_set
    from cxrssl.eval.features import features_for, save_features

    check_outputs([Path(args.output)], [args.data, args.checkpoint])
    spec = replace(_backbone_spec(args), readout=args.readout)
    images = open_image_set(args.data, spec.image_size, progress=not args.quiet)
    features = features_for(spec, images, progress=not args.quiet, use_cache=not args.no_cache)
    output = save_features(args.output, features, images.manifest)
    skipped = f"; {len(images.unreadable)} unreadable image(s) skipped" if images.unreadable else ""
    print(f"wrote {output}: {features.shape[0]} x {features.shape[1]} features of {spec.description}{skipped}")


def cmd_probe(args) -> None:
    from cxrssl.eval.evaluate import evaluate_backbone, load_task, result_payload, write_predictions
    from cxrssl.eval.multilabel import FindingsProbeResult
    from cxrssl.fileio import atomic_write_json
    from cxrssl.report.tables import findings_markdown_table, paper_markdown_table

    output = Path(args.output)
    check_outputs([output, output.with_name(output.stem + "_predictions.csv")], [args.task, args.checkpoint])
    spec = _backbone_spec(args)
    settings = _probe_settings(args)
    task = load_task(args.task, spec.image_size, progress=not args.quiet, settings=settings)
    result = evaluate_backbone(spec, task, settings, progress=not args.quiet)
    per_finding = isinstance(result, FindingsProbeResult)
    payload = result_payload(spec, args.task, result, args.dataset, args.label)
    atomic_write_json(output, payload)
    predictions = write_predictions(result, task, output.with_name(output.stem + "_predictions.csv"))
    if per_finding:
        print(findings_markdown_table([payload]))
    else:
        print(paper_markdown_table([payload]))
        print(f"chosen C {result.chosen_c} (cross-validated AUC {result.cv_auc[result.chosen_c]:.3f}); confusion {result.confusion}")
    if result.purged[0]:
        print(f"--split-policy purge: dropped {result.purged[0]} training image(s) of {result.purged[1]} patient(s) who are also in the test part")
    print(f"wrote {output} and {predictions}")
    if args.save_model:
        from cxrssl.eval.model import save_probe_model

        saved = save_probe_model(args.save_model, spec, result)
        print(f"saved the backbone and probe to {saved.parent} (use: cxrssl predict --model {saved.parent} IMAGE...)")


def cmd_tsne(args) -> None:
    from cxrssl.eval.evaluate import load_task
    from cxrssl.eval.features import BackboneSpec
    from cxrssl.eval.probe import ProbeSettings
    from cxrssl.explain.tsne import tsne_panels

    args.findings = (args.finding,) if args.finding else None

    check_outputs([Path(args.output), Path(args.output).with_suffix(".csv")], [args.task, *args.checkpoints])
    specs = [BackboneSpec.from_checkpoint(path) for path in args.checkpoints]
    if len({spec.image_size for spec in specs}) > 1:
        raise CxrsslError("the checkpoints were trained at different image sizes; give checkpoints of one run (or one image size)")
    if args.random:
        specs.insert(0, BackboneSpec.random(specs[0].arch, specs[0].image_size, args.seed))
    settings = _probe_settings(args) if args.finding else ProbeSettings()
    task = load_task(args.task, specs[0].image_size, progress=not args.quiet, settings=settings)
    figure, coordinates = tsne_panels(specs, task, args.output, seed=args.seed, progress=not args.quiet, finding=args.finding)
    print(f"wrote {figure} ({len(specs)} panels, {len(task)} images) and {coordinates}")


def cmd_gradcam(args) -> None:
    from cxrssl.eval.evaluate import evaluate_backbone, load_task
    from cxrssl.eval.multilabel import require_finding
    from cxrssl.explain.gallery import draw_galleries

    output = Path(args.output)
    errors = output.with_name(output.stem + "_errors.png")
    check_outputs([output, errors], [args.task, args.checkpoint])
    spec = _backbone_spec(args)
    args.findings = (args.finding,) if args.finding else None
    settings = _probe_settings(args)
    task = load_task(args.task, spec.image_size, progress=not args.quiet, settings=settings)
    require_finding(task.manifest, settings, args.finding)
    result = evaluate_backbone(spec, task, settings, progress=not args.quiet)
    draw_galleries(spec, task, result, output, errors, count=args.n, finding=args.finding)
    print(f"wrote {output} (correctly classified {_shown_class(result, args.finding)}) and {errors} (false positives and negatives), from the test part")


def _shown_class(result, finding: str | None) -> str:
    """The class a Grad-CAM gallery shows: the positive class, or the finding explained."""
    from cxrssl.explain.gallery import chosen_finding

    return chosen_finding(result, finding) if hasattr(result, "fit") else result.positive


def cmd_predict(args) -> int:
    from cxrssl.explain.predict import predict_images

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


def cmd_report(args) -> None:
    from cxrssl.report.html import build_report

    from cxrssl.report.compare import is_compare, read_result

    check_outputs([Path(args.output)], [*args.task, *(args.compare or [])])
    compares = [read_result(path) for path in args.compare or []]
    for path, found in zip(args.compare or [], compares):
        if not is_compare(found):
            raise CxrsslError(f"{path}: a probe result, not a compare.json; pass the compare.json of `cxrssl compare` to --compare")
    output = build_report(args.run, args.task, args.output, _probe_settings(args), progress=not args.quiet, compares=compares, finding=args.finding)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, self-contained)")


def cmd_table(args) -> None:
    from cxrssl.fileio import atomic_write_text
    from cxrssl.report.compare import is_compare, is_findings_result, read_result
    from cxrssl.report.tables import (
        compare_csv_table,
        compare_markdown_table,
        findings_csv_table,
        findings_markdown_table,
        paper_csv_table,
        paper_markdown_table,
    )

    output = Path(args.output)
    check_outputs([output.with_suffix(".md"), output.with_suffix(".csv")], args.results)
    found = [read_result(path) for path in args.results]
    results, compares = [r for r in found if not is_compare(r)], [r for r in found if is_compare(r)]
    if results and compares:
        raise CxrsslError("give probe results or compare.json files, not both: they make different tables")
    per_finding = [r for r in results if is_findings_result(r)]
    if per_finding and len(per_finding) != len(results):
        raise CxrsslError("give per-finding results or binary results, not both: they make different tables")
    if per_finding:
        table, csv_text = findings_markdown_table(results), findings_csv_table(results)
    elif results:
        table, csv_text = paper_markdown_table(results), paper_csv_table(results)
    else:
        table = "\n".join(compare_markdown_table(found) for found in compares)
        csv_parts = [compare_csv_table(found) for found in compares]
        csv_text = csv_parts[0] + "".join(part.split("\n", 1)[1] for part in csv_parts[1:])  # one header
    atomic_write_text(output.with_suffix(".md"), table)
    atomic_write_text(output.with_suffix(".csv"), csv_text)
    print(table)
    print(f"wrote {output.with_suffix('.md')} and {output.with_suffix('.csv')}")


def cmd_sweep(args) -> None:
    from cxrssl.eval.sweep import sweep_run

    if args.output:
        check_outputs([Path(args.output) / name for name in ("sweep.csv", "sweep.json", "sweep.png")], [args.task])
    sweep = sweep_run(args.run, args.task, args.output, _probe_settings(args), progress=not args.quiet)
    best = max(sweep.rows, key=lambda row: row["metrics"]["auc"])
    print(f"best AUC {100 * best['metrics']['auc']:.1f} at epoch {best['epoch']}; wrote {sweep.folder}/sweep.csv, sweep.json, sweep.png")
    for name, found in sweep.monitors.items():
        print(f"  {name}: Spearman rho {found['spearman_with_auc']:+.2f} with the probe AUC over {found['checkpoints']} checkpoints")


def _named_backbones(args) -> list:
    from cxrssl.eval.compare import NamedBackbone
    from cxrssl.eval.features import BackboneSpec

    backbones = []
    for text in args.checkpoint:
        name, _, path = text.rpartition("=") if "=" in text and not Path(text).is_file() else ("", "", text)
        spec = BackboneSpec.from_checkpoint(path)
        if args.image_size:  # probe at another size than the one it was pretrained at
            spec = replace(spec, image_size=args.image_size)
        backbones.append(NamedBackbone(name or f"{spec.checkpoint.parent.parent.name} epoch {spec.epoch}", spec))
    first = backbones[0].spec if backbones else None
    for init in args.init:
        arch = args.arch or (first.arch if first else "resnet18")
        size = args.image_size or (first.image_size if first else 128)
        spec = BackboneSpec.from_init(init, arch, size, args.seed)
        backbones.append(NamedBackbone(spec.init_label, spec))
    return [NamedBackbone(b.name, replace(b.spec, readout=args.readout)) for b in backbones]


def cmd_compare(args) -> None:
    from cxrssl.eval.compare import CompareSettings, common_image_size, compare_backbones
    from cxrssl.eval.evaluate import dataset_name, load_task
    from cxrssl.eval.probe import ProbeSettings
    from cxrssl.report.compare import COMPARE_FILES
    from cxrssl.report.tables import compare_markdown_table

    probe = ProbeSettings(positive=args.positive, seed=args.seed, bootstrap=0, folds=args.inner_folds, split_policy=args.split_policy,
                          findings=args.findings, min_patients=args.min_patients)  # fmt: skip
    finetune = _finetune_settings(args) if args.finetune else None
    settings = CompareSettings(tuple(args.labels), args.folds, args.repeats, probe, args.reference, args.bootstrap, args.jobs,
                               finetune, tuple(args.finetune_labels), args.finetune_repeats)  # fmt: skip
    check_outputs([Path(args.output) / name for name in COMPARE_FILES], [*args.task, *(c.rpartition("=")[2] for c in args.checkpoint)])
    backbones = _named_backbones(args)
    size = common_image_size(backbones)  # refused here, before any task is decoded
    tasks = [(dataset_name(task), load_task(task, size, progress=not args.quiet, settings=probe)) for task in args.task]
    comparison = compare_backbones(backbones, tasks, args.output, settings, progress=not args.quiet, overwrite=args.overwrite)
    print(compare_markdown_table(comparison.payload))
    print(f"wrote {comparison.folder}/: {', '.join(COMPARE_FILES)}")


def _finetune_settings(args):
    from cxrssl.eval.finetune import FinetuneSettings

    return FinetuneSettings(
        epochs=args.epochs, batch_size=args.batch_size, head_lr=args.lr, backbone_lr=args.backbone_lr, patience=args.patience,
        val_fraction=args.val_fraction, seed=args.seed, device=args.device,
    )  # fmt: skip


def cmd_finetune(args) -> None:
    from cxrssl.eval.evaluate import finetune_backbone, finetune_findings_backbone, load_task, write_predictions
    from cxrssl.eval.multilabel import require_finding, wants_findings
    from cxrssl.fileio import atomic_write_json
    from cxrssl.report.tables import findings_markdown_table, paper_markdown_table

    output = Path(args.output)
    figures = [Path(args.gradcam), Path(args.gradcam).with_name(Path(args.gradcam).stem + "_errors.png")] if args.gradcam else []
    check_outputs([output, output.with_name(output.stem + "_predictions.csv"), *figures], [args.task, args.checkpoint])
    spec = _backbone_spec(args)
    settings = _probe_settings(args)
    task = load_task(args.task, spec.image_size, progress=not args.quiet, settings=settings)
    require_finding(task.manifest, settings, args.finding)  # before the fine-tune, not after it
    per_finding = wants_findings(task.manifest, settings)
    run = finetune_findings_backbone if per_finding else finetune_backbone
    result, fit, payload = run(spec, task, args.task, settings, _finetune_settings(args), output, args.dataset, args.label, progress=not args.quiet)
    atomic_write_json(output, payload)
    predictions = write_predictions(result, task, output.with_name(output.stem + "_predictions.csv"))
    print((findings_markdown_table if per_finding else paper_markdown_table)([payload]))
    curve = ", ".join(f"{auc:.3f}" for auc in fit.val_auc)
    print(f"chosen epoch {fit.chosen_epoch} of {len(fit.val_auc)} by validation AUC ({curve}); {fit.n_fit} images fitted, {fit.n_val} validated")
    print(f"wrote {output} and {predictions}")
    probe = fit.findings_probe([n for n in result.fit.names if n in result.fit.thresholds]) if per_finding else fit.probe(result.positive, result.negative)
    if args.gradcam:
        from cxrssl.eval.model import ProbeModel
        from cxrssl.explain.gallery import draw_galleries

        network = ProbeModel(fit.model.backbone, probe.folded()).eval()
        figure = Path(args.gradcam)
        errors = figure.with_name(figure.stem + "_errors.png")
        draw_galleries(spec, task, result, figure, errors, model=network, finding=args.finding)
        print(f"wrote {figure} (correctly classified {_shown_class(result, args.finding)}) and {errors} (false positives and negatives), from the test part")
    if args.save_model:
        from cxrssl.eval.model import save_model

        metrics = result.fit.metrics if per_finding else result.metrics
        saved = save_model(args.save_model, fit.model.backbone, probe, spec.arch, spec.image_size, f"fine-tuned from {spec.description}", metrics)
        print(f"saved the fine-tuned network to {saved.parent} (use: cxrssl predict --model {saved.parent} IMAGE...)")


def cmd_demo(args) -> None:
    from cxrssl.demo import DemoSettings, run_demo

    run_demo(args.out, DemoSettings(seed=args.seed))


def one_line(error: BaseException) -> str:
    """The message of an expected error: ``error: <what> (<file>): <fix>`` on one line."""
    if isinstance(error, OSError) and not isinstance(error, CxrsslError):
        where = f" ({error.filename})" if error.filename else ""
        fix = OS_ERROR_FIXES.get(error.errno, "check the path and try again")
        text = f"error: {error.strerror or error}{where}: {fix}"
    else:
        text = f"error: {error}"
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrssl", description="Self-supervised pretraining on chest X-rays, and honest evaluation.")
    parser.add_argument("--version", action="version", version=f"cxrssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error (cxrssl --debug VERB ...)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    phantom = verbs.add_parser("phantom", help="write synthetic chest radiographs and their manifest")
    phantom.add_argument("out", help="folder to write into")
    phantom.add_argument("--n", type=int, default=400, help="number of images (default 400)")
    phantom.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--positive-fraction", type=float, default=0.5, help="share of PNEUMONIA patients (default 0.5)")
    phantom.add_argument("--findings", nargs="?", const="all", default=None, metavar="NAMES",
                         help="multi-label mode: draw findings (all, or comma-separated from Consolidation, Cardiomegaly, Effusion, Edema) "
                              "into a NIH-style findings column instead of PNEUMONIA/NORMAL")  # fmt: skip
    phantom.add_argument("--prevalence", default=None, metavar="NAME=SHARE,...",
                         help="findings mode: per-finding prevalence (default Consolidation=0.3,Cardiomegaly=0.25,Effusion=0.2,Edema=0.15)")
    phantom.add_argument("--chexpert", action="store_true", help="write OUT/CheXpert-v1.0-small/ (train.csv, valid.csv, JPEG films) with CheXpert's columns and uncertain labels")
    phantom.add_argument("--uncertain-fraction", type=float, default=0.1, help="--chexpert: share of positive and of negative train entries written -1.0 (default 0.1)")
    phantom.add_argument("--valid-fraction", type=float, default=0.2, help="--chexpert: share of patients in valid.csv (default 0.2)")
    phantom.set_defaults(handler=cmd_phantom)

    split = verbs.add_parser("split", help="add a patient-level train/val/test split to a manifest, stratified by label (or over its findings)")
    split.add_argument("manifest")
    split.add_argument("-o", "--output", required=True, help="manifest to write")
    split.add_argument("--fractions", type=_fractions, help="train,val,test shares (default 0.7,0.1,0.2)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(handler=cmd_split)

    from cxrssl.data.sources import ADAPTERS

    index = verbs.add_parser("index", help="turn a public dataset's layout (or a folder) into a manifest")
    index.add_argument("kind", choices=list(ADAPTERS), help="dataset layout; each adapter's docstring gives the exact layout")
    index.add_argument("root", help="the dataset's top folder (for csv: the manifest file)")
    index.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    index.add_argument("--views", default="frontal", choices=("frontal", "lateral", "all"), help="chexpert: which views (default frontal)")
    index.add_argument("--task", default=None, choices=("pneumonia", "all", "findings", "pool", "competition", "all-findings"),
                       help="nih14: pneumonia (default, the paper's task), all (every image, unlabelled) or findings (every image, its 14 findings); "
                            "chexpert: pool (default, unlabelled), competition (the five competition findings) or all-findings (the 14 observations)")  # fmt: skip
    index.add_argument("--uncertain", default=None, choices=("ignore", "ones", "zeros"),
                       help="chexpert labelled tasks: an uncertain (-1) label becomes not labelled (ignore, default; U-Ignore), 1 (ones) or 0 (zeros)")
    index.add_argument("--seed", type=int, default=0, help="nih14: seed of the matched 'No Finding' images")
    index.add_argument("--unlabelled", action="store_true", help="folder: every image below ROOT, without classes")
    index.set_defaults(handler=cmd_index)

    check = verbs.add_parser("check", help="decode every image of a manifest and report counts (per finding too), sizes, unreadable files, duplicates, leaks")
    check.add_argument("manifest")
    check.add_argument("--json", help="also write the full report as JSON")
    check.add_argument("--limit", type=int, default=10, help="examples listed per problem (default 10)")
    check.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    check.add_argument("--quiet", action="store_true")
    check.set_defaults(handler=cmd_check)

    cache = verbs.add_parser("cache", help="decode a manifest once into a memory-mapped uint8 array that pretrain/probe read")
    cache.add_argument("manifest")
    cache.add_argument("-o", "--output", required=True, help="cache folder to create")
    cache.add_argument("--size", type=int, default=256, help="square side in pixels (default 256)")
    cache.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    cache.add_argument("--quiet", action="store_true")
    cache.set_defaults(handler=cmd_cache)

    pretrain = verbs.add_parser("pretrain", help="self-supervised pretraining (SimCLR, MoCo v2, BYOL) on the images of a manifest (labels ignored)")
    pretrain.add_argument("--data", required=True, help="manifest CSV of the unlabelled images, or a cache folder (cxrssl cache)")
    pretrain.add_argument("--out", required=True, help="run folder (checkpoints, log, config)")
    pretrain.add_argument("--config", help="preset (paper, cpu, demo) or YAML file; default cpu")
    pretrain.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    pretrain.add_argument("--method", choices=("simclr", "moco", "byol"), help="pretraining method (default: the config's, simclr)")
    pretrain.add_argument("--init", help="starting weights: random (default), imagenet (torchvision's cache) or a weights file / checkpoint .json")
    pretrain.add_argument("--epochs", type=int)
    pretrain.add_argument("--batch-size", type=int, help="effective batch over all processes")
    pretrain.add_argument("--image-size", type=int)
    pretrain.add_argument("--arch", help="resnet18, resnet34, resnet50 or wide_resnet50_2")
    pretrain.add_argument("--lr", type=float)
    pretrain.add_argument("--lr-schedule", choices=("constant", "cosine"), help="constant (the paper's) or cosine decay to 0")
    pretrain.add_argument("--warmup-epochs", type=float, help="linear learning-rate warm-up, in epochs")
    pretrain.add_argument("--temperature", type=float, help="simclr and moco: softmax temperature (default 0.5, 0.2)")
    pretrain.add_argument("--momentum", type=float, help="moco and byol: EMA coefficient of the target network (default 0.99)")
    pretrain.add_argument("--queue-size", type=int, help="moco: negatives kept in the queue (default 4096)")
    pretrain.add_argument("--seed", type=int)
    pretrain.add_argument("--fraction", type=float, help="share of patients to pretrain on, in (0, 1]")
    pretrain.add_argument("--keep", type=_int_list, help="epochs whose checkpoints are kept, e.g. 10,25,50,100")
    pretrain.add_argument("--device", choices=("auto", "cpu", "cuda"))
    pretrain.add_argument("--compile", action="store_true", help="torch.compile the model")
    pretrain.add_argument("--quiet", action="store_true", help="no progress bars")
    pretrain.set_defaults(handler=cmd_pretrain)

    def add_backbone_flags(verb) -> None:
        which = verb.add_mutually_exclusive_group(required=True)
        which.add_argument("--checkpoint", help="checkpoint .json of a pretraining run")
        which.add_argument("--init", metavar="random|imagenet|FILE", help=INIT_HELP)
        verb.add_argument("--arch", help="architecture for --init (default resnet18); with --checkpoint, checked against it")
        verb.add_argument("--image-size", type=int, default=128, help="image size for --init")
        verb.add_argument("--seed", type=int, default=0, help="seed of --init random, the split and the bootstrap")
        verb.add_argument("--quiet", action="store_true")

    extract = verbs.add_parser("extract", help="frozen features (global-average-pooled last layer) of a manifest's images")
    add_backbone_flags(extract)
    extract.add_argument("--data", required=True, help="manifest CSV or cache folder")
    extract.add_argument("-o", "--output", default="features.npz", help="npz with features, path, patient_id, label, split")
    extract.add_argument("--no-cache", action="store_true", help="recompute even if the feature cache has them")
    extract.add_argument("--readout", choices=READOUTS, default="last", help=READOUT_HELP)
    extract.set_defaults(handler=cmd_extract)

    def add_result_flags(verb, output: str, label: str) -> None:
        """What probe and finetune share: the backbone, the task and its split, the result file and its table row."""
        add_backbone_flags(verb)
        verb.add_argument("--task", required=True, help="labelled manifest CSV, or a cache folder of one")
        verb.add_argument("--positive", help="the disease class (default: the class that is not normal)")
        verb.add_argument("-o", "--output", default=output)
        verb.add_argument("--dataset", help="dataset name for tables (default: from the manifest's name)")
        verb.add_argument("--label", help=f"row label for tables (default: {label})")
        verb.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
        verb.add_argument("--split-policy", choices=("refuse", "purge"), default="refuse", help=SPLIT_POLICY_HELP)
        add_findings_flags(verb)

    def add_findings_flags(verb) -> None:
        verb.add_argument("--findings", type=_findings, metavar="all|A,B,...", help=FINDINGS_HELP)
        verb.add_argument("--min-patients", type=int, default=5, help=MIN_PATIENTS_HELP)

    probe = verbs.add_parser("probe", help="logistic-regression probe of frozen features on a labelled manifest")
    add_result_flags(probe, "probe.json", "pretext fraction and epoch, or 'random init'")
    probe.add_argument("--folds", type=int, default=5, help="cross-validation folds for choosing C (default 5)")
    probe.add_argument("--save-model", metavar="DIR", help="also save backbone + probe for `cxrssl predict` (safetensors + JSON)")
    probe.set_defaults(handler=cmd_probe)

    tsne = verbs.add_parser("tsne", help="t-SNE of frozen features, one panel per checkpoint (Fig. 3)")
    tsne.add_argument("--checkpoints", nargs="+", required=True, help="checkpoint .json files, e.g. epochs 10 25 50 100")
    tsne.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    tsne.add_argument("--random", action="store_true", help="add a panel for the random initialisation")
    tsne.add_argument("--finding", help="multi-label task: colour the points by this finding (positive or negative; images where it is not labelled are left out)")
    tsne.add_argument("-o", "--output", default="tsne.png", help="figure; the 2-D coordinates go to the same name .csv")
    tsne.add_argument("--seed", type=int, default=0)
    tsne.add_argument("--quiet", action="store_true")
    tsne.set_defaults(handler=cmd_tsne)

    gradcam = verbs.add_parser("gradcam", help="Grad-CAM grid of correct positives and a gallery of errors (Fig. 4, 5)")
    add_backbone_flags(gradcam)
    gradcam.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    gradcam.add_argument("--positive")
    gradcam.add_argument("--finding", help="multi-label task: the finding to explain (default: the one with the best test AUC)")
    gradcam.add_argument("--min-patients", type=int, default=5, help=MIN_PATIENTS_HELP)
    gradcam.add_argument("-n", type=int, default=8, help="images per figure (default 8)")
    gradcam.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the probe run first")
    gradcam.add_argument("-o", "--output", default="gradcam.png", help="figure; errors go to <name>_errors.png")
    gradcam.set_defaults(handler=cmd_gradcam)

    predict = verbs.add_parser("predict", help="probability and class per image from a saved model")
    predict.add_argument("--model", required=True, help="folder written by `cxrssl probe --save-model`")
    predict.add_argument("images", nargs="+", help="image files (PNG, JPEG, DICOM)")
    predict.add_argument("--heatmaps", metavar="DIR", help="also write a Grad-CAM overlay per image here (multi-label: per finding above its threshold)")
    predict.add_argument("--finding", help="multi-label model: heat maps of this finding only, for every image")
    predict.set_defaults(handler=cmd_predict)

    def add_sweep_flags(verb) -> None:
        verb.add_argument("--run", required=True, help="run folder of `cxrssl pretrain`")
        verb.add_argument("--positive", help="the disease class (default: the class that is not normal)")
        verb.add_argument("--seed", type=int, default=0)
        verb.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
        verb.add_argument("--quiet", action="store_true")
        add_findings_flags(verb)

    report = verbs.add_parser("report", help="one self-contained HTML page: config, loss, Table III, sweep, t-SNE, Grad-CAM, errors")
    add_sweep_flags(report)
    report.add_argument("--task", action="append", required=True, help="labelled manifest CSV or cache folder (repeatable)")
    report.add_argument("--compare", action="append", metavar="compare.json", help="add a `cxrssl compare` result (repeatable)")
    report.add_argument("--finding", help="multi-label task: the finding whose Grad-CAM is shown (default: the best-scored)")
    report.add_argument("-o", "--output", default="report.html")
    report.set_defaults(handler=cmd_report)

    table = verbs.add_parser("table", help="Table III (markdown and CSV) from probe results, or the table of compare results")
    table.add_argument("results", nargs="+", help="result .json files of `cxrssl probe`, or compare.json files of `cxrssl compare`")
    table.add_argument("-o", "--output", default="table.md", help="table.md; table.csv is written beside it")
    table.set_defaults(handler=cmd_table)

    sweep = verbs.add_parser("sweep", help="probe every saved checkpoint of a run; metric per epoch beside the loss (Fig. 2)")
    add_sweep_flags(sweep)
    sweep.add_argument("--task", required=True, help="labelled manifest CSV or cache folder")
    sweep.add_argument("-o", "--output", help="folder for sweep.csv/json/png (default RUN/sweep_<dataset>)")
    sweep.set_defaults(handler=cmd_sweep)

    def add_finetune_flags(verb) -> None:
        verb.add_argument("--epochs", type=int, default=20, help="fine-tuning: at most this many epochs (default 20)")
        verb.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch (default 32)")
        verb.add_argument("--lr", type=float, default=1e-3, help="fine-tuning: learning rate of the head (default 1e-3)")
        verb.add_argument("--backbone-lr", type=float, default=1e-4, help="fine-tuning: learning rate of the backbone (default 1e-4)")
        verb.add_argument("--patience", type=int, default=5, help="fine-tuning: stop after this many epochs without a better validation AUC")
        verb.add_argument("--val-fraction", type=float, default=0.2, help="fine-tuning: share of training patients held out to pick the epoch")
        verb.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    finetune = verbs.add_parser("finetune", help="train backbone + linear head end to end on a labelled task; output as `probe`")
    add_result_flags(finetune, "finetune.json", "the backbone and 'fine-tuned'")
    finetune.add_argument("--gradcam", metavar="FIG.png", help="also draw Grad-CAM of the fine-tuned network on test images (+ FIG_errors.png)")
    finetune.add_argument("--finding", help="multi-label task: the finding --gradcam explains (default: the best-scored)")
    finetune.add_argument("--save-model", metavar="DIR", help="save the fine-tuned network for `cxrssl predict` (safetensors + JSON)")
    add_finetune_flags(finetune)
    finetune.set_defaults(handler=cmd_finetune)

    compare = verbs.add_parser("compare", help="does pretraining pay? backbones on identical folds and label budgets, paired differences")
    compare.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]CK.json", help="a checkpoint to compare (repeatable)")
    compare.add_argument("--init", action="append", default=[], metavar="random|imagenet|FILE",
                         help="add an initialisation, repeatable: random (the default reference), imagenet, a weights file")  # fmt: skip
    compare.add_argument("--arch", help="architecture of --init (default: the first checkpoint's, else resnet18)")
    compare.add_argument("--image-size", type=int, help="image size every backbone is probed at (default: the first checkpoint's, else 128); "
                         "a checkpoint may be probed at a larger size than it was pretrained at")  # fmt: skip
    compare.add_argument("--task", action="append", required=True, help="labelled manifest CSV or cache folder (repeatable)")
    compare.add_argument("--labels", type=_budgets, default=list(DEFAULT_LABELS), metavar="10,25,...,all",
                         help="labelled patients per class drawn from each training part (default 10,25,50,100,250,all); "
                              "for a task evaluated per finding, labelled patients in all")  # fmt: skip
    compare.add_argument("--folds", type=int, default=5, help="outer patient-grouped folds (default 5)")
    compare.add_argument("--repeats", type=int, default=5, help="repetitions of the folds / training draws (default 5)")
    compare.add_argument("--inner-folds", type=int, default=5, help="folds of the probe's C search inside each training part (default 5)")
    compare.add_argument("--reference", help="backbone the others are compared with (default: random init)")
    compare.add_argument("--positive", help="the disease class (default: the class that is not normal)")
    add_findings_flags(compare)
    compare.add_argument("--seed", type=int, default=0, help="seed of the folds, the label draws and --init random")
    compare.add_argument("--bootstrap", type=int, default=2000, help="patient resamples when the task has an official test split")
    compare.add_argument("--split-policy", choices=("refuse", "purge"), default="refuse", help=SPLIT_POLICY_HELP)
    compare.add_argument("--jobs", type=int, default=0, help="worker processes for the fits (default: one per core)")
    compare.add_argument("--readout", choices=READOUTS, default="last", help=READOUT_HELP)
    compare.add_argument("--finetune", action="store_true", help="also fine-tune every backbone end to end (see `cxrssl finetune`)")
    compare.add_argument("--finetune-labels", type=_budgets, default=[25, 100, None], metavar="25,100,all",
                         help="budgets to fine-tune at, among --labels (default 25,100,all)")  # fmt: skip
    compare.add_argument("--finetune-repeats", type=int, default=1, help="repetitions of the folds to fine-tune on (default 1)")
    add_finetune_flags(compare)
    compare.add_argument("-o", "--output", default="compare", help="folder for compare.json/.csv/.md and the figures (default ./compare)")
    compare.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in that folder")
    compare.add_argument("--quiet", action="store_true")
    compare.set_defaults(handler=cmd_compare)

    demo = verbs.add_parser("demo", help="the whole method end to end on phantom radiographs (a few minutes)")
    demo.add_argument("--out", default="cxrssl-demo", help="output folder (default ./cxrssl-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_demo)
    return parser


# What to do about an operating-system error, by its errno.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free disk space or write somewhere else",
    errno.EDQUOT: "free disk space or write somewhere else",
    errno.EACCES: "choose a location you may write to (or read: check the file's permissions)",
    errno.EPERM: "choose a location you may write to (or read: check the file's permissions)",
    errno.EROFS: "the file system is read-only; choose another output location",
    errno.ENOENT: "check the path",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Expected failures are one line on stderr and exit code 2 (``check`` uses 1
    for "evaluation would be wrong"); ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (CxrsslError, OSError) as error:
        if args.debug:
            raise
        print(f"cxrssl {args.verb}: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxrssl {args.verb}: interrupted; a pretraining run continues with --resume", file=sys.stderr)
        return 130
