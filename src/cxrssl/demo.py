"""The built-in demo: the whole method end to end on phantom radiographs.

phantoms (an unlabelled pool and a labelled task, different patients) -> self-supervised
pretraining on the pool -> frozen features of the task -> ``cxrssl compare``: the
logistic-regression probe of the pretrained backbone and of the same backbone at random
initialisation on identical patient-grouped folds and label budgets, with the paired
AUC difference and its 95 % interval per budget -> the same comparison on a multi-label
phantom task (Consolidation, Cardiomegaly, Effusion, Edema), per finding and for their
macro mean AUC -> the HTML report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from cxrssl.config import PretrainConfig, load_pretrain_config
from cxrssl.data.manifest import read_manifest
from cxrssl.data.phantom import write_phantom_dataset
from cxrssl.eval.compare import CompareSettings, NamedBackbone, budget_name, compare_backbones
from cxrssl.eval.evaluate import load_task
from cxrssl.eval.features import DEFAULT_READOUT, BackboneSpec
from cxrssl.eval.probe import ProbeSettings
from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.hardware import cpu_description
from cxrssl.report.compare import write_compare_outputs
from cxrssl.report.markdown import md_text
from cxrssl.report.plots import plot_loss_curve
from cxrssl.report.tables import compare_tables
from cxrssl.run import RunFolder
from cxrssl.ssl.methods import METHODS


@dataclass(frozen=True)
class DemoSettings:
    pool_images: int = 1000
    task_images: int = 480
    phantom_size: int = 128
    seed: int = 0
    bootstrap: int = 500  # the report's Table III intervals (500 resamples: percentile CIs stable to about 0.5 AUC points)
    budgets: tuple[int | None, ...] = (10, 25, 50, None)  # labelled patients per class compared
    folds: int = 5
    repeats: int = 3
    findings_budgets: tuple[int | None, ...] = (25, 50, None)  # labelled patients (in all) of the multi-label task; () = no multi-label stage


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), config: PretrainConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into ``out_dir``; returns the results that ``results.json`` holds."""
    out_dir = Path(out_dir)
    config = config or load_pretrain_config("demo", {"seed": settings.seed})
    started = time.perf_counter()
    say = print if progress else (lambda *args, **kwargs: None)
    stages: dict[str, float] = {}  # seconds per stage, in results.json

    def stage_done(name: str) -> None:
        stages[name] = round(time.perf_counter() - started - sum(stages.values()), 1)

    say(cpu_description())
    say(f"[1/6] phantom radiographs: {settings.pool_images} unlabelled (pool), {settings.task_images} labelled (task)")
    pool = _phantoms(out_dir / "phantoms" / "pool", settings.pool_images, settings.phantom_size, settings.seed * 2 + 1, progress)
    task_manifest = _phantoms(out_dir / "phantoms" / "task", settings.task_images, settings.phantom_size, settings.seed * 2 + 2, progress)
    stage_done("phantoms")

    say(f"[2/6] {config.method} pretraining: {config.arch}, {config.image_size} px, batch {config.batch_size}, {config.epochs} epochs")
    from cxrssl.train import pretrain

    run = RunFolder(out_dir / "run")
    resume = run.state.is_file()  # a killed demo picks up where it stopped
    pretrained = pretrain(pool, run.root, config, resume=resume, progress=progress)
    stage_done("pretraining")

    say(
        f"[3/6] does pretraining pay? pretrained vs random initialisation at {', '.join(map(budget_name, settings.budgets))} labelled patients per class"
    )
    task = load_task(task_manifest, config.image_size, progress=progress)
    backbones = [
        NamedBackbone(
            f"{METHODS[config.method].title} {config.epochs} epochs",
            replace(BackboneSpec.from_checkpoint(run.checkpoint(config.epochs)), readout=DEFAULT_READOUT),
        ),  # always kept
        NamedBackbone("random init", BackboneSpec.random(config.arch, config.image_size, config.seed, DEFAULT_READOUT)),
    ]
    compare_settings = CompareSettings(settings.budgets, settings.folds, settings.repeats, ProbeSettings(seed=settings.seed, bootstrap=0))
    comparison = compare_backbones(backbones, [("phantom task", task)], out_dir / "compare", compare_settings, progress=progress, overwrite=True)
    write_compare_outputs(comparison.payload, comparison.folder)
    claim = demo_claim(comparison.payload)
    stage_done("comparison")
    compares = [comparison.payload]
    if settings.findings_budgets:
        say(
            f"[4/6] per finding: the same backbones on phantoms with findings, at {', '.join(map(budget_name, settings.findings_budgets))} labelled patients"
        )
        findings_manifest = _phantoms(
            out_dir / "phantoms" / "findings", settings.task_images, settings.phantom_size, settings.seed * 2 + 3, progress, findings=True
        )
        per_finding = ProbeSettings(seed=settings.seed, bootstrap=0, findings=())
        findings = load_task(findings_manifest, config.image_size, progress=progress, settings=per_finding)
        findings_settings = CompareSettings(settings.findings_budgets, settings.folds, settings.repeats, per_finding)
        findings_comparison = compare_backbones(
            backbones, [("phantom findings", findings)], out_dir / "compare_findings", findings_settings, progress=progress, overwrite=True
        )
        write_compare_outputs(findings_comparison.payload, findings_comparison.folder)
        compares.append(findings_comparison.payload)
        claim += " Per finding (macro mean AUC): " + demo_claim(compares[1])
        stage_done("findings comparison")

    say("[5/6] table, loss curve, config")
    table, table_csv = compare_tables(compares)
    atomic_write_text(out_dir / "table.md", table + "\n" + md_text(claim) + "\n")
    atomic_write_text(out_dir / "table.csv", table_csv)
    plot_loss_curve(list(range(1, len(pretrained.losses) + 1)), pretrained.losses, out_dir / "loss.png")
    atomic_write_text(
        out_dir / "config.yaml",
        yaml.safe_dump(
            {"demo": {**settings.__dict__, "budgets": list(map(budget_name, settings.budgets))}, "pretrain": config.to_dict()}, sort_keys=False
        ),
    )
    results = {
        "claim": claim,
        "rows": comparison.payload["tasks"][0]["rows"],
        "findings_rows": compares[1]["tasks"][0]["rows"] if len(compares) > 1 else [],
        "losses": pretrained.losses,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu": cpu_description(),
        "autocast": run.read_config()["autocast"],
        "task_images": len(task.manifest),
        "pool_images": pretrained.images,
    }
    stage_done("tables")
    say("[6/6] HTML report: sweep over the kept checkpoints, t-SNE, Grad-CAM, errors")
    from cxrssl.report.html import build_report

    build_report(
        run.root,
        [str(task_manifest)],
        out_dir / "report.html",
        ProbeSettings(seed=settings.seed, bootstrap=settings.bootstrap),
        progress=progress,
        compares=compares,
    )
    stage_done("report")
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["stages_s"] = stages
    atomic_write_json(out_dir / "results.json", results)
    say("\n" + table + "\n" + claim)
    say(f"wrote {out_dir}/: report.html, table.md, table.csv, results.json, loss.png, config.yaml, compare/, run/")
    say(f"{results['wall_s']} s in all: " + ", ".join(f"{name} {seconds:g} s" for name, seconds in stages.items()))
    return results


