"""cxrssl against lightly's SimCLR, MoCo v2 and BYOL pipelines: the same pretraining, side by side, in images/s.

Both sides train the same network (torchvision resnet18 with a one-channel stem, a
512-2048-128 projection head, Adam 5e-4) with the same method at the same image size
and batch on the same real films:

- SimCLR: NT-Xent at tau 0.5 (lightly: SimCLRProjectionHead, NTXentLoss);
- MoCo v2: momentum 0.99 key encoder, a queue of 256 keys (at most half the films, as
  cxrssl requires fewer keys than films), tau 0.2, symmetrised as in cxrssl (lightly: MoCoProjectionHead,
  NTXentLoss with a memory bank, update_momentum);
- BYOL: predictor 128-2048-128, EMA 0.99 (lightly: BYOLProjectionHead,
  BYOLPredictionHead, NegativeCosineSimilarity, update_momentum),

with augmentations as close as both allow
(resized crop scale 0.3-1, horizontal flip, rotation +-10 deg, blur p 0.5 sigma 0.1-2,
brightness/contrast 0.4 with p 0.8, no colour or grey-scale steps for grey films):

- lightly: its SimCLRTransform on PIL images decoded from the files by a DataLoader
  (both cores as workers), its SimCLRProjectionHead and NTXentLoss, a plain loop;
- cxrssl: `cxrssl.train.pretrain` reading a pixel cache, batched tensor augmentation,
  with its defaults (channels_last; bf16 autocast where the CPU has native bf16), and
  again with amp off (float32), so the precision's share of the gain is visible.

Runs alternate (lightly, cxrssl, lightly, cxrssl, ...) so that a machine busy for a
while slows both alike. Each run is one epoch over the same images; images/s is
counted over the training loop of that epoch. Also printed: the compute-only step
(views precomputed) of each, and the ratios. lightly is a benchmark-only dependency:

    pip install lightly==1.6.0
    python bench/vs_lightly.py                # 512 films of ../shared/data/pool, resnet18, 128 px, batch 64, all methods
    python bench/vs_lightly.py --method moco
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from engine_step import engine_step  # bench/ is the script's folder
from PIL import Image
from torch import nn

from cxrssl.config import load_pretrain_config, with_overrides
from cxrssl.data.cache import build_cache
from cxrssl.data.images import open_image_set
from cxrssl.data.io import load_grayscale
from cxrssl.data.manifest import read_manifest
from cxrssl.hardware import cpu_description, native_bf16
from cxrssl.models import PIXEL_MEAN, PIXEL_STD, build_backbone
from cxrssl.train import pretrain

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


class FilmDataset(torch.utils.data.Dataset):
    """Files decoded per sample, as lightly's pipeline expects (PIL in, two views out)."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(load_grayscale(self.paths[index])))


def lightly_transform(image_size: int):
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(
        input_size=image_size,
        cj_prob=0.8,
        cj_bright=0.4,
        cj_contrast=0.4,
        cj_sat=0.0,
        cj_hue=0.0,
        min_scale=0.3,
        random_gray_scale=0.0,
        gaussian_blur=0.5,
        sigmas=(0.1, 2.0),
        hf_prob=0.5,
        rr_prob=1.0,
        rr_degrees=10.0,
        normalize={"mean": [PIXEL_MEAN], "std": [PIXEL_STD]},
    )


