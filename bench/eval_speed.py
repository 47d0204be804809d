"""Speed of the evaluation side: feature extraction, and the probe's full C grid.

    python bench/eval_speed.py

Prints
  1. extraction images/s on the CPU (frozen resnet18 at 128 px and wide_resnet50_2 at
     224 px, eval mode, batches of 128, pixels from a cache of real films), beside a
     plain float32 NCHW loop over the same batches;
  2. wall time and peak memory of the probe's model selection at the scale of a
     real task: 5,000 images x 2,048 features (wide_resnet50_2's width), 6 C values x
     5 patient-grouped folds, then the refit, then 1,000 bootstrap resamples.
The grid runs in a fresh child process, timed once as it is, then once more under
tracemalloc for the peak of what numpy and scikit-learn allocate; the growth of the
child's resident-set high-water mark over the timed grid is printed too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from cxrssl.data.cache import build_cache
from cxrssl.data.images import open_image_set
from cxrssl.data.manifest import read_manifest
from cxrssl.eval.features import extract_features
from cxrssl.models import build_backbone, normalize_pixels

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


@torch.no_grad()
def plain_extract(backbone: torch.nn.Module, images, batch_size: int = 128) -> None:
    """The textbook loop, for comparison: float32, default (NCHW) layout."""
    for start in range(0, len(images), batch_size):
        batch = images.batch(np.arange(start, min(start + batch_size, len(images)))).unsqueeze(1)
        backbone(normalize_pixels(batch))


def extraction_rates(arch: str, size: int, images: int, cache: Path) -> tuple[float, float]:
    """Images/s of cxrssl's extract_features and of the plain loop, alternated twice each."""
    image_set = open_image_set(cache, size).select(range(images))
    ours, plain = build_backbone(arch).eval(), build_backbone(arch).eval()
    extract_features(ours, image_set.select(range(8)), device="cpu")  # warm-up
    plain_extract(plain, image_set.select(range(8)))
    seconds = {"cxrssl": 0.0, "plain": 0.0}
    for _ in range(2):
        started = time.perf_counter()
        extract_features(ours, image_set, device="cpu")
        seconds["cxrssl"] += time.perf_counter() - started
        started = time.perf_counter()
        plain_extract(plain, image_set)
        seconds["plain"] += time.perf_counter() - started
    return 2 * images / seconds["cxrssl"], 2 * images / seconds["plain"]


def synthetic_task(n: int, dims: int, seed: int = 0):
    """Features where the class shifts a few hundred dimensions a little, patients of 1-3 images."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n), rng.integers(1, 4, size=n))[:n]
    patient_class = rng.integers(0, 2, size=n)
    targets = patient_class[patients]
    features = rng.normal(size=(n, dims)).astype(np.float32)
    features[:, :300] += 0.08 * targets[:, None]
    labels = np.where(targets == 1, "Pneumonia", "Normal")
    return features, labels, [f"p{p}" for p in patients]


def peak_rss_kib() -> int:
    """This process's own resident-set high-water mark.

    Not getrusage's ru_maxrss: Linux carries that over from the parent through fork and
    exec, so a child spawned after the extraction would report the extraction's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux


def probe_grid(n: int, dims: int, queue) -> None:
    from cxrssl.eval.probe import ProbeSettings, run_probe

    features, labels, patients = synthetic_task(n, dims)
    rss_before = peak_rss_kib()
    started = time.perf_counter()
    result = run_probe(features, labels, patients, settings=ProbeSettings(bootstrap=1000))
    seconds = time.perf_counter() - started  # timed untraced: tracemalloc slows numpy down
    rss_growth = peak_rss_kib() - rss_before
    tracemalloc.start()  # numpy and scikit-learn report their array allocations to it
    run_probe(features, labels, patients, settings=ProbeSettings(bootstrap=1000))
    traced_peak = tracemalloc.get_traced_memory()[1]
    queue.put((seconds, traced_peak, rss_growth, peak_rss_kib(), result.chosen_c, result.metrics["auc"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="films for the extraction rate")
    parser.add_argument("--probe-images", type=int, default=5000)
    parser.add_argument("--probe-dims", type=int, default=2048)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if SHARED_POOL.is_file():
        manifest = read_manifest(SHARED_POOL).select(range(args.images))
        with tempfile.TemporaryDirectory() as workdir:
            build_cache(manifest, Path(workdir) / "cache", 224, progress=False)
            for arch, size, count in (("resnet18", 128, args.images), ("wide_resnet50_2", 224, min(args.images, 128))):
                ours, plain = extraction_rates(arch, size, count, Path(workdir) / "cache")
                print(
                    f"extract {arch:16s} {size} px: {ours:7.1f} img/s; plain float32 NCHW loop {plain:7.1f} img/s; ratio {ours / plain:.2f} ({count} real films)"
                )
    else:
        print(f"{SHARED_POOL} absent: extraction rate skipped")
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=probe_grid, args=(args.probe_images, args.probe_dims, queue))
    child.start()
    seconds, traced_peak, growth_kib, peak_kib, chosen_c, auc = queue.get()
    child.join()
    features_mib = args.probe_images * args.probe_dims * 4 / 2**20
    print(
        f"probe {args.probe_images} x {args.probe_dims} ({features_mib:.0f} MiB of float32 features): 6 C x 5 folds + refit + 1000 bootstrap "
        f"in {seconds:.1f} s; peak of arrays allocated by the probe {traced_peak / 2**20:.0f} MiB (tracemalloc), "
        f"resident set grew {growth_kib / 1024:.0f} MiB over the grid; child's peak RSS {peak_kib / 1024:.0f} MiB "
        f"(libraries and the features included); C={chosen_c}, AUC {auc:.3f}"
    )


if __name__ == "__main__":
    main()
