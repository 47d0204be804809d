"""Which backbones a command evaluates, and the names their rows carry in tables.

The one place that turns "a checkpoint, or an initialisation" into ``BackboneSpec`` s,
used by the command line and by the Python API alike.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cxrssl.errors import CxrsslError
from cxrssl.eval.compare import NamedBackbone
from cxrssl.eval.features import DEFAULT_READOUT, BackboneSpec
from cxrssl.models import DEFAULT_ARCH


def backbone_spec(
    checkpoint=None, init: str | None = None, arch: str | None = None, image_size: int = 128, seed: int = 0, readout: str = DEFAULT_READOUT
) -> BackboneSpec:
    """A checkpoint's backbone (``arch``, if given, is checked against it), or an initialisation:
    ``random``, ``imagenet`` or a weights file, of ``arch`` at ``image_size``."""
    if checkpoint:
        spec = BackboneSpec.from_checkpoint(checkpoint)
        if arch and arch != spec.arch:
            raise CxrsslError(f"{checkpoint}: is a {spec.arch} checkpoint, not {arch}; drop --arch or pass a {arch} checkpoint")
        return replace(spec, readout=readout)
    if init is None:
        raise CxrsslError("give a checkpoint or an initialisation (random, imagenet or a weights file)")
    return replace(BackboneSpec.from_init(init, arch or DEFAULT_ARCH, image_size, seed), readout=readout)


def checkpoint_name(spec: BackboneSpec) -> str:
    """The row name of a checkpoint given without NAME=: its run folder and epoch."""
    return f"{spec.checkpoint.parent.parent.name} epoch {spec.epoch}"


def split_named(text: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (a path that exists and holds ``=`` is a path)."""
    if "=" in text and not Path(text).is_file():
        name, _, path = text.rpartition("=")
        return name, path
    return "", text


def named_backbones(
    checkpoints=(), inits=(), arch: str | None = None, image_size: int | None = None, seed: int = 0, readout: str = DEFAULT_READOUT
) -> list:
    """``compare`` 's backbones: checkpoints (``[NAME=]PATH``), then initialisations.

    ``image_size`` probes every backbone at that size (a checkpoint too); otherwise the
    initialisations follow the first checkpoint's architecture and size.
    """
    backbones = []
    for text in checkpoints:
        name, path = split_named(text)
        spec = BackboneSpec.from_checkpoint(path)
        if image_size:  # probe at another size than the one it was pretrained at
            spec = replace(spec, image_size=image_size)
        backbones.append(NamedBackbone(name or checkpoint_name(spec), spec))
    first = backbones[0].spec if backbones else None
    for init in inits:
        spec = BackboneSpec.from_init(init, arch or (first.arch if first else DEFAULT_ARCH), image_size or (first.image_size if first else 128), seed)
        backbones.append(NamedBackbone(spec.init_label, spec))
    return [NamedBackbone(b.name, replace(b.spec, readout=readout)) for b in backbones]
