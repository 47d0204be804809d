"""Pretraining throughput and compute efficiency, measured side by side in one run.

Prints images/s of
  1. the training step alone: views already in memory, forward + backward + Adam step;
  2. augmentation alone: two views of a uint8 batch (module A, batched);
  3. decoding alone: files -> square uint8 arrays, on all cores;
  4. end to end from files: `cxrssl.train.pretrain`, one epoch, decoding at start-up included;
  5. end to end from the cache: the same epoch reading a `cxrssl cache` folder (the
     training loop's own images/s, as logged);
the ratios of (4) and (5) to (1); and the step's FLOPs (torch.utils.flop_counter),
its achieved GFLOP/s and that as a share of this machine's measured dense-kernel peak
(the faster of a matmul and a 1x1 convolution) in the step's precision. The step alone is timed in float32 and, where the CPU has
native bf16, in bfloat16 autocast too (the default there); (4) and (5) run in the
default precision. ``--method`` picks the pretraining method (MoCo and BYOL do one
more forward pass per step for their target networks; ``all`` times each step).
Defaults: simclr, resnet18, 128 px, batch 64, CPU, the cpu preset's settings.
The CPU model and its flags are printed first.

    python bench/pretrain_throughput.py                    # real films from ../shared/data/pool if present
    python bench/pretrain_throughput.py --images 256 --steps 4 --method all
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python bench/pretrain_throughput.py   # as on an AVX2-only CPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from engine_step import engine_step, uses_bf16  # bench/ is the script's folder
from torch.utils.flop_counter import FlopCounterMode

from cxrssl.config import load_pretrain_config, with_overrides
from cxrssl.data.cache import build_cache
from cxrssl.data.io import load_square_images
from cxrssl.data.manifest import read_manifest
from cxrssl.seeding import derived_generator
from cxrssl.ssl.augment import BatchAugment
from cxrssl.train import pretrain

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


def _manifest(images: int, workdir: Path):
    if SHARED_POOL.is_file():
        manifest = read_manifest(SHARED_POOL)
        return manifest.select(range(min(images, len(manifest)))), "real films (shared/data/pool)"
    from cxrssl.data.phantom import write_phantom_dataset

    path = write_phantom_dataset(workdir / "phantoms", n=images, size=256, seed=0, progress=False)
    return read_manifest(path), "phantoms (shared/data absent)"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f} img/s"


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """The best GFLOP/s of this machine's dense kernels with torch's threads, in the step's precision:
    a square matmul and a large 1x1 convolution (oneDNN, channels_last), whichever is faster. On some
    CPUs oneDNN's convolutions outrun the BLAS matmul, so the matmul alone would be no ceiling."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    matmul = 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9
    images, channels, side = 64, 512, 28
    x = torch.randn(images, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        started = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        convolution = 2 * images * side * side * channels * channels * repeats / (time.perf_counter() - started) / 1e9
    return max(matmul, convolution)


def time_step(config, view1, view2, steps: int) -> tuple[float, float]:
    """Seconds per training step and FLOPs of one step, for this config's method and precision."""
    step = engine_step(config, view1, view2)  # as the training loop runs it
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    with FlopCounterMode(display=False) as counter:
        step()
    return seconds, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps (after one warm-up)")
    parser.add_argument("--images", type=int, default=512, help="images for decoding and the end-to-end epoch")
    parser.add_argument("--method", choices=("simclr", "moco", "byol", "all"), default="simclr")
    args = parser.parse_args()
    methods = ("simclr", "moco", "byol") if args.method == "all" else (args.method,)
    base = with_overrides(
        load_pretrain_config("cpu"), {"method": methods[0], "queue_size": min(4096, args.images // 2) if methods[0] == "moco" else None}
    )
    config = replace(base, arch=args.arch, image_size=args.image_size, batch_size=args.batch_size, epochs=1, monitor_images=0)
    from cxrssl.hardware import cpu_description

    print(cpu_description())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.arch}, {args.image_size} px, batch {args.batch_size}")

    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        manifest, source = _manifest(args.images, workdir)

        started = time.perf_counter()
        loaded = load_square_images(manifest.files, args.image_size, progress=False)
        decode_s = time.perf_counter() - started

        pixels = torch.from_numpy(loaded.pixels[: args.batch_size].copy())
        augment = BatchAugment(config.augment, args.image_size)
        generator = derived_generator(0, 1)
        augment(pixels, generator)
        started = time.perf_counter()
        for _ in range(args.steps):
            augment(pixels, generator), augment(pixels, generator)
        augment_s = (time.perf_counter() - started) / args.steps

        use_bf16 = uses_bf16(config)
        view1, view2 = augment(pixels, generator), augment(pixels, generator)
        steps = {}  # (method, precision) -> (seconds, FLOPs)
        for method in methods:
            chosen = with_overrides(config, {"method": method, "queue_size": min(4096, args.images // 2) if method == "moco" else None})
            for precision in ("bfloat16", "float32") if use_bf16 else ("float32",):
                steps[method, precision] = time_step(replace(chosen, amp=precision == "bfloat16"), view1, view2, args.steps)
        peaks = {precision: matmul_peak_gflops(getattr(torch, precision)) for precision in {p for _, p in steps}}
        default_precision = "bfloat16" if use_bf16 else "float32"
        step_s, step_flops = steps[methods[0], default_precision]
        peak = peaks[default_precision]

        started = time.perf_counter()
        result = pretrain(manifest, workdir / "run", config, progress=False)
        end_to_end_s = time.perf_counter() - started
        trained = (result.images // args.batch_size) * args.batch_size
        build_cache(manifest, workdir / "cache", args.image_size, progress=False)
        pretrain(workdir / "cache", workdir / "cached_run", config, progress=False)
        from_cache = float((workdir / "cached_run" / "log.csv").read_text().splitlines()[1].split(",")[3])

    compute = args.batch_size / step_s
    end_to_end = trained / end_to_end_s
    print(f"data: {len(manifest)} {source}")
    for (method, precision), (seconds, flops) in steps.items():
        achieved = flops / seconds / 1e9
        print(
            f"training step alone      {_rate(args.batch_size, seconds)}   ({seconds * 1000:.0f} ms per batch; {method}, {precision}: "
            f"{achieved:.1f} GFLOP/s, {100 * achieved / peaks[precision]:.0f} % of the {precision} dense-kernel peak)"
        )
    print(f"augmentation alone       {_rate(2 * args.batch_size, 2 * augment_s)}   (two views: {augment_s * 1000:.0f} ms per batch)")
    print(f"decoding alone           {_rate(len(manifest), decode_s)}")
    print(
        f"end to end, files        {_rate(trained, end_to_end_s)}   ({trained} images trained, decoding and set-up included; {methods[0]}, {default_precision})"
    )
    print(f"end to end, cache        {from_cache:8.1f} img/s   (the epoch's training loop, reading the cache)")
    print(f"ratio files / step alone {end_to_end / compute:8.2f}")
    print(f"ratio cache / step alone {from_cache / compute:8.2f}")
    achieved = step_flops / step_s / 1e9
    print(f"step FLOPs {step_flops / 1e9:.1f} G ({step_flops / args.batch_size / 2 / 1e9:.2f} G per view, forward + backward)")
    precision = "bfloat16 autocast" if use_bf16 else "float32"
    print(f"precision {precision}, channels_last {config.channels_last}")
    print(
        f"achieved {achieved:.1f} GFLOP/s of a measured {precision.split()[0]} dense-kernel peak of {peak:.1f} GFLOP/s: {100 * achieved / peak:.0f} %"
    )


if __name__ == "__main__":
    main()
