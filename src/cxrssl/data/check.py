"""``cxrssl check``: what is in a manifest, and what is wrong with it, before any training.

Every image is decoded (on all cores). The report gives counts per label, split and
patient, the distribution of image sizes, every unreadable file with the reason,
images whose decoded pixels are identical under two paths, and patients found in two
splits. When the manifest carries findings (multi-label labels, see
:mod:`cxrssl.data.findings`), it also gives per finding the positive, negative and
unlabelled images and patients, and warns about findings with fewer than
``MIN_POSITIVE_PATIENTS`` positive patients (too few to evaluate). Only problems that
would make an evaluation wrong are fatal: no readable image, a patient in two splits,
or one image (by content) in two splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from cxrssl.data.findings import finding_labels
from cxrssl.data.io import UnreadableImage, load_grayscale
from cxrssl.data.manifest import Manifest
from cxrssl.data.splits import patients_in_several_subsets
from cxrssl.workers import parallel_map

MIN_POSITIVE_PATIENTS = 5  # fewer positive patients than this: a finding too rare to evaluate


def inspect_image(path: str) -> tuple[int, int, str] | str:
    """(height, width, pixel digest) of one image, or the reason it cannot be read."""
    try:
        pixels = load_grayscale(path)
    except UnreadableImage as error:
        return str(error)
    digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16)
    digest.update(repr(pixels.shape).encode())
    return pixels.shape[0], pixels.shape[1], digest.hexdigest()


@dataclass
class CheckReport:
    manifest: str
    images: int
    readable: int
    labels: dict[str, int]
    splits: dict[str, int]
    patients: int
    patients_per_label: dict[str, int]
    most_images_per_patient: int
    sizes: dict[str, object]  # min / median / max of height and width, most common shapes
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of paths with identical pixels
    patients_across_splits: dict[str, list[str]] = field(default_factory=dict)
    # per finding (empty without findings): FindingLabels.counts, i.e. finding, {positive,negative,unlabelled}_{images,patients}
    findings: list[dict] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_manifest(manifest: Manifest, workers: int | None = None, progress: bool = True) -> CheckReport:
    paths = [str(path) for path in manifest.files]
    facts = list(parallel_map(inspect_image, paths, workers, progress, desc="check"))
    readable = [i for i, fact in enumerate(facts) if not isinstance(fact, str)]
    unreadable = [(manifest.rows[i].path, fact) for i, fact in enumerate(facts) if isinstance(fact, str)]
    rows = manifest.rows
    by_digest = defaultdict(list)
    for i in readable:
        by_digest[facts[i][2]].append(i)
    duplicate_groups = [group for group in by_digest.values() if len(group) > 1]
    across = patients_in_several_subsets(manifest.patient_keys, manifest.splits)
    report = CheckReport(
        manifest=manifest.name,
        images=len(rows),
        readable=len(readable),
        labels=dict(sorted(Counter(row.label or "(unlabelled)" for row in rows).items())),
        splits=dict(sorted(Counter(row.split or "(none)" for row in rows).items())),
        patients=len(set(manifest.patient_keys)),
        patients_per_label={
            label or "(unlabelled)": len({r.patient_key for r in rows if r.label == label}) for label in sorted({r.label for r in rows})
        },
        most_images_per_patient=max(Counter(manifest.patient_keys).values()),
        sizes=_size_summary([facts[i][:2] for i in readable]),
        unreadable=unreadable,
        duplicates=[[rows[i].path for i in group] for group in duplicate_groups],
        patients_across_splits={patient: sorted(splits) for patient, splits in across.items()},
    )
    labels = finding_labels(manifest)
    if labels is not None:
        report.findings = labels.counts(manifest.patient_keys)
    _judge(report, manifest, duplicate_groups)
    return report


def _size_summary(shapes: list[tuple[int, int]]) -> dict[str, object]:
    if not shapes:
        return {}
    heights, widths = np.array([h for h, _ in shapes]), np.array([w for _, w in shapes])
    spread = lambda values: {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}  # noqa: E731
    common = Counter(f"{w}x{h}" for h, w in shapes).most_common(5)
    return {"height": spread(heights), "width": spread(widths), "most_common_wxh": dict(common)}


def _judge(report: CheckReport, manifest: Manifest, duplicate_groups: list[list[int]]) -> None:
    rows = manifest.rows
    if report.readable == 0:
        report.fatal.append("no image could be read")
    if report.patients_across_splits:
        example = next(iter(report.patients_across_splits))
        report.fatal.append(
            f"{len(report.patients_across_splits)} patient(s) are in two splits (e.g. {example}); re-split by patient with `cxrssl split`"
        )
    straddling = [group for group in duplicate_groups if len({rows[i].split for i in group} - {""}) > 1]
    if straddling:
        report.fatal.append(
            f"{len(straddling)} image(s) appear, by content, in two splits (e.g. {rows[straddling[0][0]].path} = "
            f"{rows[straddling[0][1]].path}); remove the copies or give them one patient_id"
        )
    conflicting = [group for group in duplicate_groups if len({rows[i].label for i in group}) > 1]
    if conflicting:
        report.warnings.append(f"{len(conflicting)} identical image(s) carry different labels (e.g. {rows[conflicting[0][0]].path})")
    if report.unreadable:
        report.warnings.append(f"{len(report.unreadable)} image(s) cannot be read; they are skipped by every verb")
    if report.duplicates and not straddling:
        report.warnings.append(f"{len(report.duplicates)} group(s) of identical images under different paths")
    rare = [entry for entry in report.findings if entry["positive_patients"] < MIN_POSITIVE_PATIENTS]
    if rare:
        report.warnings.append(
            f"{len(rare)} finding(s) with fewer than {MIN_POSITIVE_PATIENTS} positive patients, too few to evaluate: "
            + ", ".join(f"{entry['finding']} ({entry['positive_patients']})" for entry in rare)
        )


def format_report(report: CheckReport, limit: int = 10) -> str:
    lines = [
        f"{report.manifest}: {report.images} images, {report.readable} readable, {report.patients} patients "
        f"(at most {report.most_images_per_patient} images per patient)",
        "labels:  "
        + ", ".join(f"{label} {count} images / {report.patients_per_label.get(label, 0)} patients" for label, count in report.labels.items()),
        "splits:  " + ", ".join(f"{split} {count}" for split, count in report.splits.items()),
    ]
    if report.sizes:
        height, width = report.sizes["height"], report.sizes["width"]
        lines.append(
            f"sizes:   width {width['min']}–{width['max']} (median {width['median']:g}), height {height['min']}–{height['max']} "
            f"(median {height['median']:g}); most common " + ", ".join(f"{shape} ×{n}" for shape, n in report.sizes["most_common_wxh"].items())
        )
    lines += format_findings(report.findings)
    for path, reason in report.unreadable[:limit]:
        lines.append(f"unreadable: {path}: {reason}")
    if len(report.unreadable) > limit:
        lines.append(f"unreadable: ... and {len(report.unreadable) - limit} more")
    for group in report.duplicates[:limit]:
        lines.append("duplicate: " + " = ".join(group))
    for patient, splits in list(report.patients_across_splits.items())[:limit]:
        lines.append(f"patient in two splits: {patient}: {', '.join(splits)}")
    lines += [f"warning: {text}" for text in report.warnings]
    lines += [f"FATAL: {text}" for text in report.fatal]
    lines.append("verdict: " + ("not usable as it is" if report.fatal else "usable"))
    return "\n".join(lines)


def format_findings(findings: list[dict]) -> list[str]:
    """The per-finding counts as an aligned table: images / patients per column."""
    if not findings:
        return []
    header = ("finding", "positive", "negative", "unlabelled")
    table = [header] + [
        (entry["finding"], *(f"{entry[kind + '_images']} / {entry[kind + '_patients']}" for kind in ("positive", "negative", "unlabelled")))
        for entry in findings
    ]
    widths = [max(len(row[k]) for row in table) for k in range(len(header))]
    lines = [f"findings: {len(findings)} (images / patients)"]
    for row in table:
        lines.append("  " + row[0].ljust(widths[0]) + "".join("  " + cell.rjust(width) for cell, width in zip(row[1:], widths[1:])))
    return lines
