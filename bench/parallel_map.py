"""cxrssl's worker pool against multiprocessing.Pool.imap (its former implementation), side by side, in images/s.

    python bench/parallel_map.py                      # 1,500 films of the pool in ../shared/data, 128 px, 2 workers
    python bench/parallel_map.py --images 4000 --size 256 --workers 4 --rounds 3

Each round decodes the same films (PNG/JPEG -> square uint8, `decode_square`) three ways, in
turn: in this process, with ``multiprocessing.Pool.imap`` (chunks of 16, blocks of 2,048: what
``parallel_map`` did before it had its own pool) and with ``cxrssl.workers.parallel_map``. The
first round warms the page cache and is not counted. Prints the CPU, each way's median rate
and the ratio of the two pools.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

from cxrssl.data.io import decode_square
from cxrssl.data.manifest import read_manifest
from cxrssl.hardware import cpu_description
from cxrssl.workers import parallel_map

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


def with_pool_imap(tasks, workers: int, chunksize: int = 16, block: int = 2048) -> int:
    done = 0
    with multiprocessing.Pool(workers) as pool:
        for start in range(0, len(tasks), block):
            for _ in pool.imap(decode_square, tasks[start : start + block], chunksize):
                done += 1
    return done


def with_parallel_map(tasks, workers: int) -> int:
    return sum(1 for _ in parallel_map(decode_square, tasks, workers))


def in_this_process(tasks, workers: int) -> int:
    return sum(1 for _ in map(decode_square, tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=SHARED_POOL)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.manifest.is_file():
        raise SystemExit(f"{args.manifest}: no such manifest; pass --manifest LABELS.csv of a folder of films")
    paths = [str(path) for path in read_manifest(args.manifest).files][: args.images]
    tasks = [(path, args.size) for path in paths]
    print(cpu_description())
    print(
        f"{len(tasks)} films of {args.manifest.parent.name}, decoded to {args.size} px, {args.workers} workers, {args.rounds} rounds after a warm-up"
    )
    ways = {"one process": in_this_process, "multiprocessing.Pool.imap": with_pool_imap, "parallel_map": with_parallel_map}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds + 1):
        for name, way in ways.items():
            started = time.perf_counter()
            count = way(tasks, args.workers)
            seconds = time.perf_counter() - started
            assert count == len(tasks)
            if round_:
                rates[name].append(count / seconds)
    for name, values in rates.items():
        print(f"{name:>26}: {statistics.median(values):7.0f} img/s (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratio = statistics.median(rates["parallel_map"]) / statistics.median(rates["multiprocessing.Pool.imap"])
    print(f"parallel_map / Pool.imap: x{ratio:.2f}")


if __name__ == "__main__":
    main()
