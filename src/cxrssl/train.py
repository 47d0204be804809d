"""The pretraining loop: a self-supervised method (SimCLR, MoCo v2, BYOL) on unlabelled radiographs.

One function, ``pretrain``, runs on the CPU, one GPU, or many processes launched by
``torchrun``. Every epoch it appends a log row, saves the resumable training state
and, for the epochs the config keeps, a checkpoint. Randomness (batch order and
augmentations) is derived from (seed, epoch, rank), so an interrupted run resumed
with ``resume=True`` reproduces the uninterrupted run's losses.
"""

from __future__ import annotations

import json
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from cxrssl import __version__
from cxrssl.checkpoint import (
    checkpoint_metadata,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_metadata,
    save_weights,
)
from cxrssl.config import PretrainConfig
from cxrssl.data.images import manifest_of, open_data, open_image_set
from cxrssl.data.io import write_unreadable_list
from cxrssl.data.manifest import Manifest, write_manifest
from cxrssl.data.splits import patient_share
from cxrssl.distributed import DistributedContext, init_from_environment, shutdown, sync_batchnorm
from cxrssl.engine import (
    BatchFeeder,
    LossTracker,
    make_optimizer,
    make_views,
    paired_loader,
    prepare_device,
    scheduled_lr,
    sync_interval,
    training_step,
)
from cxrssl.errors import ConfigError, CxrsslError, TrainingDiverged
from cxrssl.hardware import cpu_description, native_bf16, resolve_device
from cxrssl.interrupt import Interrupted
from cxrssl.run import IDENTITY_KIND, RunFolder, data_identity
from cxrssl.seeding import derived_generator, seed_everything
from cxrssl.ssl.augment import BatchAugment
from cxrssl.ssl.methods import Method, build_method
from cxrssl.ssl.monitors import knn_monitor_set, measure, measure_knn, monitor_rows
from cxrssl.ssl.positives import pairing_summary, partner_indices, positive_groups
from cxrssl.weights import load_init

# Settings that may differ when a run is resumed: extending it (with a new keep-list,
# e.g. 10,25,50,100), or lowering the learning rate after a divergence. Anything
# else would make a different run.
# With lr_schedule cosine, a new number of epochs reshapes the rest of the curve.
RESUMABLE_CHANGES = {"epochs", "keep_epochs", "lr", "device", "compile", "monitor_images", "monitor"}


@dataclass
class PretrainResult:
    run_dir: Path
    losses: list[float]  # one per epoch, from epoch 1, including resumed epochs
    checkpoints: list[Path] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0


