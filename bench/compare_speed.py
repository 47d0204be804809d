"""Speed of `cxrssl compare`: extraction once per backbone, then the whole grid of probe fits.

    python bench/compare_speed.py                      # 3 backbones x 6 budgets x 5 x 5 folds, 5,000 x 2,048
    python bench/compare_speed.py --images 1000 --dims 512 --repeats 1   # a quick look

Prints the CPU it ran on, then
  1. extraction: features of the first --images films of shared/data/pool for each of 3
     backbones (random ResNet-50s, 2,048-d features, at --extract-size px), timed, then
     the same call again, answered by the feature cache;
  2. the grid: `compare_backbones` on a task of --images images x --dims features per
     backbone (synthetic features in which the class shifts 300 dimensions by 0.06, 0.08
     and 0.10 for the three backbones; patients of 1-3 images), at the budgets
     10,25,50,100,250,all and --repeats x 5 folds: wall time, fits, time per fit, and the
     share of the whole taken by extraction and by fitting.
Target (issue 12): the grid for 3 backbones x 6 budgets x 25 folds at 5,000 x 2,048 in
under 10 minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


def synthetic_features(n: int, dims: int, shifts=(0.06, 0.08, 0.10), seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n), rng.integers(1, 4, size=n))[:n]
    targets = rng.integers(0, 2, size=n)[patients]
    features = []
    for shift in shifts:
        values = rng.normal(size=(n, dims)).astype(np.float32)
        values[:, :300] += shift * targets[:, None]
        features.append(values)
    labels = ["Pneumonia" if t else "Normal" for t in targets]
    return features, labels, [f"p{p}" for p in patients]


def extraction_seconds(images: int, size: int) -> tuple[float, float, int]:
    """Seconds to extract the three backbones' features, then to get them again from the cache."""
    from cxrssl.data.images import open_image_set
    from cxrssl.data.manifest import read_manifest
    from cxrssl.eval.features import BackboneSpec, features_for

    task = open_image_set(read_manifest(SHARED_POOL).select(range(images)), size, progress=False)
    specs = [BackboneSpec.random("resnet50", size, seed) for seed in range(3)]
    started = time.perf_counter()
    dims = [features_for(spec, task).shape[1] for spec in specs]
    first = time.perf_counter() - started
    started = time.perf_counter()
    for spec in specs:
        features_for(spec, task)
    return first, time.perf_counter() - started, dims[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--extract-size", type=int, default=64, help="image size of the extraction part (default 64)")
    parser.add_argument("--labels", default="10,25,50,100,250,all", help="budgets (default 10,25,50,100,250,all)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (default: one per core)")
    args = parser.parse_args()

    from cxrssl.eval.compare import CompareSettings, NamedBackbone, compare_backbones
    from cxrssl.eval.features import BackboneSpec
    from cxrssl.eval.probe import ProbeSettings
    from cxrssl.hardware import cpu_description

    print(cpu_description())
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["CXRSSL_CACHE"] = workdir  # a cold cache, then a warm one
        extract_s = cached_s = 0.0
        if SHARED_POOL.is_file():
            extract_s, cached_s, dims = extraction_seconds(args.images, args.extract_size)
            print(
                f"extraction: 3 x resnet50 ({dims}-d) at {args.extract_size} px on {args.images} pool films: {extract_s:.1f} s "
                f"({3 * args.images / extract_s:.0f} img/s); again from the feature cache: {cached_s:.2f} s"
            )
        else:
            print(f"{SHARED_POOL} absent: extraction not timed")

        features, labels, patients = synthetic_features(args.images, args.dims)
        names = ["weak", "middle", "strong"]
        backbones = [NamedBackbone(name, BackboneSpec.random("resnet50", 224, seed)) for seed, name in enumerate(names)]
        task = SimpleNamespace(manifest=SimpleNamespace(labels=labels, patient_keys=patients, splits=[""] * len(labels)))
        budgets = tuple(None if b == "all" else int(b) for b in args.labels.split(","))
        settings = CompareSettings(budgets, 5, args.repeats, ProbeSettings(bootstrap=0), reference="weak", jobs=args.jobs)
        started = time.perf_counter()
        comparison = compare_backbones(
            backbones, [("synthetic", task)], Path(workdir) / "compare", settings, progress=False, features={"synthetic": dict(zip(names, features))}
        )
        fit_s = time.perf_counter() - started
    fits = len(comparison.payload["folds"])
    total = extract_s + fit_s
    print(
        f"grid: 3 backbones x {len(budgets)} budgets x {args.repeats} x 5 folds = {fits} probe fits (each: 6 C x 5 inner folds + refit) "
        f"on {args.images} x {args.dims}: {fit_s:.1f} s, {fit_s / fits:.2f} s per fit, {settings.jobs or os.cpu_count()} worker(s)"
    )
    if total:
        print(f"share of the whole: extraction {100 * extract_s / total:.0f} %, fitting and statistics {100 * fit_s / total:.0f} %")
    rows = {(r["backbone"], r["budget"]): r for r in comparison.payload["tasks"][0]["rows"]}
    for budget in [b for b in ("10", "100", "all") if ("strong", b) in rows]:
        d = rows[("strong", budget)]["difference"]["auc"]
        print(
            f"  strong vs weak at {budget:>3} labels/class: ΔAUC {100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], p {d['p_value']:.3g}"
        )


if __name__ == "__main__":
    main()
