"""Label-free monitors of a pretraining run, written into log.csv after every epoch.

Without labels a user cannot probe a checkpoint, but can see whether the features are
collapsing or still spreading out:

- **RankMe** (Garrido et al. 2023): the effective rank exp(H(p)) of the backbone's
  embeddings of a fixed sample of the pretext images, with p the singular values
  normalised to sum to 1 (plus a small epsilon). It rises while the representation
  uses more dimensions; a collapse drives it towards 1.
- **Alignment and uniformity** (Wang & Isola 2020) of the normalised projections:
  alignment = E ||z(x) - z(x')||^2 over the two views of an image (lower: views agree),
  uniformity = log E exp(-2 ||z_i - z_j||^2) over pairs of images (lower: spread over
  the sphere). The sample and its two views are fixed for the run, so epochs compare.

With a handful of labels there is a fourth (``--monitor TASK.csv``, solo-learn's k-NN
monitor): the **k-NN AUC** of the backbone's clean features of a small labelled set,
each film scored by the similarity-weighted vote of its k = 20 nearest films of
*other* patients (cosine similarity, weights exp(s / 0.07), as in solo-learn and Wu et
al. 2018). Nothing is fitted, so it costs one forward pass of the set per epoch.

``cxrssl sweep`` puts them beside the probe AUC of each checkpoint with their rank
correlation and the checkpoint each one would keep, which says whether a monitor
would have picked the right checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cxrssl.models import normalize_pixels

MONITOR_COLUMNS = ("rankme", "alignment", "uniformity", "knn_auc")
# Which way is better for each monitor: +1 higher (a checkpoint choice takes the highest), -1 lower.
MONITOR_DIRECTION = {"rankme": 1, "alignment": -1, "uniformity": -1, "knn_auc": 1}
MONITOR_IMAGES = 512
KNN_K = 20
KNN_TEMPERATURE = 0.07


def rankme(embeddings: torch.Tensor, epsilon: float = 1e-7) -> float:
    """Effective rank of an (N, D) matrix: exp of the entropy of its normalised singular values."""
    singular = torch.linalg.svdvals(embeddings.double())
    p = singular / singular.sum() + epsilon
    return float(torch.exp(-(p * torch.log(p)).sum()))


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    z1, z2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    return float((z1 - z2).pow(2).sum(dim=1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    z = F.normalize(z.double(), dim=1)
    return float(torch.pdist(z).pow(2).mul(-t).exp().mean().log())


def monitor_rows(count: int, seed: int) -> np.ndarray:
    """The fixed sample: up to MONITOR_IMAGES image indices drawn once from the run's seed."""
    rng = np.random.default_rng([seed, 0x4D4F4E])
    return np.sort(rng.permutation(count)[: min(MONITOR_IMAGES, count)])


@torch.no_grad()
def measure(model, pixels: torch.Tensor, augment, seed: int, device: torch.device, batch_size: int = 128) -> dict[str, float]:
    """RankMe of the backbone on clean images, alignment and uniformity of the projections of two views.

    ``pixels`` are the sample's uint8 images (N, S, S). The model is put in eval mode
    (BatchNorm's running statistics) and back in train mode after.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    embeddings, first, second = [], [], []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size].to(device)
        clean = normalize_pixels(batch.unsqueeze(1)).contiguous(memory_format=torch.channels_last)
        embeddings.append(model.backbone(clean).float().cpu())
        for views in (first, second):
            view = augment(batch, generator).contiguous(memory_format=torch.channels_last)
            views.append(model.head(model.backbone(view)).float().cpu())
    model.train(was_training)
    z1, z2 = torch.cat(first), torch.cat(second)
    values = {"rankme": rankme(torch.cat(embeddings)), "alignment": alignment(z1, z2), "uniformity": uniformity(torch.cat([z1, z2]))}
    return {name: value if math.isfinite(value) else float("nan") for name, value in values.items()}


def knn_scores(features: np.ndarray | torch.Tensor, targets: np.ndarray, groups, k: int = KNN_K, temperature: float = KNN_TEMPERATURE) -> np.ndarray:
    """Each film's k-NN score: the weighted share of positives among its k most similar films of other patients.

    ``targets`` are 0/1, ``groups`` the patient of each film (films of one patient are
    never each other's neighbours). A film whose patient holds every film scores 0.5.
    """
    features = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float64), dim=1)
    similarity = features @ features.T
    groups = np.asarray([str(g) for g in groups])
    same = torch.as_tensor(groups[:, None] == groups[None, :])
    similarity = similarity.masked_fill(same, float("-inf"))
    others = int((~same).sum(dim=1).min())
    if others == 0:
        raise ValueError("the k-NN monitor needs films of at least two patients")
    top, where = similarity.topk(min(k, others), dim=1)
    weights = torch.exp(top / temperature - (top / temperature).max(dim=1, keepdim=True).values)  # stable; the scale cancels
    votes = torch.as_tensor(np.asarray(targets), dtype=torch.float64)[where]
    return ((weights * votes).sum(dim=1) / weights.sum(dim=1)).numpy()


def knn_auc(features, targets: np.ndarray, groups, k: int = KNN_K, temperature: float = KNN_TEMPERATURE) -> float:
    """ROC AUC of the k-NN scores (:func:`knn_scores`) against the 0/1 targets."""
    from sklearn.metrics import roc_auc_score

    targets = np.asarray(targets)
    if len(set(targets.tolist())) != 2:
        raise ValueError("the k-NN monitor needs films of both classes")
    return float(roc_auc_score(targets, knn_scores(features, targets, groups, k, temperature)))


def knn_monitor_set(path, size: int, progress: bool = False):
    """The k-NN monitor's labelled set (``--monitor``): its labelled readable films (an ImageSet), their 0/1 targets
    and patients; a one-line ConfigError when it cannot judge (one class, one patient, no labels)."""
    from cxrssl.data.images import open_image_set
    from cxrssl.data.splits import binary_targets
    from cxrssl.errors import ConfigError, CxrsslError

    images = open_image_set(path, size, progress)
    images = images.select([i for i, row in enumerate(images.manifest.rows) if row.label])
    try:
        targets, _, _ = binary_targets(images.manifest.labels)
    except CxrsslError as error:
        raise ConfigError(f"{path}: --monitor needs a manifest with two classes in its label column ({error})") from None
    if len(set(images.manifest.patient_keys)) < 2 or len(set(targets.tolist())) < 2:
        raise ConfigError(f"{path}: --monitor needs films of both classes from at least two patients")
    return images, targets, images.manifest.patient_keys


@torch.no_grad()
def measure_knn(model, pixels: torch.Tensor, targets: np.ndarray, groups, device: torch.device, batch_size: int = 128) -> float:
    """k-NN AUC of the backbone's clean features of a labelled set (uint8 pixels (N, S, S)), in eval mode."""
    was_training = model.training
    model.eval()
    features = []
    for start in range(0, len(pixels), batch_size):
        batch = normalize_pixels(pixels[start : start + batch_size].to(device).unsqueeze(1)).contiguous(memory_format=torch.channels_last)
        features.append(model.backbone(batch).float().cpu())
    model.train(was_training)
    value = knn_auc(torch.cat(features), targets, groups)
    return value if math.isfinite(value) else float("nan")
