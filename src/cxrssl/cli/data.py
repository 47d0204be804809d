"""Verbs that make, index, split, check and cache data: phantom, index, split, check, cache."""

from __future__ import annotations

from pathlib import Path

from cxrssl.cli.common import (
    add_overwrite_flag,
    bounded_int,
    data_inputs,
    fraction,
    fractions,
    output_file,
    outputs_for,
    positive_int,
    seed_value,
    sibling,
)
from cxrssl.errors import CxrsslError


def register(verbs) -> None:
    for add in (_phantom, _split, _index, _check, _cache):
        add(verbs)


# --- phantom ------------------------------------------------------------------------------


def _phantom(verbs) -> None:
    verb = verbs.add_parser("phantom", help="write synthetic chest radiographs and their manifest")
    verb.add_argument("out", help="folder to write into (new or empty)")
    verb.add_argument("--n", type=positive_int, default=400, help="number of images (default 400)")
    verb.add_argument("--size", type=bounded_int(16, 4096, "an image side in pixels"), default=256, help="image side in pixels (default 256)")
    verb.add_argument("--seed", type=seed_value, default=0)
    verb.add_argument("--positive-fraction", type=fraction, default=0.5, help="share of PNEUMONIA patients (default 0.5)")
    verb.add_argument(
        "--findings",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="multi-label mode: draw findings (all, or comma-separated from Consolidation, Cardiomegaly, Effusion, Edema) "
        "into a NIH-style findings column instead of PNEUMONIA/NORMAL",
    )
    verb.add_argument(
        "--prevalence",
        default=None,
        metavar="NAME=SHARE,...",
        help="findings mode: per-finding prevalence (default Consolidation=0.3,Cardiomegaly=0.25,Effusion=0.2,Edema=0.15)",
    )
    verb.add_argument(
        "--chexpert",
        action="store_true",
        help="write OUT/CheXpert-v1.0-small/ (train.csv, valid.csv, JPEG films) with CheXpert's columns and uncertain labels",
    )
    verb.add_argument(
        "--uncertain-fraction", type=float, default=0.1, help="--chexpert: share of positive and of negative train entries written -1.0 (default 0.1)"
    )
    verb.add_argument("--valid-fraction", type=fraction, default=0.2, help="--chexpert: share of patients in valid.csv (default 0.2)")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=phantom)


def phantom(args) -> None:
    from cxrssl.data.phantom import parse_findings_option, parse_prevalence_option, write_phantom_chexpert, write_phantom_dataset

    if args.findings is not None and not args.findings.strip():
        raise CxrsslError("--findings: give 'all' or finding names separated by commas, e.g. Consolidation,Edema")
    findings = parse_findings_option(args.findings) if args.findings else False
    prevalence = parse_prevalence_option(args.prevalence) if args.prevalence else None
    if prevalence and not (findings or args.chexpert):
        raise CxrsslError("--prevalence needs --findings or --chexpert")
    outputs = outputs_for(args, folders=[args.out])
    with outputs.writing():
        if args.chexpert:
            tree = write_phantom_chexpert(
                args.out,
                n=args.n,
                seed=args.seed,
                size=args.size,
                uncertain_fraction=args.uncertain_fraction,
                valid_fraction=args.valid_fraction,
                findings=findings or True,
                prevalence=prevalence,
            )
        else:
            manifest = write_phantom_dataset(
                args.out, n=args.n, size=args.size, seed=args.seed, positive_fraction=args.positive_fraction, findings=findings, prevalence=prevalence
            )
    if args.chexpert:
        n_valid = sum(film.split == "valid" for film in tree.films)
        print(
            f"wrote {args.n} phantom radiographs as a CheXpert tree: {tree.train_csv} ({args.n - n_valid} films) and {tree.valid_csv} ({n_valid}); "
            f"index it with `cxrssl index chexpert {tree.root} --task competition`"
        )
    else:
        print(f"wrote {args.n} phantom radiographs, {manifest} and {Path(args.out) / 'contact_sheet.png'}")


# --- split ----------------------------------------------------------------------------------


def _split(verbs) -> None:
    verb = verbs.add_parser("split", help="add a patient-level train/val/test split to a manifest, stratified by label (or over its findings)")
    verb.add_argument("manifest")
    verb.add_argument("-o", "--output", type=output_file("manifest", ".csv"), required=True, help="manifest CSV to write")
    verb.add_argument("--fractions", type=fractions, help="train,val,test shares (default 0.7,0.1,0.2)")
    verb.add_argument("--seed", type=seed_value, default=0)
    add_overwrite_flag(verb)
    verb.set_defaults(handler=split)


def split(args) -> None:
    from collections import Counter

    from cxrssl.data.manifest import read_manifest, write_manifest
    from cxrssl.data.splits import split_manifest

    outputs = outputs_for(args, files=[args.output], inputs=data_inputs(args.manifest))
    manifest = read_manifest(args.manifest, check_files=False)
    splits = split_manifest(manifest, args.fractions, args.seed)
    with outputs.writing():
        out = write_manifest(manifest.with_splits(splits), args.output)
    counts = Counter(splits)
    patients = {name: len({p for p, s in zip(manifest.patient_keys, splits) if s == name}) for name in counts}
    summary = ", ".join(f"{name} {counts[name]} images / {patients[name]} patients" for name in ("train", "val", "test") if name in counts)
    print(f"wrote {out}: {summary}")


