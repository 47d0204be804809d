"""Optional parts of cxrssl, installed as extras (``pip install "cxrssl[dicom]"``).

A verb that needs one imports it through :func:`require`, so a missing extra is one
line naming the extra to install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cxrssl.errors import CxrsslError

# extra name -> what it is for (the modules each extra brings are named at the call sites)
EXTRAS = {
    "dicom": "reading DICOM files",
    "explain": "Grad-CAM explanations (gradcam, the report, predict --heatmaps, finetune --gradcam)",
    "export": "exporting to ONNX",
    "bench": "the benchmarks against other libraries",
    "test": "the test suite",
    "docs": "building the documentation site",
}


class MissingExtra(CxrsslError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise one line naming the extra that installs it."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(
            f'{EXTRAS[extra]} needs {module.split(".")[0]}, which is not installed ({error.msg}); install the extra: pip install "cxrssl[{extra}]"'
        ) from None
