"""SimCLR pretraining throughput and model FLOP utilisation (MFU) on one GPU.

Called by bench/gpu.sh. It needs only what the GPU machine has (torch, torchvision,
numpy, Pillow, tqdm; not pydicom or grad-cam), and reads through cxrssl's own
ImageSet and training engine (``cxrssl.engine``: batch feeder, augmentation, step,
loss tracking), so what it times is the loop ``cxrssl pretrain`` runs.

For each batch size: pixels come from a uint8 array on disk (memory-mapped, as
`cxrssl cache` writes it), are read ahead in a thread and copied to the GPU from
pinned memory, augmented there (module A, two views), and trained on with bf16
autocast, channels_last and fused Adam (eager, then torch.compile); the loss is read
back every few steps, as in training. It prints images/s (source images; each gives two views), the
FLOPs of one step counted by torch.utils.flop_counter, achieved TFLOP/s, MFU against
both the measured bf16 matmul peak and a reference peak (790 TFLOP/s by default), peak memory, and the
projected wall time of EPOCHS epochs over DATASET images.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from cxrssl.data.images import ImageSet
from cxrssl.data.manifest import Manifest, ManifestRow
from cxrssl.engine import BatchFeeder, LossTracker, make_optimizer, make_views, prepare_device, sync_interval, training_step
from cxrssl.seeding import derived_generator
from cxrssl.ssl.augment import AugmentConfig, BatchAugment
from cxrssl.ssl.methods import SimCLR


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int = 8192, repeats: int = 20) -> float:
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def make_cache(folder: Path, count: int, side: int) -> ImageSet:
    """A memory-mapped uint8 array like `cxrssl cache` writes, read through the ImageSet the
    training loop reads: smooth blobs, so blur and crops do real work."""
    pixels = np.memmap(folder / "pixels.u8", dtype=np.uint8, mode="w+", shape=(count, side, side))
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(count, side // 16, side // 16), dtype=np.uint8)
    pixels[:] = np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)
    pixels.flush()
    mapped = np.memmap(folder / "pixels.u8", dtype=np.uint8, mode="r", shape=(count, side, side))
    manifest = Manifest([ManifestRow(f"{index}.png") for index in range(count)], folder)
    return ImageSet(manifest, mapped, np.arange(count), side, origin=f"cache {folder}")


def run(args, device, cache, batch: int, compiled: bool) -> dict:
    torch.manual_seed(0)
    model = SimCLR(args.arch).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), 5e-4, 0.0, device)
    torch._dynamo.reset()  # a fresh compilation per batch size, not a dynamic-shape recompile
    forward = torch.compile(model, dynamic=False) if compiled else model
    augment = BatchAugment(AugmentConfig(), args.image_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    order = np.random.default_rng(batch).permutation(len(cache))
    read_every = sync_interval(device)

    def train_steps(steps: int) -> float:
        """Images/s over ``steps`` steps of the training loop: feeder, GPU augmentation, step, loss reads."""
        batches = BatchFeeder(cache.batch, np.resize(order, steps * batch), batch, device)
        tracker, generator = LossTracker(device), derived_generator(0, batch)
        started = time.perf_counter()
        for step, pixels in enumerate(batches):
            tracker.add(training_step(forward, optimizer, make_views(augment, pixels, generator, True), autocast), step)
            if (step + 1) % read_every == 0:
                tracker.diverged_at()
        if tracker.diverged_at() is not None:
            raise SystemExit(f"{args.arch} batch {batch}: the loss diverged")
        synchronize(device)
        return steps * batch / (time.perf_counter() - started)

    started = time.perf_counter()
    train_steps(args.warmup)  # compilation, cuDNN autotuning, allocator growth
    warmup_s = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    end_to_end = train_steps(args.steps)
    views = make_views(augment, cache.batch(order[:batch]).to(device), derived_generator(1, batch), True)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        training_step(forward, optimizer, views, autocast)
    synchronize(device)
    compute_only = args.steps * batch / (time.perf_counter() - started)
    with FlopCounterMode(display=False) as counter:  # the eager model: the same FLOPs, counted reliably
        training_step(model, optimizer, views, autocast)
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "images_per_s": end_to_end,
        "compute_only": compute_only,
        "flops_per_step": counter.get_total_flops(),
        "peak_gib": peak_gib,
        "warmup_s": warmup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="wide_resnet50_2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache-images", type=int, default=4096)
    parser.add_argument("--batches", default="128,256")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", choices=("auto", "off"), default="auto", help="auto: also measure torch.compile")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--reference-tflops",
        type=float,
        default=790.0,
        help="bf16 peak that MFU is also given against: 790, the H200 figure the project's 45 %% MFU goal is set against (the SXM datasheet says 989)",
    )
    parser.add_argument("--dataset-images", type=int, default=224_316, help="CheXpert's images")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        prepare_device(device)
        print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}")
    peak = matmul_peak_tflops(
        device,
        torch.bfloat16 if device.type == "cuda" else torch.float32,
        size=8192 if device.type == "cuda" else 1024,
        repeats=20 if device.type == "cuda" else 3,
    )
    print(f"measured matmul peak: {peak:.1f} TFLOP/s ({'bf16' if device.type == 'cuda' else 'fp32'}); reference peak {args.reference_tflops:.0f}")
    with tempfile.TemporaryDirectory() as workdir:
        cache = make_cache(Path(workdir), args.cache_images, args.image_size)
        # Eager first for every batch size: if time runs out, it is a compiled figure that is lost.
        for compiled in (False, True) if args.compile == "auto" else (False,):
            for batch in (int(b) for b in args.batches.split(",")):
                result = run(args, device, cache, batch, compiled)
                tflops = result["flops_per_step"] * result["images_per_s"] / batch / 1e12
                hours = args.epochs * args.dataset_images / result["images_per_s"] / 3600
                print(
                    f"{args.arch} {args.image_size}px batch {batch:4d} {'compiled' if compiled else 'eager   '}: "
                    f"{result['images_per_s']:8.1f} img/s end to end ({result['compute_only']:8.1f} compute only), "
                    f"{result['flops_per_step'] / batch / 2 / 1e9:5.1f} GFLOP per view, {tflops:6.1f} TFLOP/s, "
                    f"MFU {100 * tflops / peak:5.1f} % of measured / {100 * tflops / args.reference_tflops:5.1f} % of reference peak, "
                    f"peak memory {result['peak_gib']:.1f} GiB, {args.epochs} epochs x {args.dataset_images} images: {hours:.2f} h "
                    f"(warm-up {result['warmup_s']:.0f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