def _check_resume(run: RunFolder, config: PretrainConfig, resume: bool) -> int:
    """The epoch to start after (0 for a new run), after checking the folder.

    A run killed before its first epoch ended saved nothing to resume from: it starts
    again from epoch 1, with or without --resume, and nothing has to be deleted.
    """
    has_state = run.state.is_file()
    if not has_state and run.saved_checkpoints():
        raise CxrsslError(f"{run.root}: has checkpoints but no state/last.json to resume from; choose another --out for a new run")
    if not resume:
        if has_state:
            raise CxrsslError(f"{run.root}: already holds a run; pass --resume to continue it or choose another --out")
        return 0
    if not has_state:
        return 0  # nothing saved yet: --resume starts the run
    # Through the dataclass, so settings added since the run was made take their defaults.
    saved = PretrainConfig.from_dict(run.read_config()["pretrain"], str(run.config)).to_dict()
    current = config.to_dict()
    changed = sorted(key for key in current if current[key] != saved[key] and key not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(
            f"{run.config}: --resume needs the run's own settings, but {', '.join(changed)} differ; "
            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change when resuming"
        )
    try:
        return int(read_metadata(run.state)[0]["epoch"])
    except (KeyError, TypeError, ValueError) as error:
        raise CxrsslError(f"{run.state}: damaged ({type(error).__name__}: {error}); resume from a copy of the run, or start a new --out") from None


def _check_same_data(run: RunFolder, paths, data) -> None:
    """--resume must train on the images the run started with: the same files with the same
    bytes (runs before content identities recorded their paths; older ones nothing)."""
    saved = run.read_config().get("data", {})
    identity = data_identity(paths) if saved.get("identity_kind") == IDENTITY_KIND else data_identity(paths, content=False)
    if saved.get("identity") and saved["identity"] != identity:
        raise ConfigError(
            f"{data}: is not the data this run was trained on ({saved.get('path', saved.get('source'))}, {saved.get('images')} images: other files, "
            f"or files whose bytes changed); resume with --data {saved.get('path', saved.get('source'))}, or start a new run in another --out"
        )


def _bare(model: torch.nn.Module) -> Method:
    """The method's module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def pretrain(
    manifest: str | Path | Manifest,
    run_dir: str | Path,
    config: PretrainConfig,
    resume: bool = False,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> PretrainResult:
    """Pretrain ``config.method`` on the images of ``manifest``; labels, if any, are ignored.

    ``stop_after_epoch`` ends the run early as if it had been killed after that
    epoch (used to test resuming).
    """
    device = resolve_device(config.device)
    context = init_from_environment(device.type)
    run = RunFolder(run_dir)
    try:
        if not context.is_main:
            return _pretrain(manifest, run, config, resume, progress, stop_after_epoch, device, context)
        run.claim()  # refuses a non-empty folder that is not a run, before anything is written
        with run.locked():  # refuses a second process on the same run
            run.remove_stale_temporaries()
            try:
                return _pretrain(manifest, run, config, resume, progress, stop_after_epoch, device, context)
            except TrainingDiverged:
                raise  # its status says so already
            except BaseException as error:  # the status must never stay "running" for a run that stopped
                try:
                    running = json.loads(run.status.read_text()) if run.status.is_file() else {}
                except (OSError, ValueError):
                    running = {}  # a damaged status must not hide the error that stopped the run
                if isinstance(running, dict) and running.get("state") == "running":
                    stopped = "interrupted" if isinstance(error, (KeyboardInterrupt, Interrupted)) else "failed"
                    details = {k: running[k] for k in ("epochs_done", "epochs") if k in running}  # how far it got stays said
                    if isinstance(error, Interrupted):
                        details["signal"] = signal.Signals(error.signal).name
                    run.set_status(stopped, reason=f"{type(error).__name__}: {error}"[:500], resume="the same command with --resume", **details)
                raise
    finally:
        shutdown(context)


def _pretrain(manifest, run, config, resume, progress, stop_after_epoch, device, context: DistributedContext):
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    prepare_device(device)
    start_epoch = _check_resume(run, config, resume)
    seed_everything(config.seed)
    show = progress and context.is_main
    data = manifest if isinstance(manifest, (str, Path)) else getattr(manifest, "name", "the data")
    source = open_data(manifest)
    manifest = manifest_of(source)
    if start_epoch:
        _check_same_data(run, manifest.files, data)
    images = open_image_set(source, config.image_size, show, rows=patient_share(manifest.patient_keys, config.fraction, config.seed))
    subset = images.manifest
    if len(images) == 0:
        raise CxrsslError(
            f"{manifest.name}: none of its {len(images.unreadable)} images could be read (e.g. {images.unreadable[0][0]}: {images.unreadable[0][1]}); "
            f"check that its paths point at PNG, JPEG or DICOM files"
        )
    if config.batch_size % context.world_size:
        raise ConfigError(f"batch_size {config.batch_size} must be divisible by the {context.world_size} processes")
    per_rank_batch = config.batch_size // context.world_size
    if len(images) < config.batch_size:
        raise ConfigError(
            f"{manifest.name}: batch_size {config.batch_size} is larger than the {len(images)} readable images; lower --batch-size or add images"
        )

    groups = positive_groups(subset, config.positives)
    use_bf16 = config.amp and native_bf16(device)
    if start_epoch >= config.epochs:
        # Resuming a run that has trained as far as asked: nothing to train. Its config.json keeps
        # its true settings; only an epoch whose commit a kill cut short (its state saved, its log
        # row or status not yet) is completed from the state, which carries the log.
        log_rows = read_metadata(run.state)[0].get("log") or run.read_log()[:start_epoch]
        if context.is_main:
            if run.read_log() != log_rows:
                run.write_log(log_rows)
            saved_epochs = int(run.read_config()["pretrain"].get("epochs", start_epoch))
            status = json.loads(run.status.read_text()).get("state") if run.status.is_file() else None
            if start_epoch >= saved_epochs and status != "complete":
                run.set_status("complete", epochs_done=start_epoch, epochs=saved_epochs)
            if progress:
                tqdm.write(f"{run.root}: already trained {start_epoch} epochs (asked for {config.epochs}); nothing to do")
        return PretrainResult(run.root, [float(row["loss"]) for row in log_rows], [], images.unreadable, len(images))
    if context.is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        run.set_status("running", epochs_done=start_epoch, epochs=config.epochs)
        identity = data_identity(manifest.files)
        run.write_config(
            {
                "pretrain": config.to_dict(),
                "manifest": manifest.name,
                "data": {"path": str(data), "identity": identity, "identity_kind": IDENTITY_KIND, "images": len(manifest)},
                "images_in_manifest": len(manifest),
                "patients_in_manifest": len(set(manifest.patient_keys)),
                "pixels_from": images.origin,
                "images_used": len(images),
                "unreadable_images": len(images.unreadable),
                "patients_used": len(set(subset.patient_keys)),
                "fraction": config.fraction,
                "processes": context.world_size,
                "device": device.type,
                "autocast": "bfloat16" if use_bf16 else "off",
                "cpu": cpu_description(),
                "positives": pairing_summary(groups),
                "cxrssl_version": __version__,
                "torch_version": torch.__version__,
            },
        )
        write_manifest(subset, run.subset)
        run.unreadable.unlink(missing_ok=True)
        if images.unreadable:
            write_unreadable_list(run.unreadable, images.unreadable)
            tqdm.write(f"warning: skipped {len(images.unreadable)} unreadable image(s), listed in {run.unreadable}")

    model = build_method(config, context.enabled)
    problem = model.check_images(len(images))
    if problem:
        raise ConfigError(f"{manifest.name}: {problem}")
    tensors, state = load_tensors(run.state) if start_epoch else ({}, None)
    # The state carries the log up to its epoch: a kill between the state's save and the log's loses no row.
    log_rows = state["log"] if state is not None and "log" in state else run.read_log()[:start_epoch]
    if state is not None:
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optimizer.")})
    else:
        load_init(model.backbone, config.arch, config.init)  # every process reads the same file
        model.sync_targets()
    if context.enabled:
        # Converting BatchNorm makes new parameters: do it before the optimiser sees them.
        model = sync_batchnorm(model, device.type)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config.lr, config.weight_decay, device)
    if state is not None:  # load_state_dict moves the moments to the parameters' device
        optimizer.load_state_dict(optimizer_from_tensors(tensors, state["optimizer"]))
    if context.enabled:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

    augment = BatchAugment(config.augment, config.image_size)
    small = BatchAugment(replace(config.augment, crop_scale=config.augment.small_crop_scale), config.small_size) if config.small_crops else None
    if show and groups is not None:
        tqdm.write(pairing_summary(groups))
    sampler = DistributedSampler(
        range(len(images)), num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=config.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // per_rank_batch
    total_steps, warmup_steps = config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    check_every = sync_interval(device)
    losses = [float(row["loss"]) for row in log_rows]
    checkpoints = []
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)

    bare = _bare(model)
    monitored = monitor_rows(len(images), config.seed)[: config.monitor_images]
    monitor_pixels = images.batch(monitored) if len(monitored) and context.is_main else None
    knn_task = None
    if config.monitor and context.is_main:
        knn_images, knn_targets, knn_patients = knn_monitor_set(config.monitor, config.image_size, show)
        knn_task = knn_images.batch(np.arange(len(knn_images))), knn_targets, knn_patients
    for epoch in range(start_epoch + 1, last_epoch + 1):
        model.train()
        sampler.set_epoch(epoch)
        # Partners are drawn for every film from (seed, epoch), so each process and a resumed epoch see the same pairs.
        load = images.batch if groups is None else paired_loader(images.batch, partner_indices(groups, config.seed, epoch))
        batches = BatchFeeder(load, list(sampler), per_rank_batch, device)
        generator = derived_generator(config.seed, epoch, context.rank)
        tracker = LossTracker(device)
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not show, leave=False)
        for step, pixels in enumerate(batches):
            lr = scheduled_lr(config.lr, (epoch - 1) * steps_per_epoch + step, total_steps, config.lr_schedule, warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            views = make_views(augment, pixels, generator, config.channels_last, groups is not None, small, config.small_crops)
            tracker.add(training_step(model, optimizer, views, autocast), step)
            bare.after_step(((epoch - 1) * steps_per_epoch + step + 1) / total_steps)  # momentum targets, if any
            if (step + 1) % check_every == 0 or step + 1 == steps_per_epoch:
                _stop_if_diverged(tracker, epoch, run, context)
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{float(tracker.last):.4f}", img_s=f"{(step + 1) * config.batch_size / (time.perf_counter() - started):.1f}")
            if epoch == start_epoch + 1 and step + 1 == min(ESTIMATE_AFTER_STEPS, steps_per_epoch) and context.is_main and progress:
                tqdm.write(
                    _time_estimate(time.perf_counter() - started, step + 1, steps_per_epoch, last_epoch - start_epoch, config.batch_size, device)
                )
        bar.close()
        wall = time.perf_counter() - started
        epoch_loss = _mean_over_processes(tracker.total / steps_per_epoch, context)
        losses.append(epoch_loss)
        log_rows.append(
            {
                "epoch": epoch,
                "loss": repr(epoch_loss),  # exact, so a resumed run reports identical losses
                "lr": f"{lr:.6g}",  # of the epoch's last step
                "images_per_s": f"{steps_per_epoch * config.batch_size / wall:.2f}",
                "wall_s": f"{wall:.2f}",
            }
        )
        if monitor_pixels is not None:
            measured = measure(bare, monitor_pixels, augment, config.seed, device)
            log_rows[-1].update({name: f"{value:.6g}" for name, value in measured.items()})
        if knn_task is not None:
            log_rows[-1]["knn_auc"] = f"{measure_knn(bare, *knn_task, device):.6g}"
        if context.is_main:
            saved = _save_epoch(run, bare, optimizer, config, epoch, epoch_loss, log_rows)
            checkpoints.extend(saved)
            run.write_log(log_rows)
            done = epoch == config.epochs
            run.set_status("complete" if done else "running", epochs_done=epoch, epochs=config.epochs)
            if show:
                tqdm.write(f"epoch {epoch}/{config.epochs}  loss {epoch_loss:.4f}  {log_rows[-1]['images_per_s']} img/s")
        if context.enabled:
            torch.distributed.barrier()
    return PretrainResult(run.root, losses, checkpoints, images.unreadable, len(images))


ESTIMATE_AFTER_STEPS = 10  # steps timed (the first few are slower: warm-up) before the whole run's time is told


def _time_estimate(seconds: float, steps: int, steps_per_epoch: int, epochs: int, batch_size: int, device: torch.device) -> str:
    """How long the run will take on this machine, from its first steps (the monitors and saves come on top)."""
    total = seconds / steps * steps_per_epoch * epochs
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    hours, rest = divmod(round(total), 3600)
    return (
        f"{steps * batch_size / seconds:.1f} img/s over the first {steps} steps: {epochs} epoch(s) will take about "
        f"{f'{hours} h ' if hours else ''}{rest // 60} min {rest % 60} s on this machine ({where})"
    )


def _mean_over_processes(value: torch.Tensor, context: DistributedContext) -> float:
    if context.enabled:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= context.world_size
    return float(value)


def _stop_if_diverged(tracker: LossTracker, epoch: int, run: RunFolder, context: DistributedContext) -> None:
    diverged = tracker.diverged_at()
    # On the training device: NCCL reduces only GPU tensors.
    bad = torch.tensor([0.0 if diverged is None else 1.0], device=tracker.total.device)
    if context.enabled:
        torch.distributed.all_reduce(bad)  # every process stops together
    if bad.item() == 0:
        return
    saved = run.saved_checkpoints()
    last_good = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint had been saved yet"
    where = (
        f"the loss became {diverged[1]} at epoch {epoch}, step {diverged[0] + 1}" if diverged else f"another process's loss diverged at epoch {epoch}"
    )
    if context.is_main:
        run.set_status("diverged", epoch=epoch, step=diverged[0] + 1 if diverged else None)
    raise TrainingDiverged(
        f"{run.root}: {where}; {last_good} (the resumable state is from the end of epoch {epoch - 1}); lower --lr and continue with --resume"
    )


def _save_epoch(run: RunFolder, model: Method, optimizer, config: PretrainConfig, epoch: int, loss: float, log_rows: list[dict]) -> list[Path]:
    """Commit an epoch: its checkpoint, then the state (with the log), then (by the caller) log.csv and status.

    The state's weights go to a new file named by the epoch and the state's JSON is
    replaced after it, so a kill at any point leaves a JSON that names whole weights;
    the weights it no longer names are removed last.
    """
    weights = model.checkpoint_weights()
    metadata = checkpoint_metadata(
        config.arch,
        config.image_size,
        epoch,
        config.to_dict(),
        loss=loss,
        head={"hidden_features": config.hidden_features, "out_features": config.out_features},
        method=config.method,
        method_settings=dict(config.method_settings),
    )
    saved = []
    if config.keeps(epoch):
        saved.append(save_weights(run.checkpoint(epoch), weights, metadata))
    optimizer_tensors, optimizer_plain = optimizer_to_tensors(optimizer.state_dict())
    # State tensors are keyed by the method module's own names (targets and queues included), so it reloads directly.
    state_weights = {**model.state_dict(), **optimizer_tensors}
    weights_name = run.state_weights_name(epoch)
    save_weights(run.state, state_weights, {**metadata, "optimizer": optimizer_plain, "log": log_rows}, weights_name=weights_name)
    run.remove_state_weights_except(weights_name)
    return saved
