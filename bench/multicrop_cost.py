"""What multi-crop costs per step, beside plain two-view training, measured side by side in one run.

For each number N of small views (multi-crop, Caron et al. 2020: two full-size views
plus N small ones) this times the training step of ``cxrssl pretrain`` (the engine's
``make_views`` and ``training_step``, bf16 where the CPU has it), interleaving the
settings round by round so that a machine that slows down slows all of them alike, and
prints ms per step, the ratio to N = 0 and how many epochs of it fit in the wall time
of ``--epochs`` plain epochs.

    python bench/multicrop_cost.py --image-size 64 --crops 0,2,4,6 --epochs 30
    python bench/multicrop_cost.py --image-size 128 --method moco
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from cxrssl.config import load_pretrain_config
from cxrssl.engine import make_optimizer, make_views, training_step
from cxrssl.hardware import cpu_description, native_bf16
from cxrssl.seeding import derived_generator
from cxrssl.ssl.augment import BatchAugment
from cxrssl.ssl.methods import build_method


def step_closure(config, pixels):
    model = build_method(config).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config.lr, config.weight_decay, torch.device("cpu"))
    augment = BatchAugment(config.augment, config.image_size)
    small = BatchAugment(replace(config.augment, crop_scale=config.augment.small_crop_scale), config.small_size)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.amp and native_bf16(torch.device("cpu")))
    generator = derived_generator(0, 1)

    def step() -> None:
        views = make_views(augment, pixels, generator, True, small=small, small_crops=config.small_crops)
        training_step(model, optimizer, views, autocast)
        model.after_step(0.5)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--crops", default="0,2,4,6", help="numbers of small views to time")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each times every setting for --steps steps")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30, help="plain epochs whose wall time the table fills")
    args = parser.parse_args()
    print(cpu_description())
    base = load_pretrain_config("cpu", {"image_size": args.image_size, "batch_size": args.batch_size, "method": args.method})
    pixels = (torch.rand(args.batch_size, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    crops = [int(n) for n in args.crops.split(",")]
    steps = {n: step_closure(replace(base, small_crops=n), pixels) for n in crops}
    times = {n: [] for n in crops}
    for n in crops:  # warm-up: oneDNN picks its kernels on the first steps
        steps[n]()
        steps[n]()
    for _ in range(args.rounds):
        for n in crops:
            started = time.perf_counter()
            for _ in range(args.steps):
                steps[n]()
            times[n].append((time.perf_counter() - started) / args.steps)
    plain = statistics.median(times[crops[0]])
    small = replace(base, small_crops=1).small_size
    print(
        f"{args.method}, batch {args.batch_size}, 2 x {args.image_size} px + N x {small} px views, median of {args.rounds} rounds of {args.steps} steps"
    )
    print("| small views N | ms per step | × N=0 | epochs in the wall time of " + f"{args.epochs} plain epochs |")
    print("|---|---|---|---|")
    for n in crops:
        median = statistics.median(times[n])
        print(f"| {n} | {1000 * median:.0f} | {median / plain:.2f} | {args.epochs * plain / median:.1f} |")


if __name__ == "__main__":
    main()
