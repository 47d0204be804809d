"""Fine-tuning: the whole backbone plus a linear head trained end to end on a task's labels.

The paper judges a backbone with a frozen linear probe; users who deploy a classifier
fine-tune it, and the published CXR work measures both (MoCo-CXR, Sowrirajan et al.
2021; Azizi et al. 2021). The recipe is a supervised CXR classifier's:

* class-balanced binary cross-entropy (the positive class weighted by n_neg / n_pos);
* augmentations of a supervised classifier: random resized crops of 70–100 % of the
  film, rotations up to ±10°, brightness/contrast ±20 %; no flips (the heart is on the
  left), no blur, no heavy distortion;
* Adam (the engine's, fused on a GPU) with a 10× smaller learning rate for the backbone
  than for the new head, cosine decay over the planned steps, weight decay 1e-4;
* model selection on a patient-grouped validation part carved from the training part
  (``val_fraction`` of its patients, stratified): the epoch of the best validation AUC
  is kept, and training stops after ``patience`` epochs without a better one.

It runs through the pretraining engine (``BatchFeeder``, ``training_step``, bf16 autocast
where native, channels_last) on the CPU or CUDA. Each epoch's randomness is derived
from (seed, epoch), and the state is saved after every epoch when a work folder is
given, so an interrupted fine-tune resumes to the same result. Test scores are computed
in float32 eval mode, exactly as ``cxrssl predict`` computes them from a saved model.

The saved state (``_State``) is a set that a kill at any moment leaves whole: each
epoch's weights go to a new file named by its epoch and digest, then the record
``finetune_state.json`` naming that file and its SHA-256 replaces the old record, and
only then is the old weights file removed. A record that cannot be read, names missing
or other weights, or holds impossible values is reported on stderr and the fine-tune
starts over; a record of another fine-tune (other backbone, images, rows, targets or
settings: ``_state_key``) is refused, so two commands never extend each other's state.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from sklearn.metrics import roc_auc_score
from torch import nn

from cxrssl.checkpoint import CheckpointError, checkpoint_metadata, optimizer_from_tensors, optimizer_to_tensors, read_metadata, require_finite
from cxrssl.data.imageset import ImageSet
from cxrssl.data.splits import multilabel_patient_split, patient_grouped_split
from cxrssl.engine import BatchFeeder, LossTracker, make_optimizer, prepare_device, scheduled_lr, training_step
from cxrssl.errors import CxrsslError
from cxrssl.eval.features import BackboneSpec, extract_features
from cxrssl.eval.metrics import binary_metrics, bootstrap_intervals, confusion, youden_threshold
from cxrssl.eval.model import FindingsModel, LinearProbe
from cxrssl.fileio import atomic_write, atomic_write_json
from cxrssl.hardware import native_bf16, resolve_device
from cxrssl.models import feature_dim
from cxrssl.seeding import derived_generator, seed_everything
from cxrssl.ssl.augment import AugmentConfig, BatchAugment

FINETUNE_AUGMENT = AugmentConfig(crop_scale=(0.7, 1.0), flip_p=0.0, rotation_deg=10.0, jitter_p=0.8, brightness=0.2, contrast=0.2, blur_p=0.0)


class FinetuneError(CxrsslError):
    pass


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int = 20
    batch_size: int = 32
    head_lr: float = 1e-3
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 5  # epochs without a better validation AUC before stopping
    val_fraction: float = 0.2  # share of the training part's patients held out for model selection
    seed: int = 0
    amp: bool = True  # bf16 autocast where the device has native bf16
    device: str = "auto"
    augment: AugmentConfig = FINETUNE_AUGMENT

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("head_lr", "backbone_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise FinetuneError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        if not 0 < self.val_fraction < 1:
            raise FinetuneError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict:
        return {**asdict(self), "augment": self.augment.to_dict()}


class Classifier(nn.Module):
    """Backbone then a linear head: normalised images (N, 1, S, S) -> positive-class logit (N,), or one per finding (N, F).

    With ``outputs`` findings the loss is the binary cross-entropy of every labelled
    entry (a NaN target is not labelled and adds nothing), each finding's positives
    weighted by its ``pos_weight``, averaged over the labelled entries.
    """

    def __init__(self, backbone: nn.Module, features: int, outputs: int | None = None):
        super().__init__()
        self.outputs = outputs
        self.backbone, self.head = backbone, nn.Linear(features, outputs or 1)
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.head(self.backbone(images)).float()
        if self.outputs is None:
            logits = logits.squeeze(1)
            return logits if targets is None else self.loss(logits, targets)
        if targets is None:
            return logits
        labelled = torch.isfinite(targets)
        losses = nn.functional.binary_cross_entropy_with_logits(
            logits, torch.where(labelled, targets, 0.0), pos_weight=self.loss.pos_weight, reduction="none"
        )
        return (losses * labelled).sum() / labelled.sum().clamp(min=1)


@dataclass
class FinetuneFit:
    """One fine-tune: the chosen epoch, the validation curve, and the test scores of that epoch."""

    chosen_epoch: int
    val_auc: list[float]  # per epoch trained
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    confusion: dict[str, int]
    test_scores: np.ndarray
    n_fit: int
    n_val: int
    model: Classifier = field(repr=False, default=None)
    thresholds: np.ndarray | None = None  # multi-label: each finding's threshold, chosen on the validation part

    def probe(self, positive: str, negative: str) -> LinearProbe:
        """The head as a LinearProbe on raw features (mean 0, scale 1), for ``save_model`` and ``predict``."""
        weight = self.model.head.weight.detach().double().numpy()[0]
        zeros = np.zeros_like(weight)
        return LinearProbe(zeros, zeros + 1, weight, float(self.model.head.bias.detach()[0]), positive, negative, c=float("nan"))

    def findings_probe(self, names: Sequence[str]) -> FindingsModel:
        """A multi-label head as a FindingsModel on raw features, with the thresholds chosen on the validation part."""
        weight = self.model.head.weight.detach().double().numpy()
        zeros = np.zeros(weight.shape[1])
        return FindingsModel(
            tuple(names),
            zeros,
            zeros + 1,
            weight,
            self.model.head.bias.detach().double().numpy(),
            np.asarray(self.thresholds, float),
            np.full(len(names), np.nan),
        )


def carve_validation(
    patients: Sequence[str], labels: Sequence[str] | np.ndarray, rows: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows): a stratified share ``fraction`` of the training part's patients held out.

    ``labels`` may be a findings matrix (n, F): the share is then stratified over the
    findings (``data.splits.multilabel_patient_split``), and each part must hold both
    classes of at least one finding.
    """
    rows = np.asarray(rows, dtype=int)
    patients = np.asarray(patients, dtype=object)
    fractions = {"train": 1 - fraction, "val": fraction}
    findings = isinstance(labels, np.ndarray) and labels.ndim == 2
    if findings:
        parts = np.array(multilabel_patient_split(patients[rows], labels[rows], fractions, seed=seed))
    else:
        parts = np.array(patient_grouped_split(patients[rows], [labels[i] for i in rows], fractions, seed=seed))
    fit, val = rows[parts == "train"], rows[parts == "val"]
    for name, part in (("validation", val), ("fitting", fit)):
        if findings:  # some finding with both classes: as good as two classes; else the one class seen (or none)
            values = labels[part]
            classes = (
                {0, 1} if ((values == 1).any(axis=0) & (values == 0).any(axis=0)).any() else set(values[np.isfinite(values)].astype(int).tolist())
            )
        else:
            classes = {labels[i] for i in part}
        if len(classes) < 2:
            raise FinetuneError(
                f"the {name} part carved from {len(set(patients[rows]))} training patients holds "
                f"{'no' if not classes else 'one class of'} patients; give more labelled patients (a larger budget) or a larger --val-fraction"
            )
    return fit, val


