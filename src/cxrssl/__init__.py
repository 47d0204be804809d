"""cxrssl: self-supervised pretraining on chest X-rays and honest evaluation.

The method follows Gazda et al., "Self-supervised deep convolutional neural network
for chest X-ray classification", IEEE Access 2021 (arXiv 2103.03055).

The Python API (docs/api.md)::

    import cxrssl

    run = cxrssl.pretrain("pool.csv", "runs/simclr", config="cpu")
    backbone = cxrssl.load_backbone(run.checkpoints[-1])        # a plain torch.nn.Module
    result = cxrssl.probe(run.checkpoints[-1], "task.csv")      # the paper's frozen-feature probe
    found = cxrssl.compare({"simclr": run.checkpoints[-1], "random": "random"}, ["task.csv"], "compare")

The names are loaded on first use, so ``import cxrssl`` (and the command line's start)
stays quick and needs no torch until a function is called.
"""

__version__ = "0.1.0"

# name -> module it lives in; the stable API.
_API = {
    "pretrain": "cxrssl.api",
    "load_backbone": "cxrssl.api",
    "extract_features": "cxrssl.api",
    "probe": "cxrssl.api",
    "compare": "cxrssl.api",
    "finetune": "cxrssl.api",
    "predict": "cxrssl.api",
    "export": "cxrssl.exporter",
    "PretrainConfig": "cxrssl.config",
    "BackboneSpec": "cxrssl.eval.features",
    "ProbeSettings": "cxrssl.eval.probe",
    "CompareSettings": "cxrssl.eval.compare",
    "FinetuneSettings": "cxrssl.eval.finetune",
    "read_manifest": "cxrssl.data.manifest",
    "CxrsslError": "cxrssl.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The API's names, imported when first used (PEP 562): not an import that hides a cycle."""
    if name not in _API:
        raise AttributeError(f"module 'cxrssl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
