"""Checkpoints: safetensors weights plus a JSON file that says how to rebuild them.

Loading a checkpoint never unpickles code. Two kinds of files live in a run folder:

- ``checkpoints/epoch_NNNN.safetensors`` + ``.json``: backbone and projection head,
  and what is needed to rebuild the backbone alone (arch, image size, input
  channels, pixel normalisation, epoch, the run's config, cxrssl version);
- ``state/last.safetensors`` + ``.json``: the same weights plus the optimiser's
  state, rewritten after every epoch, for ``--resume``.

Each pair is written weights first, JSON second, each atomically; the epoch is also
stored inside the safetensors header, so a crash between the two writes is detected
instead of silently pairing new weights with old metadata.

Every value read back that sizes an allocation or drives a computation is checked on
load (``read_metadata``, ``require_finite``): the image size is a whole number of pixels
no larger than ``MAX_IMAGE_SIZE``, recorded widths fit the architecture, and weights
holding NaN or infinite values are refused with one line instead of giving NaN features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from cxrssl import __version__
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write, atomic_write_json
from cxrssl.models import ARCHITECTURES, MAX_IMAGE_SIZE, PIXEL_MEAN, PIXEL_STD, build_backbone, feature_dim
from cxrssl.ssl.methods import METHODS

FORMAT = "cxrssl-checkpoint/1"
MAX_EPOCH = 1_000_000


class CheckpointError(CxrsslError):
    pass


def checkpoint_metadata(arch: str, image_size: int, epoch: int, config: dict, **extra) -> dict:
    return {
        "format": FORMAT,
        "arch": arch,
        "image_size": image_size,
        "in_channels": 1,
        "feature_dim": feature_dim(arch),
        "pixel_mean": PIXEL_MEAN,
        "pixel_std": PIXEL_STD,
        "epoch": epoch,
        "config": config,
        "cxrssl_version": __version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in tensors.items()}


def save_weights(json_path: Path, tensors: dict[str, torch.Tensor], metadata: dict, weights_name: str | None = None) -> Path:
    """Write ``<stem>.safetensors`` (or ``weights_name`` beside it) then ``<stem>.json``, both atomically."""
    json_path = Path(json_path)
    weights_path = json_path.parent / weights_name if weights_name else json_path.with_suffix(".safetensors")
    header = {"epoch": str(metadata["epoch"]), "format": FORMAT}
    atomic_write(weights_path, lambda tmp: save_file(_contiguous(tensors), str(tmp), metadata=header))
    atomic_write_json(json_path, {**metadata, "weights": weights_path.name})
    return json_path


def read_metadata(path: str | Path) -> tuple[dict, Path]:
    """Metadata and weights path of a checkpoint given by its .json or .safetensors."""
    path = Path(path)
    json_path = path.with_suffix(".json") if path.suffix == ".safetensors" else path
    if not json_path.is_file():
        raise CheckpointError(f"{json_path}: no checkpoint metadata here; pass a checkpoint's .json (e.g. RUN/checkpoints/epoch_0010.json)")
    try:
        metadata = json.loads(json_path.read_text())
    except ValueError as error:  # not JSON, or not UTF-8 text
        raise CheckpointError(f"{json_path}: checkpoint metadata is not valid JSON ({error}); the file is damaged") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise CheckpointError(f"{json_path}: not a cxrssl checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [key for key in ("weights", "epoch", "arch", "image_size") if key not in metadata]
    if missing:
        raise CheckpointError(f"{json_path}: checkpoint metadata lacks {', '.join(missing)}; the file is damaged, use another checkpoint")
    if not isinstance(metadata["arch"], str) or metadata["arch"] not in ARCHITECTURES:
        raise CheckpointError(
            f"{json_path}: names architecture {metadata['arch']!r}, not one of {', '.join(ARCHITECTURES)}; the file is damaged or from a newer cxrssl"
        )
    for key, low, high in (("epoch", 0, MAX_EPOCH), ("image_size", 1, MAX_IMAGE_SIZE)):
        if type(metadata[key]) is not int or not low <= metadata[key] <= high:
            what = "count" if key == "epoch" else f"size in pixels (1 to {MAX_IMAGE_SIZE})"
            raise CheckpointError(f"{json_path}: {key} {metadata[key]!r} is not a {what}; the file is damaged, use another checkpoint")
    for key, expected in (("in_channels", 1), ("feature_dim", feature_dim(metadata["arch"]))):
        if key in metadata and (type(metadata[key]) is not int or metadata[key] != expected):
            raise CheckpointError(
                f"{json_path}: {key} {metadata[key]!r} does not fit a {metadata['arch']} (expected {expected}); the file is damaged, use another checkpoint"
            )
    config = metadata.get("config", {})
    if not isinstance(config, dict) or not isinstance(config.get("fraction"), (int, float, type(None))):
        raise CheckpointError(f"{json_path}: its recorded config is damaged; use another checkpoint")
    name = metadata["weights"]
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors") or name.startswith("."):
        raise CheckpointError(f"{json_path}: names weights {name!r} outside its own folder; a checkpoint's weights must sit beside its .json")
    method = metadata.get("method", "simclr")  # checkpoints before methods were plug-ins are SimCLR's
    if not isinstance(method, str) or method not in METHODS:
        raise CheckpointError(f"{json_path}: made by method {method!r}, which this cxrssl does not know ({', '.join(METHODS)}); upgrade cxrssl")
    weights_path = json_path.parent / metadata["weights"]
    if not weights_path.is_file():
        raise CheckpointError(f"{json_path}: its weights file {weights_path.name} is missing; the checkpoint is incomplete")
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            stored_epoch = (handle.metadata() or {}).get("epoch")
    except Exception as error:  # truncated or foreign bytes
        raise CheckpointError(
            f"{weights_path}: not readable safetensors ({type(error).__name__}: {error}); the file is damaged, use another checkpoint"
        ) from None
    if stored_epoch != str(metadata["epoch"]):
        raise CheckpointError(
            f"{json_path}: weights are from epoch {stored_epoch} but metadata says {metadata['epoch']}; "
            f"the run was interrupted while saving, use an earlier checkpoint"
        )
    return metadata, weights_path


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    metadata, weights_path = read_metadata(path)
    try:
        return load_file(str(weights_path)), metadata
    except Exception as error:
        raise CheckpointError(
            f"{weights_path}: cannot be read ({type(error).__name__}: {error}); the file is damaged, use another checkpoint"
        ) from None


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def load_backbone(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the backbone m(.) from checkpoint files alone, in eval mode."""
    tensors, metadata = load_tensors(path)
    return backbone_from_tensors(tensors, metadata["arch"], path), metadata