def _start(spec: BackboneSpec, targets: np.ndarray, fit_rows: np.ndarray, findings: bool, settings: FinetuneSettings, device: torch.device):
    """The network and optimiser a fine-tune starts from: seeded, the loss's positives weighted by the fitting part's balance."""
    seed_everything(settings.seed)
    backbone = spec.build()
    require_finite(backbone.state_dict(), spec.description)
    model = Classifier(backbone, feature_dim(spec.arch), targets.shape[1] if findings else None).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(
        [{"params": model.backbone.parameters(), "lr": settings.backbone_lr}, {"params": model.head.parameters(), "lr": settings.head_lr}],
        settings.head_lr,
        settings.weight_decay,
        device,
    )
    if findings:  # per finding: labelled negatives / positives of the fitting part
        fitted = targets[fit_rows].astype(float)
        positives, negatives = (fitted == 1).sum(axis=0), (fitted == 0).sum(axis=0)
        model.loss.pos_weight = torch.tensor(np.maximum(1.0, negatives) / np.maximum(1.0, positives), dtype=torch.float32, device=device)
    else:
        positives = float(targets[fit_rows].sum())
        model.loss.pos_weight = torch.tensor(max(1.0, len(fit_rows) - positives) / max(1.0, positives), device=device)
    return model, optimizer


