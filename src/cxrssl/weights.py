"""Initial weights of a backbone: random, ImageNet, or a file to continue from.

``init`` is ``random`` (the baseline), ``imagenet`` (torchvision's ImageNet-1k weights
of the architecture, read from torchvision's standard cache: cxrssl never downloads)
or a path: a torchvision-format state dict (``.pth``/``.pt``, read with
``torch.load(weights_only=True)``, so no code is unpickled), a ``.safetensors`` file,
or a cxrssl checkpoint ``.json`` (continued pretraining). A three-channel stem is
folded into the one-channel stem by summing its colour filters (``rgb_stem_to_gray``);
the classifier (``fc.*``) is dropped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cxrssl.checkpoint import load_tensors
from cxrssl.errors import CxrsslError
from cxrssl.models import build_backbone, feature_dim, rgb_stem_to_gray

# torchvision's weight enums, whose IMAGENET1K_V1 file names are stable.
IMAGENET_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "wide_resnet50_2": "Wide_ResNet50_2_Weights",
}
PREFIXES = ("module.", "backbone.", "encoder.", "model.")


class WeightsError(CxrsslError):
    pass


def imagenet_file(arch: str) -> tuple[Path, str]:
    """Where torchvision keeps the ImageNet weights of ``arch``, and where they come from."""
    import torchvision

    feature_dim(arch)
    url = getattr(torchvision.models, IMAGENET_WEIGHTS[arch]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def init_file(init: str, arch: str) -> Path:
    """The file ``init`` reads, checked to exist (``init`` is not ``random``)."""
    if init == "imagenet":
        path, url = imagenet_file(arch)
        if not path.is_file():
            raise WeightsError(
                f"{path}: ImageNet weights of {arch} are not there and cxrssl does not download; place {url} there, or use --init random"
            )
        return path
    path = Path(init)
    if not path.is_file():
        raise WeightsError(
            f"{path}: no such weights file; --init takes random, imagenet, a .pth/.safetensors state dict or a cxrssl checkpoint .json"
        )
    return path


def read_state_dict(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """The backbone tensors in ``path``, named as in ``build_backbone(arch)``, stem folded to one channel."""
    if path.suffix == ".json":
        tensors, metadata = load_tensors(path)
        if metadata["arch"] != arch:
            raise WeightsError(f"{path}: is a {metadata['arch']} checkpoint, not {arch}; choose --arch {metadata['arch']} or another file")
        tensors = {key[len("backbone.") :]: value for key, value in tensors.items() if key.startswith("backbone.")}
    else:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                tensors = load_file(str(path))
            else:
                tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any damage or foreign format: one line, below
            raise WeightsError(f"{path}: not a readable state dict ({type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]})") from None
        if isinstance(tensors, dict) and isinstance(tensors.get("state_dict"), dict):
            tensors = tensors["state_dict"]
        if not isinstance(tensors, dict) or not all(torch.is_tensor(v) for v in tensors.values()):
            raise WeightsError(f"{path}: holds no state dict of tensors; pass the weights of a torchvision {arch}")
        for prefix in PREFIXES:
            if tensors and all(key.startswith(prefix) for key in tensors):
                tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    tensors = {key: value for key, value in tensors.items() if not key.startswith("fc.")}
    stem = tensors.get("conv1.weight")
    if stem is not None and stem.ndim == 4 and stem.shape[1] == 3:
        tensors["conv1.weight"] = rgb_stem_to_gray(stem)
    return tensors


def load_init(backbone: nn.Module, arch: str, init: str) -> None:
    """Load ``init``'s weights into ``backbone`` (a ``build_backbone(arch)``); ``random`` leaves it."""
    if init == "random":
        return
    path = init_file(init, arch)
    tensors = read_state_dict(path, arch)
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [key for key in expected if key in tensors and tensors[key].shape != expected[key].shape]
    if missing or unexpected or wrong:
        detail = (
            f"{wrong[0]} is {tuple(tensors[wrong[0]].shape)}, {arch} needs {tuple(expected[wrong[0]].shape)}"
            if wrong
            else f"{len(missing)} tensor(s) missing (e.g. {missing[0]})"
            if missing
            else f"unknown tensor(s) (e.g. {unexpected[0]})"
        )
        raise WeightsError(f"{path}: not weights of a {arch} ({detail}); pass weights of the same architecture or change --arch")
    backbone.load_state_dict(tensors)


def initial_backbone(arch: str, init: str) -> nn.Module:
    """A one-channel backbone with ``init``'s weights (random: a fresh draw of torch's RNG)."""
    backbone = build_backbone(arch)
    load_init(backbone, arch, init)
    return backbone


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