def queue_size(images: int) -> int:
    return min(256, images // 2)


def lightly_step(method: str, images: int):
    """lightly's model, loss and loop body for ``method``, written as its examples do: a step(view1, view2) closure."""
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, MoCoProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    backbone = build_backbone("resnet18")
    if method == "simclr":
        model = nn.Sequential(backbone, SimCLRProjectionHead(512, 2048, 128))
        criterion = NTXentLoss(temperature=0.5)
        parameters = list(model.parameters())

        def loss_of(view1, view2):
            return criterion(model(view1), model(view2))  # lightly's examples: two forward passes
    else:
        head = MoCoProjectionHead(512, 2048, 128) if method == "moco" else BYOLProjectionHead(512, 2048, 128)
        online = nn.Sequential(backbone, head)
        target = copy.deepcopy(online)
        deactivate_requires_grad(target)
        parameters = list(online.parameters())
        if method == "moco":
            criterion = NTXentLoss(temperature=0.2, memory_bank_size=(queue_size(images), 128))

            def loss_of(view1, view2):
                update_momentum(online, target, m=0.99)
                keys = target(view1).detach(), target(view2).detach()
                return 0.5 * (criterion(online(view1), keys[1]) + criterion(online(view2), keys[0]))
        else:
            predictor = BYOLPredictionHead(128, 2048, 128)
            parameters += list(predictor.parameters())
            criterion = NegativeCosineSimilarity()

            def loss_of(view1, view2):
                update_momentum(online, target, m=0.99)
                p1, p2 = predictor(online(view1)), predictor(online(view2))
                z1, z2 = target(view1).detach(), target(view2).detach()
                return 0.5 * (criterion(p1, z2) + criterion(p2, z1))

    optimizer = torch.optim.Adam(parameters, lr=5e-4)

    def step(view1, view2):
        loss = loss_of(view1, view2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def lightly_epoch(paths, method: str, image_size: int, batch_size: int, workers: int) -> tuple[float, float]:
    """(end-to-end images/s over one epoch, compute-only images/s)."""
    step = lightly_step(method, len(paths))
    loader = torch.utils.data.DataLoader(
        FilmDataset(paths, lightly_transform(image_size)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    started, seen = time.perf_counter(), 0
    for view1, view2 in loader:
        step(view1, view2)
        seen += len(view1)
    end_to_end = seen / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(3):
        step(view1, view2)
    return end_to_end, 3 * batch_size / (time.perf_counter() - started)


def cxrssl_epoch(cache: Path, workdir: Path, method: str, run: int, image_size: int, batch_size: int, amp: bool) -> tuple[float, float]:
    images = len(open_image_set(cache, image_size))
    config = with_overrides(load_pretrain_config("cpu"), {"method": method, "queue_size": queue_size(images) if method == "moco" else None})
    config = replace(config, image_size=image_size, batch_size=batch_size, epochs=1, keep_epochs=(), seed=run, amp=amp, monitor_images=0)
    folder = workdir / f"{method}_run{run}_{'amp' if amp else 'fp32'}"
    pretrain(cache, folder, config, progress=False)
    log = (folder / "log.csv").read_text().splitlines()
    end_to_end = float(log[1].split(",")[3])  # images_per_s of the epoch's training loop

    from cxrssl.seeding import derived_generator
    from cxrssl.ssl.augment import BatchAugment

    pixels = open_image_set(cache, image_size).batch(range(batch_size))
    augment = BatchAugment(config.augment, image_size)
    step = engine_step(config, augment(pixels, derived_generator(0, 1)), augment(pixels, derived_generator(0, 2)))
    step()
    started = time.perf_counter()
    for _ in range(3):
        step()
    return end_to_end, 3 * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("simclr", "moco", "byol", "all"), default="all")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (one epoch of each per round)")
    parser.add_argument("--workers", type=int, default=2, help="lightly DataLoader workers")
    args = parser.parse_args()
    if not SHARED_POOL.is_file():
        raise SystemExit(f"{SHARED_POOL}: not found; this benchmark uses real films from ../shared/data/pool")
    manifest = read_manifest(SHARED_POOL).select(range(args.images))
    print(cpu_description())
    print(
        f"torch {torch.__version__}; resnet18, {args.image_size} px, batch {args.batch_size}, {len(manifest)} real films, {args.rounds} alternating rounds"
    )
    methods = ("simclr", "moco", "byol") if args.method == "all" else (args.method,)
    bf16 = "bf16 autocast + channels_last" if native_bf16(torch.device("cpu")) else "channels_last (no native bf16 here)"
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        build_cache(manifest, workdir / "cache", args.image_size, progress=False)
        for method in methods:
            results = {"lightly": [], f"cxrssl ({bf16}, the default)": [], "cxrssl (float32, amp off)": []}
            names = list(results)
            for run in range(args.rounds):
                results[names[0]].append(lightly_epoch([str(p) for p in manifest.files], method, args.image_size, args.batch_size, args.workers))
                for name, amp in ((names[1], True), (names[2], False)):
                    results[name].append(cxrssl_epoch(workdir / "cache", workdir, method, run, args.image_size, args.batch_size, amp=amp))
                print(
                    f"  {method} round {run + 1}: "
                    + ", ".join(f"{name} {values[-1][0]:.1f}" for name, values in results.items())
                    + " img/s end to end"
                )
            summary = {name: [statistics.median(values) for values in zip(*runs)] for name, runs in results.items()}
            print(f"{method}:")
            for name, (end_to_end, compute) in summary.items():
                print(
                    f"  {name:55s} end to end {end_to_end:6.1f} img/s, compute-only step {compute:6.1f} img/s ({end_to_end / compute:.2f} of its step)"
                )
            for name in names[1:]:
                ratio_e2e, ratio_step = (summary[name][i] / summary[names[0]][i] for i in (0, 1))
                print(f"  {name} / lightly: end to end {ratio_e2e:.2f}x, compute-only {ratio_step:.2f}x")


if __name__ == "__main__":
    main()