def _scores(model: Classifier, images: ImageSet, rows: np.ndarray, device: torch.device) -> np.ndarray:
    """P(positive) in float32 eval mode, through the extraction loop: what ``predict`` computes from the saved model."""
    logits = extract_features(model, images.select(rows), device=device)
    if not np.isfinite(logits).all():
        raise FinetuneError("the fine-tuned network's outputs became NaN or infinite; lower --lr/--backbone-lr, or check the backbone's checkpoint")
    return torch.sigmoid(torch.from_numpy(logits)).double().numpy()


def finetune(
    spec: BackboneSpec,
    images: ImageSet,
    targets: np.ndarray,
    patients: Sequence[str],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    settings: FinetuneSettings = FinetuneSettings(),
    bootstrap: int = 0,
    work_dir: str | Path | None = None,
    progress: bool = False,
    stop_after_epoch: int | None = None,  # tests: simulate an interruption
) -> FinetuneFit:
    """Fine-tune ``spec``'s backbone on ``train_rows`` (validation carved from them), then score ``test_rows``."""
    targets = np.asarray(targets)
    findings = targets.ndim == 2  # multi-label: one output per finding, NaN = not labelled
    labels = targets.astype(float) if findings else [str(t) for t in targets]
    fit_rows, val_rows = carve_validation(patients, labels, train_rows, settings.val_fraction, settings.seed)
    if len(fit_rows) < 2:
        raise FinetuneError(f"only {len(fit_rows)} image(s) left to fine-tune on; give more labelled patients")
    device = resolve_device(settings.device)
    prepare_device(device)
    model, optimizer = _start(spec, targets, fit_rows, findings, settings, device)
    batch_size = min(settings.batch_size, len(fit_rows))
    steps_per_epoch = len(fit_rows) // batch_size
    total_steps = steps_per_epoch * settings.epochs
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if settings.amp and native_bf16(device) else nullcontext()
    augment = BatchAugment(settings.augment, images.size)
    state = _State(Path(work_dir), spec.arch, images.size) if work_dir else None
    key = _state_key(spec, images, fit_rows, val_rows, settings, targets)
    val_curve: list[float] = []
    best = (-1.0, 0, None)  # (AUC, epoch, weights)
    start = 0
    if state and state.exists():
        resumed = state.load(model, optimizer, key, settings.epochs)
        if resumed is None:  # damaged: start over from exactly what a fresh fine-tune starts from
            model, optimizer = _start(spec, targets, fit_rows, findings, settings, device)
        else:
            start, val_curve, best = resumed
    for epoch in range(start + 1, settings.epochs + 1):
        if epoch - best[1] > settings.patience and best[1] > 0:
            break
        model.train()
        order = fit_rows[torch.randperm(len(fit_rows), generator=derived_generator(settings.seed, epoch, 0)).numpy()]
        generator = derived_generator(settings.seed, epoch, 1)
        batches = BatchFeeder(images.batch, order, batch_size, device)
        tracker = LossTracker(device)  # read once per epoch: no wait on the GPU after every step
        for step, pixels in enumerate(batches):
            global_step = (epoch - 1) * steps_per_epoch + step
            for group, base in zip(optimizer.param_groups, (settings.backbone_lr, settings.head_lr)):
                group["lr"] = scheduled_lr(base, global_step, total_steps, "cosine")
            batch_targets = torch.as_tensor(targets[order[step * batch_size : (step + 1) * batch_size]], dtype=torch.float32, device=device)
            views = augment(pixels, generator).contiguous(memory_format=torch.channels_last)
            tracker.add(training_step(model, optimizer, (views, batch_targets), autocast), step)
        diverged = tracker.diverged_at()
        if diverged:
            raise FinetuneError(f"the loss became {diverged[1]} at epoch {epoch}, step {diverged[0]}; lower --lr/--backbone-lr")
        val_auc = _validation_auc(targets[val_rows], _scores(model, images, val_rows, device))
        val_curve.append(val_auc)
        if val_auc > best[0]:
            best = (val_auc, epoch, copy.deepcopy(model.state_dict()))
        if progress:
            print(f"  fine-tune epoch {epoch:3d}: validation AUC {val_auc:.3f} (best {best[0]:.3f} at epoch {best[1]})")
        if state:
            state.save(model, optimizer, key, epoch, val_curve, best)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            raise KeyboardInterrupt
    model.load_state_dict(best[2])
    scores = _scores(model, images, np.asarray(test_rows), device)
    if findings:  # per-finding metrics are the caller's (eval.multilabel): they depend on which findings can be scored
        val_scores = _scores(model, images, val_rows, device)
        thresholds = np.array([youden_threshold(targets[val_rows, j], val_scores[:, j]) for j in range(targets.shape[1])])
        if state:
            state.remove()
        return FinetuneFit(best[1], val_curve, {}, {}, {}, scores, len(fit_rows), len(val_rows), model.cpu().eval(), thresholds)
    truth = targets[test_rows]
    patients = np.asarray(patients, dtype=object)
    intervals = bootstrap_intervals(truth, scores, patients[test_rows], resamples=bootstrap, seed=settings.seed) if bootstrap else {}
    if state:
        state.remove()
    return FinetuneFit(
        best[1],
        val_curve,
        binary_metrics(truth, scores),
        intervals,
        confusion(truth, scores >= 0.5),
        scores,
        len(fit_rows),
        len(val_rows),
        model.cpu().eval(),
    )


