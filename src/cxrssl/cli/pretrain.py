"""``cxrssl pretrain``: self-supervised pretraining of a backbone on unlabelled images."""

from __future__ import annotations

import os

from cxrssl.cli.common import (
    architectures,
    checkpoint_inputs,
    data_inputs,
    int_list,
    method_setting,
    non_negative_int,
    outputs_for,
    positive_float,
    positive_int,
    seed_value,
)


def register(verbs) -> None:
    from cxrssl.ssl.methods import METHODS
    from cxrssl.ssl.positives import POSITIVES

    settings = sorted({f"{name} ({method.name})" for method in METHODS.values() for name in method.settings})
    verb = verbs.add_parser("pretrain", help=f"self-supervised pretraining ({', '.join(METHODS)}) on the images of a manifest (labels ignored)")
    verb.add_argument("--data", required=True, help="manifest CSV of the unlabelled images, or a cache folder (cxrssl cache)")
    verb.add_argument("--out", required=True, help="run folder (checkpoints, log, config)")
    verb.add_argument("--config", help="preset (paper, cpu, demo) or YAML file; default cpu")
    verb.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch (also what a requeued cluster job runs)")
    verb.add_argument("--method", choices=list(METHODS), help="pretraining method (default: the config's, simclr)")
    verb.add_argument(
        "--method-setting",
        type=method_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a setting of the method, repeatable; the method checks it. Settings: {', '.join(settings)}",
    )
    verb.add_argument("--init", help="starting weights: random (default), imagenet (torchvision's cache) or a weights file / checkpoint .json")
    verb.add_argument("--epochs", type=positive_int)
    verb.add_argument("--batch-size", type=positive_int, help="effective batch over all processes")
    verb.add_argument("--image-size", type=positive_int)
    verb.add_argument("--arch", help=f"architecture: {architectures()}")
    verb.add_argument("--lr", type=positive_float)
    verb.add_argument("--lr-schedule", choices=("constant", "cosine"), help="constant (the paper's) or cosine decay to 0")
    verb.add_argument("--warmup-epochs", type=float, help="linear learning-rate warm-up, in epochs")
    # Shortcuts for the common method settings (the same as --method-setting NAME=VALUE).
    verb.add_argument("--temperature", help="simclr and moco: softmax temperature (default 0.5, 0.2)")
    verb.add_argument("--momentum", help="moco and byol: EMA coefficient of the target network (default 0.99)")
    verb.add_argument("--queue-size", help="moco: negatives kept in the queue (default 4096)")
    verb.add_argument(
        "--positives",
        choices=list(POSITIVES),
        help="each film's positive: " + "; ".join(f"{name}: {about}" for name, about in POSITIVES.items()) + " (default views)",
    )
    multi = ", ".join(name for name, method in METHODS.items() if method.multi_crop)
    verb.add_argument("--small-crops", type=non_negative_int, help=f"multi-crop ({multi}): small views per film beside the two full-size ones")
    verb.add_argument("--small-crop-size", type=positive_int, help="side of the small views in pixels (default half of --image-size)")
    verb.add_argument(
        "--monitor",
        metavar="TASK.csv",
        help="a small labelled manifest (two classes, a few patients each): its k-NN AUC is logged after every epoch, to choose a checkpoint",
    )
    verb.add_argument("--seed", type=seed_value)
    verb.add_argument("--fraction", type=float, help="share of patients to pretrain on, in (0, 1]")
    verb.add_argument("--keep", type=int_list, help="epochs whose checkpoints are kept, e.g. 10,25,50,100")
    verb.add_argument("--device", choices=("auto", "cpu", "cuda"))
    verb.add_argument("--compile", action="store_true", help="torch.compile the model")
    verb.add_argument("--quiet", action="store_true", help="no progress bars")
    verb.set_defaults(handler=run)


def run(args) -> None:
    from cxrssl.config import pretrain_config
    from cxrssl.train import pretrain

    method_settings = {
        name: value
        for name, value in (("temperature", args.temperature), ("momentum", args.momentum), ("queue_size", args.queue_size))
        if value is not None
    }
    method_settings.update(dict(args.method_setting))
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "arch": args.arch,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "warmup_epochs": args.warmup_epochs,
        "method": args.method,
        "method_settings": method_settings or None,
        "init": args.init,
        "seed": args.seed,
        "fraction": args.fraction,
        "keep_epochs": args.keep,
        "device": args.device,
        "compile": True if args.compile else None,
        "positives": args.positives,
        "small_crops": args.small_crops,
        "small_crop_size": args.small_crop_size,
        "monitor": args.monitor,
    }
    # The run folder is pretrain's own (its marker, its lock, its resumable state: cxrssl.run);
    # here: that nothing it writes is an input, before any work.
    inputs = [
        *data_inputs(args.data),
        *(checkpoint_inputs(args.init) if args.init not in (None, "random", "imagenet") else []),
        *(data_inputs(args.monitor) if args.monitor else []),
    ]
    if args.config and os.path.isfile(args.config):
        inputs.append(args.config)
    outputs_for(args, inputs=inputs).check_folder_holds_no_input(args.out)
    config = pretrain_config(args.out, args.config, overrides, args.resume)
    result = pretrain(args.data, args.out, config, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.losses[-1] if result.losses else float("nan")
        print(
            f"pretrained {config.arch} on {result.images} images for {len(result.losses)} epochs (last loss {last:.4f}); run folder {result.run_dir}"
        )
