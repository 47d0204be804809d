"""cxrssl against lightly's SimCLR pipeline: the same pretraining, side by side, in images/s.

Both sides train the same network (torchvision resnet18 with a one-channel stem, the
2048-2048-128 projection head, NT-Xent at tau 0.5, Adam 5e-4) at the same image size
and batch on the same real films, with augmentations as close as both allow
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
    python bench/vs_lightly.py                # 512 films of ../shared/data/pool, resnet18, 128 px, batch 64
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from cxrssl.config import load_pretrain_config
from cxrssl.data.cache import build_cache
from cxrssl.data.io import load_grayscale
from cxrssl.data.manifest import read_manifest
from cxrssl.hardware import native_bf16
from cxrssl.models import PIXEL_MEAN, PIXEL_STD, build_backbone
from cxrssl.train import pretrain
from engine_step import engine_step  # bench/ is the script's folder

SHARED_POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "labels.csv"


class FilmDataset(torch.utils.data.Dataset):
    """Files decoded per sample, as lightly's pipeline expects (PIL in, two views out)."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(load_grayscale(self.paths[index])))


def lightly_parts(image_size: int):
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(
        input_size=image_size, cj_prob=0.8, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.0, cj_hue=0.0, min_scale=0.3,
        random_gray_scale=0.0, gaussian_blur=0.5, sigmas=(0.1, 2.0), hf_prob=0.5, rr_prob=1.0, rr_degrees=10.0,
        normalize={"mean": [PIXEL_MEAN], "std": [PIXEL_STD]},
    )  # fmt: skip
    backbone = build_backbone("resnet18")
    model = nn.Sequential(backbone, SimCLRProjectionHead(512, 2048, 128))
    return transform, model, NTXentLoss(temperature=0.5)


def lightly_epoch(paths, image_size: int, batch_size: int, workers: int) -> tuple[float, float]:
    """(end-to-end images/s over one epoch, compute-only images/s)."""
    transform, model, criterion = lightly_parts(image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loader = torch.utils.data.DataLoader(FilmDataset(paths, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)  # fmt: skip

    def step(view1, view2):
        loss = criterion(model(view1), model(view2))  # lightly's examples: two forward passes
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    started, seen = time.perf_counter(), 0
    for view1, view2 in loader:
        step(view1, view2)
        seen += len(view1)
    end_to_end = seen / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(3):
        step(view1, view2)
    return end_to_end, 3 * batch_size / (time.perf_counter() - started)


def cxrssl_epoch(cache: Path, workdir: Path, run: int, image_size: int, batch_size: int, amp: bool) -> tuple[float, float]:
    config = replace(load_pretrain_config("cpu"), image_size=image_size, batch_size=batch_size, epochs=1, keep_epochs=(), seed=run, amp=amp)
    folder = workdir / f"run{run}_{'amp' if amp else 'fp32'}"
    pretrain(cache, folder, config, progress=False)
    log = (folder / "log.csv").read_text().splitlines()
    end_to_end = float(log[1].split(",")[3])  # images_per_s of the epoch's training loop

    from cxrssl.data.images import open_image_set
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
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (one epoch of each per round)")
    parser.add_argument("--workers", type=int, default=2, help="lightly DataLoader workers")
    args = parser.parse_args()
    if not SHARED_POOL.is_file():
        raise SystemExit(f"{SHARED_POOL}: not found; this benchmark uses real films from ../shared/data/pool")
    manifest = read_manifest(SHARED_POOL).select(range(args.images))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; resnet18, {args.image_size} px, batch {args.batch_size}, "
          f"{len(manifest)} real films, {args.rounds} alternating rounds")  # fmt: skip
    bf16 = "bf16 autocast + channels_last" if native_bf16(torch.device("cpu")) else "channels_last (no native bf16 here)"
    results = {"lightly": [], f"cxrssl ({bf16}, the default)": [], "cxrssl (float32, amp off)": []}
    names = list(results)
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        build_cache(manifest, workdir / "cache", args.image_size, progress=False)
        for run in range(args.rounds):
            results[names[0]].append(lightly_epoch([str(p) for p in manifest.files], args.image_size, args.batch_size, args.workers))
            results[names[1]].append(cxrssl_epoch(workdir / "cache", workdir, run, args.image_size, args.batch_size, amp=True))
            results[names[2]].append(cxrssl_epoch(workdir / "cache", workdir, run, args.image_size, args.batch_size, amp=False))
            print(f"  round {run + 1}: " + ", ".join(f"{name} {values[-1][0]:.1f}" for name, values in results.items()) + " img/s end to end")
    summary = {name: [statistics.median(values) for values in zip(*runs)] for name, runs in results.items()}
    for name, (end_to_end, compute) in summary.items():
        print(f"{name:55s} end to end {end_to_end:6.1f} img/s, compute-only step {compute:6.1f} img/s ({end_to_end / compute:.2f} of its step)")
    for name in names[1:]:
        ratio_e2e, ratio_step = (summary[name][i] / summary[names[0]][i] for i in (0, 1))
        print(f"{name} / lightly: end to end {ratio_e2e:.2f}x, compute-only {ratio_step:.2f}x")


if __name__ == "__main__":
    main()