# --- index ----------------------------------------------------------------------------------


def _index(verbs) -> None:
    from cxrssl.data.adapters import ADAPTERS

    verb = verbs.add_parser("index", help="turn a public dataset's layout (or a folder) into a manifest")
    verb.add_argument("kind", choices=list(ADAPTERS), help="dataset layout; each adapter's docstring gives the exact layout")
    verb.add_argument("root", help="the dataset's top folder (for csv: the manifest file)")
    verb.add_argument(
        "-o",
        "--output",
        type=output_file("manifest", ".csv"),
        required=True,
        help="manifest CSV to write (images skipped go to NAME_skipped.csv beside it)",
    )
    verb.add_argument("--views", default="frontal", choices=("frontal", "lateral", "all"), help="chexpert: which views (default frontal)")
    verb.add_argument(
        "--task",
        default=None,
        choices=("pneumonia", "all", "findings", "pool", "competition", "all-findings"),
        help="nih14: pneumonia (default, the paper's task), all (every image, unlabelled) or findings (every image, its 14 findings); "
        "chexpert: pool (default, unlabelled), competition (the five competition findings) or all-findings (the 14 observations)",
    )
    verb.add_argument(
        "--uncertain",
        default=None,
        choices=("ignore", "ones", "zeros"),
        help="chexpert labelled tasks: an uncertain (-1) label becomes not labelled (ignore, default; U-Ignore), 1 (ones) or 0 (zeros)",
    )
    verb.add_argument("--seed", type=seed_value, default=0, help="nih14: seed of the matched 'No Finding' images")
    verb.add_argument("--unlabelled", action="store_true", help="folder: every image below ROOT, without classes")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=index)


def index(args) -> None:
    from collections import Counter

    from cxrssl.data.adapters import IndexOptions, index_dataset
    from cxrssl.data.findings import finding_labels
    from cxrssl.data.io import write_unreadable_list
    from cxrssl.data.manifest import write_manifest

    output = Path(args.output)
    skipped_list = sibling(output, "_skipped.csv")
    root = Path(args.root)
    # The dataset's own files are inputs (its folder as a whole: an existing file there is never replaced).
    outputs = outputs_for(args, files=[output, skipped_list], inputs=data_inputs(root) if root.is_file() else [root])
    options = IndexOptions(views=args.views, task=args.task, seed=args.seed, unlabelled=args.unlabelled, uncertain=args.uncertain)
    result = index_dataset(args.kind, args.root, options)
    with outputs.writing():
        write_manifest(result.manifest, output)
        if result.skipped:
            write_unreadable_list(skipped_list, result.skipped)
        else:
            skipped_list.unlink(missing_ok=True)  # an older run's list of this output would no longer be true
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
        print(f"  skipped {len(result.skipped)} listed image(s) (e.g. {result.skipped[0][0]}: {result.skipped[0][1]}); all in {skipped_list}")


# --- check ----------------------------------------------------------------------------------


def _check(verbs) -> None:
    verb = verbs.add_parser(
        "check", help="decode every image of a manifest and report counts (per finding too), sizes, unreadable files, duplicates, leaks"
    )
    verb.add_argument("manifest")
    verb.add_argument("--json", type=output_file("report", ".json"), help="also write the full report as JSON")
    verb.add_argument("--limit", type=positive_int, default=10, help="examples listed per problem (default 10)")
    verb.add_argument("--workers", type=positive_int, help="decoding processes (default: all cores)")
    verb.add_argument("--quiet", action="store_true")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=check)


def check(args) -> int:
    from cxrssl.data.check import check_manifest, format_report
    from cxrssl.data.manifest import read_manifest
    from cxrssl.fileio import atomic_write_json

    outputs = outputs_for(args, files=[args.json] if args.json else [], inputs=data_inputs(args.manifest))
    report = check_manifest(read_manifest(args.manifest, check_files=False), workers=args.workers, progress=not args.quiet)
    print(format_report(report, limit=args.limit))
    if args.json:
        with outputs.writing():
            atomic_write_json(args.json, report.to_dict())
    return 1 if report.fatal else 0


# --- cache ----------------------------------------------------------------------------------


def _cache(verbs) -> None:
    verb = verbs.add_parser("cache", help="decode a manifest once into a memory-mapped uint8 array that pretrain/probe read")
    verb.add_argument("manifest")
    verb.add_argument("-o", "--output", required=True, help="cache folder to create")
    verb.add_argument("--size", type=positive_int, default=256, help="square side in pixels (default 256)")
    verb.add_argument("--workers", type=positive_int, help="decoding processes (default: all cores)")
    verb.add_argument("--quiet", action="store_true")
    add_overwrite_flag(verb)
    verb.set_defaults(handler=cache)


def cache(args) -> None:
    from cxrssl.data.cache import build_cache, reuse_cache
    from cxrssl.data.manifest import read_manifest

    outputs = outputs_for(args, folders=[args.output], inputs=data_inputs(args.manifest))
    manifest = read_manifest(args.manifest, check_files=False)
    summary = reuse_cache(manifest, args.output, args.size)  # a complete cache of this manifest is kept, not rebuilt
    if summary is None:
        with outputs.writing():
            summary = build_cache(manifest, args.output, args.size, args.workers, progress=not args.quiet)
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
    if summary.rebuilt:
        print(f"  rebuilt a damaged cache in place: {summary.rebuilt}")
