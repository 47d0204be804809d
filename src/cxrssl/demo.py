"""The built-in demo: the whole method end to end on phantom radiographs.

phantoms (an unlabelled pool and a labelled task, different patients) -> SimCLR
pretraining on the pool -> frozen features of the task -> logistic-regression probe
-> a Table III row for the pretrained backbone beside one for the same backbone at
random initialisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from cxrssl.config import PretrainConfig, load_pretrain_config
from cxrssl.data.manifest import read_manifest
from cxrssl.data.phantom import write_phantom_dataset
from cxrssl.eval.evaluate import evaluate_backbone, load_task, write_predictions
from cxrssl.eval.features import BackboneSpec
from cxrssl.fileio import atomic_write_json, atomic_write_text
from cxrssl.report.plots import plot_loss_curve
from cxrssl.report.tables import csv_table, markdown_table


@dataclass(frozen=True)
class DemoSettings:
    pool_images: int = 1000
    task_images: int = 480
    phantom_size: int = 128
    seed: int = 0
    bootstrap: int = 1000


def run_demo(out_dir: str | Path, settings: DemoSettings = DemoSettings(), config: PretrainConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into ``out_dir``; returns the results that ``results.json`` holds."""
    out_dir = Path(out_dir)
    config = config or load_pretrain_config("demo", {"seed": settings.seed})
    started = time.perf_counter()
    say = print if progress else (lambda *args, **kwargs: None)

    say(f"[1/5] phantom radiographs: {settings.pool_images} unlabelled (pool), {settings.task_images} labelled (task)")
    pool = _phantoms(out_dir / "phantoms" / "pool", settings.pool_images, settings.phantom_size, settings.seed * 2 + 1, progress)
    task_manifest = _phantoms(out_dir / "phantoms" / "task", settings.task_images, settings.phantom_size, settings.seed * 2 + 2, progress)

    say(f"[2/5] SimCLR pretraining: {config.arch}, {config.image_size} px, batch {config.batch_size}, {config.epochs} epochs")
    from cxrssl.train import RunFolder, pretrain

    run = RunFolder(out_dir / "run")
    resume = run.state.is_file()  # a killed demo picks up where it stopped
    pretrained = pretrain(pool, run.root, config, resume=resume, progress=progress)

    say("[3/5] linear probe on frozen features: pretrained vs random initialisation")
    task = load_task(task_manifest, config.image_size, progress=progress)
    rows = []
    for label, spec in (
        (f"SimCLR pretrained ({config.epochs} epochs)", BackboneSpec.from_checkpoint(run.checkpoint(config.epochs))),  # always kept
        ("random initialisation", BackboneSpec.random(config.arch, config.image_size, config.seed)),
    ):
        result = evaluate_backbone(spec, task, seed=settings.seed, bootstrap=settings.bootstrap, progress=progress)
        slug = "pretrained" if "SimCLR" in label else "random_init"
        write_predictions(result, task, out_dir / f"predictions_{slug}.csv")
        rows.append((label, result.to_dict()))

    say("[4/5] table, loss curve, config")
    table = markdown_table(rows)
    atomic_write_text(out_dir / "table.md", table)
    atomic_write_text(out_dir / "table.csv", csv_table(rows))
    plot_loss_curve(list(range(1, len(pretrained.losses) + 1)), pretrained.losses, out_dir / "loss.png")
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump({"demo": settings.__dict__, "pretrain": config.to_dict()}, sort_keys=False))
    results = {
        "rows": dict(rows),
        "losses": pretrained.losses,
        "wall_s": round(time.perf_counter() - started, 1),
        "task_images": len(task.manifest),
        "pool_images": pretrained.images,
    }
    say("[5/5] HTML report: sweep over the kept checkpoints, t-SNE, Grad-CAM, errors")
    from cxrssl.report.html import build_report

    build_report(run.root, [str(task_manifest)], out_dir / "report.html", seed=settings.seed, bootstrap=settings.bootstrap, progress=progress)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out_dir / "results.json", results)
    say("\n" + table)
    say(f"wrote {out_dir}/: report.html, table.md, table.csv, results.json, loss.png, config.yaml, predictions_*.csv, run/ ({results['wall_s']} s)")
    return results


def _phantoms(folder: Path, count: int, size: int, seed: int, progress: bool) -> Path:
    manifest = folder / "labels.csv"
    if manifest.is_file() and len(read_manifest(manifest)) == count:
        return manifest  # written completely by an earlier, interrupted demo
    return write_phantom_dataset(folder, n=count, size=size, seed=seed, progress=progress)


def quick_settings() -> tuple[DemoSettings, PretrainConfig]:
    """A seconds-long version of the demo for tests."""
    settings = DemoSettings(pool_images=96, task_images=120, phantom_size=64, bootstrap=50)
    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=32, epochs=2, hidden_features=64, out_features=16)
    return settings, config
