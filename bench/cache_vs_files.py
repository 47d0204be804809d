"""Decoding from files against reading from the pixel cache, side by side, in images/s.

    python bench/cache_vs_files.py                 # the unlabelled pool in ../shared/data (5,573 films)
    python bench/cache_vs_files.py --size 128 --images 2000

Prints, for one run on this machine:
  1. decode from files: PNG/JPEG -> square uint8 at --size, on all cores (what a run
     without a cache does once at start-up, and what a data loader would do per epoch);
  2. cache build: the same decoding, written once into the memory-mapped array;
  3. cache read: random batches of 64 from the memory-mapped array, as pretraining reads them;
  4. cache read + resize: the same from a cache made at twice the size, resized per batch;
  5. memory: how much the resident set grows while decoding into memory, with cxrssl's
     loader (one preallocated array) and with the textbook list-then-np.stack, each in a
     fresh process, against the size of the decoded pixels;
and the ratio of (3) to (1).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrssl.data.cache import build_cache
from cxrssl.data.images import open_image_set
from cxrssl.data.io import decode_square, load_square_images, parallel_map
from cxrssl.data.manifest import read_manifest

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


def _read_rate(images, batch: int, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(images))
    started = time.perf_counter()
    for start in range(0, len(order) - batch + 1, batch):
        images.batch(order[start : start + batch])
    return (len(order) // batch * batch) / (time.perf_counter() - started)


def _high_water_mib() -> float:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024


def _decode_growth(files: list, size: int, textbook: bool, queue) -> None:
    """In a fresh process: the growth of its resident-set high-water mark over one decode."""
    before = _high_water_mib()
    if textbook:
        results = list(parallel_map(decode_square, [(str(path), size) for path in files]))
        pixels = np.stack([image for image, _ in results if image is not None])
    else:
        pixels = load_square_images(files, size, progress=False).pixels
    queue.put((_high_water_mib() - before, pixels.nbytes / 2**20))


def _memory_growth(files: list, size: int, textbook: bool) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_decode_growth, args=(files, size, textbook, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=SHARED_POOL)
    parser.add_argument("--images", type=int, default=0, help="use only the first N images (default all)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    if not args.manifest.is_file():
        raise SystemExit(f"{args.manifest}: not found; pass --manifest with a manifest of real images")
    manifest = read_manifest(args.manifest)
    if args.images:
        manifest = manifest.select(range(min(args.images, len(manifest))))
    print(f"{len(manifest)} images from {args.manifest}, {args.size} px, batch {args.batch}")

    started = time.perf_counter()
    load_square_images(manifest.files, args.size, progress=False)
    files_rate = len(manifest) / (time.perf_counter() - started)
    print(f"  decode from files     {files_rate:9.0f} img/s")
    with tempfile.TemporaryDirectory() as workdir:
        summary = build_cache(manifest, Path(workdir) / "cache", args.size, progress=False)
        print(f"  cache build (once)    {summary.images / summary.seconds:9.0f} img/s")
        cache_rate = _read_rate(open_image_set(Path(workdir) / "cache", args.size), args.batch)
        print(f"  cache read            {cache_rate:9.0f} img/s")
        build_cache(manifest, Path(workdir) / "big", 2 * args.size, progress=False)
        resized_rate = _read_rate(open_image_set(Path(workdir) / "big", args.size), args.batch)
        print(f"  cache read + resize   {resized_rate:9.0f} img/s   (cache at {2 * args.size} px, batches at {args.size} px)")
    print(f"  ratio cache read / decode from files: {cache_rate / files_rate:.1f}x")
    if Path("/proc/self/status").is_file():
        ours, pixels_mib = _memory_growth(manifest.files, args.size, textbook=False)
        textbook, _ = _memory_growth(manifest.files, args.size, textbook=True)
        print(
            f"  decoding into memory: {pixels_mib:.0f} MiB of pixels; resident set grew {ours:.0f} MiB with cxrssl's loader, "
            f"{textbook:.0f} MiB with list + np.stack (ratio {textbook / ours:.2f})"
        )


if __name__ == "__main__":
    main()