def backbone_from_tensors(tensors: dict[str, torch.Tensor], arch: str, where: str | Path = "checkpoint") -> nn.Module:
    """The ``backbone.*`` tensors of a checkpoint or saved model (the file ``where``, named in errors) as a network, in eval mode."""
    backbone = build_backbone(arch)
    try:
        backbone.load_state_dict(_with_prefix(tensors, "backbone."))
    except RuntimeError as error:  # foreign or mismatched tensors
        first = str(error).strip().splitlines()
        raise CheckpointError(
            f"{where}: its backbone tensors do not fit a {arch} ({first[1].strip() if len(first) > 1 else first[0]}); the file is damaged or of another network"
        ) from None
    require_finite(backbone.state_dict(), where)
    return backbone.eval()


def require_finite(tensors: dict[str, torch.Tensor], where: str | Path) -> None:
    """Refuse weights holding NaN or infinite values (a diverged or damaged file), naming ``where`` and the first such tensor."""
    for name, value in tensors.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{where}: its weights hold NaN or infinite values ({name}); the file is damaged or its training diverged, use another checkpoint"
            )


# --- the training state, for --resume ----------------------------------------------


def optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state dict into tensors (safetensors) and plain values (JSON)."""
    tensors, plain = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                plain[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": plain}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in saved["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": saved["param_groups"]}