def _validation_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """The AUC that picks the epoch: binary, or the mean over the findings whose labelled validation entries hold both classes."""
    if truth.ndim == 1:
        return float(roc_auc_score(truth, scores))
    values = []
    for j in range(truth.shape[1]):
        labelled = np.isfinite(truth[:, j])
        if 0 < truth[labelled, j].sum() < labelled.sum():
            values.append(roc_auc_score(truth[labelled, j], scores[labelled, j]))
    return float(np.mean(values)) if values else float("nan")


STATE_VERSION = "finetune-state/2"  # bump when what a state holds, or what a fine-tune depends on, changes


def _state_key(spec: BackboneSpec, images: ImageSet, fit_rows, val_rows, settings: FinetuneSettings, targets: np.ndarray) -> str:
    """Everything a fine-tune's result depends on: the backbone's weights, the images (pixels, paths, size),
    the fitting and validation rows, every setting (seed, device and augmentation included) and the targets it learns."""
    text = json.dumps(
        [
            STATE_VERSION,
            spec.identity(),
            spec.arch,
            images.digest,
            images.size,
            np.asarray(fit_rows).tolist(),
            np.asarray(val_rows).tolist(),
            settings.to_dict(),
            list(np.shape(targets)),
            f"torch {torch.__version__}",
        ],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(text.encode())
    digest.update(np.ascontiguousarray(np.asarray(targets, dtype=float)).tobytes())
    return digest.hexdigest()


class _State:
    """The resumable state of one fine-tune: model, optimiser, best weights, validation curve.

    ``finetune_state.json`` (the record, written last) names the weights file
    ``finetune_state_<epoch>_<digest>.safetensors`` and its SHA-256; older weights files
    are removed only after the record naming the new one is in place.
    """

    PREFIX = "finetune_state"

    def __init__(self, folder: Path, arch: str, image_size: int):
        self.folder, self.arch, self.image_size = folder, arch, image_size
        self.path = folder / f"{self.PREFIX}.json"

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, model, optimizer, key, epoch, val_curve, best) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best[2].items()})
        optimizer_tensors, optimizer_meta = optimizer_to_tensors(optimizer.state_dict())  # keys start with "optimizer."
        tensors.update({k: v.detach().cpu().contiguous() for k, v in optimizer_tensors.items()})
        data = save_safetensors(tensors, metadata={"epoch": str(epoch), "format": "cxrssl-checkpoint/1"})
        sha256 = hashlib.sha256(data).hexdigest()
        weights = self.folder / f"{self.PREFIX}_{epoch:04d}_{sha256[:16]}.safetensors"
        atomic_write(weights, lambda tmp: tmp.write_bytes(data))
        meta = checkpoint_metadata(
            self.arch,
            self.image_size,
            epoch,
            {},
            kind="finetune-state",
            key=key,
            val_auc=val_curve,
            best_auc=best[0],
            best_epoch=best[1],
            optimizer=optimizer_meta,
        )
        atomic_write_json(self.path, {**meta, "weights": weights.name, "weights_sha256": sha256})
        for old in self.folder.glob(f"{self.PREFIX}*.safetensors"):  # the record no longer names them
            if old.name != weights.name:
                old.unlink(missing_ok=True)

    def load(self, model, optimizer, key, epochs: int):
        """(epoch, validation curve, best) of the saved state, loaded into ``model`` and ``optimizer``; None when damaged (said on stderr).

        A state of another fine-tune is refused: resuming it would mix two fine-tunes.
        """
        try:
            meta, weights_path = read_metadata(self.path)
        except CheckpointError as error:
            return self._start_over(str(error))
        if meta.get("kind") == "finetune-state" and "weights_sha256" not in meta:
            return self._start_over(f"{self.path}: a fine-tune state of an older cxrssl (its weights unverified)")
        if meta.get("kind") != "finetune-state" or meta.get("key") != key:
            stored_key = meta.get("key")
            if (
                meta.get("kind") == "finetune-state"
                and isinstance(stored_key, str)
                and len(stored_key) == 64
                and set(stored_key) <= set("0123456789abcdef")
            ):
                raise FinetuneError(
                    f"{self.path}: the saved fine-tune was made with other data, settings or backbone; "
                    f"delete {self.folder} to start again, or rerun with the same inputs to resume"
                )
            return self._start_over(f"{self.path}: not a whole fine-tune state record (kind {meta.get('kind')!r}, key damaged or absent)")
        try:
            data = weights_path.read_bytes()
            if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
                return self._start_over(f"{weights_path}: its content does not match the SHA-256 its record names")
            tensors = load_safetensors(data)
            epoch, val_curve, best_auc, best_epoch = _checked_progress(meta, epochs)
            require_finite(tensors, weights_path)
            take = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
            current = model.state_dict()
            for part in ("model.", "best."):
                loaded = take(part)
                if loaded.keys() != current.keys() or any(
                    loaded[k].shape != current[k].shape or loaded[k].dtype != current[k].dtype for k in current
                ):
                    raise ValueError(f"its {part.rstrip('.')} weights do not fit this network")
            device = next(model.parameters()).device
            optimizer_state = optimizer_from_tensors({k: v.to(device) for k, v in tensors.items()}, meta["optimizer"])
            _require_fitting_optimizer(optimizer, optimizer_state)
            model.load_state_dict({k: v.to(device) for k, v in take("model.").items()})
            optimizer.load_state_dict(optimizer_state)
            return epoch, val_curve, (best_auc, best_epoch, {k: v.to(device) for k, v in take("best.").items()})
        except Exception as error:  # noqa: BLE001 - any damage means: start over; the caller rebuilds model and optimiser
            return self._start_over(
                f"{self.path}: the saved state is damaged ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            )

    @staticmethod
    def _start_over(reason: str) -> None:
        print(f"warning: {reason}; the fine-tune starts over", file=sys.stderr)
        return None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _require_fitting_optimizer(optimizer, saved: dict) -> None:
    """A saved optimiser state that ``optimizer`` can continue from: the same groups and settings (the learning rate,
    rescheduled every step, a finite number), and moment tensors of its parameters' shapes."""
    current = optimizer.state_dict()
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise ValueError("its optimiser groups do not fit this network")
    for group, now in zip(groups, json.loads(json.dumps(current["param_groups"], default=str))):  # as the record holds them
        if not isinstance(group, dict) or group.keys() != now.keys() or any(group[k] != now[k] for k in now if k != "lr"):
            raise ValueError("its optimiser settings are not this fine-tune's")
        if type(group["lr"]) not in (int, float) or not math.isfinite(group["lr"]):
            raise ValueError(f"its learning rate {group['lr']!r} is not a number")
    shapes = {
        index: param.shape
        for numbered, live in zip(current["param_groups"], optimizer.param_groups)
        for index, param in zip(numbered["params"], live["params"])
    }
    for index, values in saved["state"].items():
        if index not in shapes:
            raise ValueError(f"its optimiser state names parameter {index}, which this network lacks")
        for name, value in values.items():
            if not torch.is_tensor(value):
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise ValueError(f"its optimiser value {index}.{name} {value!r} is not a number")
            elif (value.ndim and value.shape != shapes[index]) or not bool(torch.isfinite(value).all()):
                raise ValueError(f"its optimiser state {index}.{name} does not fit its parameter")


def _checked_progress(meta: dict, epochs: int) -> tuple[int, list[float], float, int]:
    """The epoch, validation curve and best epoch of a state record, each checked against the others and ``epochs``."""
    epoch, curve, best_auc, best_epoch = meta["epoch"], meta.get("val_auc"), meta.get("best_auc"), meta.get("best_epoch")
    if type(epoch) is not int or not 1 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch!r} is not between 1 and {epochs}")
    if not isinstance(curve, list) or len(curve) != epoch or not all(type(v) in (int, float) for v in curve):
        raise ValueError(f"the validation curve is not {epoch} numbers")
    if type(best_epoch) is not int or not 1 <= best_epoch <= epoch or type(best_auc) not in (int, float) or not math.isfinite(best_auc):
        raise ValueError(f"best epoch {best_epoch!r} / AUC {best_auc!r} are impossible")
    if not isinstance(meta.get("optimizer"), dict):
        raise ValueError("the optimiser's record is missing")
    return epoch, [float(v) for v in curve], float(best_auc), best_epoch