def demo_claim(payload: dict) -> str:
    """The demo's conclusion, read off the paired differences: where the 95 % interval lies above (or below) zero."""
    rows = [row for row in payload["tasks"][0]["rows"] if row["difference"]]
    better = [row["budget"] for row in rows if row["difference"]["auc"]["low"] > 0]
    worse = [row["budget"] for row in rows if row["difference"]["auc"]["high"] < 0]
    name, reference = rows[0]["backbone"], payload["reference"]
    unit = payload["tasks"][0].get("budget_unit", "patients per class")
    said = []
    if better:
        said.append(f"{name} beats {reference} at {', '.join(better)} labelled {unit} (paired 95 % CI of the AUC difference above 0)")
    if worse:
        said.append(f"{name} is worse than {reference} at {', '.join(worse)} labelled {unit} (CI below 0)")
    if not said:
        said.append(f"{name} is not distinguishable from {reference} at any budget (every paired 95 % CI holds 0)")
    return "; ".join(said) + "."


def _phantoms(folder: Path, count: int, size: int, seed: int, progress: bool, findings: bool = False) -> Path:
    manifest = folder / "labels.csv"
    if manifest.is_file() and len(read_manifest(manifest)) == count:
        return manifest  # written completely by an earlier, interrupted demo
    return write_phantom_dataset(folder, n=count, size=size, seed=seed, progress=progress, findings=findings)
