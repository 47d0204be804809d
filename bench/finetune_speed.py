"""Speed of fine-tuning: the step against the pretraining step, and a whole fine-tune on real films.

    python bench/finetune_speed.py                   # resnet18, 128 px, batch 32; nih_pneumonia
    python bench/finetune_speed.py --epochs 5        # a shorter whole fine-tune

Prints the CPU it ran on, then
  1. img/s of one fine-tuning step (one augmented view, backbone + head, BCE, Adam) and of
     one SimCLR pretraining step (two views, backbone + projection head, NT-Xent, Adam) of
     the same backbone, size and batch, as the training loops run them (bf16 autocast
     where the CPU has it, channels_last), alternated, best of the rounds;
  2. the wall time of a whole `cxrssl finetune` of random-init resnet18 at 128 px on the
     training part of shared/data/nih_pneumonia (its 70/10/20 patient split: about 800
     training images, a fifth of their patients held out for validation), --epochs epochs
     with early stopping off, and its test AUC.
Target (issue 15): under 10 minutes for 20 epochs on two cores.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

TASK = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih_pneumonia" / "labels.csv"


def step_rates(size: int, batch: int, rounds: int = 3) -> tuple[float, float]:
    from cxrssl.config import load_pretrain_config
    from cxrssl.engine import make_optimizer, make_views, training_step
    from cxrssl.eval.finetune import FINETUNE_AUGMENT, Classifier
    from cxrssl.hardware import native_bf16
    from cxrssl.models import build_backbone, feature_dim
    from cxrssl.ssl.augment import AugmentConfig, BatchAugment
    from cxrssl.ssl.methods import SimCLR

    device = torch.device("cpu")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if native_bf16(device) else nullcontext()
    pixels = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    config = load_pretrain_config("cpu", {"image_size": size, "batch_size": batch})
    simclr = SimCLR("resnet18", config.hidden_features, config.out_features, config.temperature)
    simclr = simclr.to(memory_format=torch.channels_last).train()
    simclr_opt = make_optimizer(simclr.parameters(), 5e-4, 0.0, device)
    classifier = Classifier(build_backbone("resnet18"), feature_dim("resnet18")).to(memory_format=torch.channels_last).train()
    classifier_opt = make_optimizer(classifier.parameters(), 1e-3, 1e-4, device)
    ssl_augment, ft_augment = BatchAugment(AugmentConfig(), size), BatchAugment(FINETUNE_AUGMENT, size)
    targets = torch.randint(0, 2, (batch,)).float()

    def finetune_step():
        view = ft_augment(pixels, generator).contiguous(memory_format=torch.channels_last)
        training_step(classifier, classifier_opt, (view, targets), autocast)

    def pretrain_step():
        training_step(simclr, simclr_opt, make_views(ssl_augment, pixels, generator, True), autocast)

    best = {"finetune": 0.0, "pretrain": 0.0}
    for step in (finetune_step, pretrain_step):
        step()  # warm-up
    for _ in range(rounds):
        for name, step in (("finetune", finetune_step), ("pretrain", pretrain_step)):
            started = time.perf_counter()
            for _ in range(3):
                step()
            best[name] = max(best[name], 3 * batch / (time.perf_counter() - started))
    return best["finetune"], best["pretrain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    from cxrssl.hardware import cpu_description

    print(cpu_description())
    finetune_rate, pretrain_rate = step_rates(args.size, args.batch)
    print(
        f"step, resnet18 {args.size} px batch {args.batch}: fine-tuning {finetune_rate:.1f} img/s; SimCLR pretraining {pretrain_rate:.1f} img/s "
        f"(two views per image); ratio {finetune_rate / pretrain_rate:.2f}"
    )
    if not TASK.is_file():
        print(f"{TASK} absent: the whole fine-tune is not timed")
        return
    from cxrssl.eval.evaluate import load_task
    from cxrssl.eval.features import BackboneSpec
    from cxrssl.eval.finetune import FinetuneSettings, finetune
    from cxrssl.eval.probe import binary_targets, probe_split

    task = load_task(TASK, args.size, progress=False)
    targets, _, _ = binary_targets(task.manifest.labels)
    split = probe_split(task.manifest.patient_keys, task.manifest.labels, task.manifest.splits)
    settings = FinetuneSettings(epochs=args.epochs, batch_size=args.batch, patience=args.epochs)
    started = time.perf_counter()
    fit = finetune(BackboneSpec.random("resnet18", args.size), task, targets, task.manifest.patient_keys, split.train, split.test, settings)
    seconds = time.perf_counter() - started
    print(
        f"whole fine-tune: {len(split.train)} training images ({fit.n_fit} fitted, {fit.n_val} validated), {len(fit.val_auc)} epochs "
        f"in {seconds / 60:.1f} min ({fit.n_fit * len(fit.val_auc) / seconds:.1f} fitted img/s incl. validation); "
        f"best validation AUC {max(fit.val_auc):.3f} at epoch {fit.chosen_epoch}; test AUC {fit.metrics['auc']:.3f}"
    )
    print(f"validation AUC per epoch: {', '.join(f'{a:.3f}' for a in fit.val_auc)}; mean test score {np.mean(fit.test_scores):.3f}")


if __name__ == "__main__":
    main()
