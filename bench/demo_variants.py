"""Demo-sized recipe variants on the demo's phantoms: pretrain, then the demo's paired comparison.

Each variant is the demo preset with some settings changed; it is pretrained on the
demo's 1,000 unlabelled phantoms and compared with random initialisation exactly as
`cxrssl demo` does (3 x 5 patient-grouped folds, 10/25/50/all labelled patients per
class). Prints the pretraining and comparison times, the table and the claim; writes
each variant's compare files under OUT/NAME/compare. How the demo preset was chosen
(docs/recipes.md):

    python bench/demo_variants.py v48e12 '{"image_size": 48, "epochs": 12, "keep_epochs": [12], "amp": false}' --out demo-variants
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/demo_variants.py ...   # as an AVX2-only CPU computes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cxrssl.config import load_pretrain_config
from cxrssl.data.phantom import write_phantom_dataset
from cxrssl.demo import DemoSettings, demo_claim
from cxrssl.eval.compare import CompareSettings, NamedBackbone, compare_backbones
from cxrssl.eval.evaluate import load_task
from cxrssl.eval.features import BackboneSpec
from cxrssl.eval.probe import ProbeSettings
from cxrssl.hardware import cpu_description
from cxrssl.report.tables import compare_markdown_table
from cxrssl.train import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("overrides", type=json.loads, help="settings that differ from the demo preset, as JSON")
    parser.add_argument("--out", type=Path, default=Path("demo-variants"))
    args = parser.parse_args()
    settings = DemoSettings()
    phantoms = args.out / "phantoms"  # the demo's own phantoms (same seeds), made once
    for part, count, seed in (("pool", settings.pool_images, settings.seed * 2 + 1), ("task", settings.task_images, settings.seed * 2 + 2)):
        if not (phantoms / part / "labels.csv").is_file():
            write_phantom_dataset(phantoms / part, n=count, size=settings.phantom_size, seed=seed, progress=False)
    config = load_pretrain_config("demo", args.overrides)
    folder = args.out / args.name
    print(cpu_description())
    started = time.perf_counter()
    pretrain(phantoms / "pool" / "labels.csv", folder / "run", config, progress=False, resume=(folder / "run" / "state" / "last.json").is_file())
    pretrained = time.perf_counter()
    task = load_task(phantoms / "task" / "labels.csv", config.image_size, progress=False)
    backbones = [
        NamedBackbone("pretrained", BackboneSpec.from_checkpoint(folder / "run" / "checkpoints" / f"epoch_{config.epochs:04d}.json")),
        NamedBackbone("random init", BackboneSpec.random(config.arch, config.image_size, config.seed)),
    ]
    compare = CompareSettings(settings.budgets, settings.folds, settings.repeats, ProbeSettings(seed=settings.seed, bootstrap=0))
    comparison = compare_backbones(backbones, [("phantom task", task)], folder / "compare", compare, progress=False, overwrite=True)
    print(f"{args.name} {json.dumps(args.overrides)}: pretraining {pretrained - started:.0f} s, comparison {time.perf_counter() - pretrained:.0f} s")
    print(compare_markdown_table(comparison.payload))
    print(demo_claim(comparison.payload))


if __name__ == "__main__":
    main()
