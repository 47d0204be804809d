"""cxrssl installs beside other libraries: ranges in pyproject, the tested set in
constraints.txt, and optional parts that are optional.

The missing-extra checks run in a subprocess whose import system refuses the optional
packages, so they run wherever the tests run, with every extra installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# import name -> the extra that brings it
OPTIONAL_MODULES = {
    "pydicom": "dicom",
    "pytorch_grad_cam": "explain",
    "ttach": "explain",
    "cv2": "explain",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "lightly": "bench",
    "mkdocs": "docs",
}
# Modules every user imports, whichever extras they have: none may import an optional package.
CORE_MODULES = [
    "cxrssl",
    "cxrssl.cli",
    "cxrssl.config",
    "cxrssl.checkpoint",
    "cxrssl.models",
    "cxrssl.weights",
    "cxrssl.engine",
    "cxrssl.train",
    "cxrssl.run",
    "cxrssl.demo",
    "cxrssl.data.io",
    "cxrssl.data.manifest",
    "cxrssl.data.cache",
    "cxrssl.data.check",
    "cxrssl.data.phantom",
    "cxrssl.data.adapters",
    "cxrssl.eval.features",
    "cxrssl.eval.probe",
    "cxrssl.eval.compare",
    "cxrssl.eval.finetune",
    "cxrssl.eval.sweep",
    "cxrssl.explain.gradcam",
    "cxrssl.explain.gallery",
    "cxrssl.explain.predict",
    "cxrssl.explain.tsne",
    "cxrssl.report.html",
    "cxrssl.report.tables",
]

# Run first in the subprocess: a refused package (and its submodules) behaves as where it
# is not installed. `None` in sys.modules makes `import` raise ModuleNotFoundError and
# importlib.util.find_spec answer None, as torch's probes for optional packages expect.
REFUSE = """
import sys
for name in sys.argv.pop(1).split(","):
    sys.modules[name] = None
"""


def _run_without(refused: list[str], script: str, *args: str) -> subprocess.CompletedProcess:
    code = REFUSE + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code, ",".join(refused), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator and version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


# --- (1) a missing extra is one line naming it; everything else still works ---------------


def test_dicom_without_pydicom_names_the_dicom_extra(tmp_path):
    from tests.dicom import write_dicom

    pytest.importorskip("pydicom")
    import numpy as np

    path = write_dicom(tmp_path / "film.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    result = _run_without(
        ["pydicom"],
        """
        import json
        from cxrssl.data.io import load_grayscale
        try:
            load_grayscale(sys.argv[1])
        except Exception as error:
            print(json.dumps({"type": type(error).__name__, "message": str(error)}))
        else:
            print(json.dumps({"type": None}))
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    raised = json.loads(result.stdout.strip().splitlines()[-1])
    assert raised["type"] is not None, "a DICOM file was decoded with pydicom refused"
    assert "cxrssl[dicom]" in raised["message"] and "\n" not in raised["message"], raised


def test_gradcam_without_grad_cam_names_the_explain_extra():
    result = _run_without(
        ["pytorch_grad_cam", "ttach", "cv2"],
        """
        import json
        import torch
        from cxrssl.explain.gradcam import gradcam_maps, overlay
        from cxrssl.models import build_backbone
        raised = []
        for call in (lambda: gradcam_maps(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), torch.nn.Conv2d(1, 1, 3), torch.zeros(1, 8, 8, dtype=torch.uint8)),
                     lambda: overlay(torch.zeros(8, 8, dtype=torch.uint8).numpy(), torch.zeros(8, 8).numpy())):
            try:
                call()
            except Exception as error:
                raised.append({"type": type(error).__name__, "message": str(error)})
            else:
                raised.append({"type": None})
        print(json.dumps(raised))
        """,
    )
    assert result.returncode == 0, result.stderr
    for raised in json.loads(result.stdout.strip().splitlines()[-1]):
        assert raised["type"] == "MissingExtra", raised
        assert "cxrssl[explain]" in raised["message"] and "\n" not in raised["message"], raised


def test_the_command_line_works_without_any_extra():
    verbs = [[], ["pretrain"], ["probe"], ["compare"], ["index"], ["demo"]]
    script = """
    import contextlib, io, json, runpy
    answers = []
    for verb in json.loads(sys.argv[1]):
        sys.argv = ["cxrssl", *verb, "--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_module("cxrssl", run_name="__main__", alter_sys=True)
            except SystemExit as exit:
                code = exit.code
        answers.append({"verb": verb, "code": code, "usage": "usage:" in out.getvalue()})
    print(json.dumps(answers))
    """
    result = _run_without(sorted(OPTIONAL_MODULES), script, json.dumps(verbs))
    assert result.returncode == 0, result.stderr
    for answer in json.loads(result.stdout.strip().splitlines()[-1]):
        assert answer["code"] in (0, None) and answer["usage"], answer


# --- (2) ranges in pyproject, the tested set in constraints.txt ----------------------------


def test_runtime_dependencies_are_ranges_and_leave_out_the_optional_parts():
    dependencies = [Requirement(line) for line in PYPROJECT["project"]["dependencies"]]
    for requirement in dependencies:
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), f"{requirement} is a pin: pins go in constraints.txt"
        assert any(spec.operator in (">=", ">") for spec in requirement.specifier), f"{requirement} has no lower bound"
        assert any(spec.operator in ("<", "<=") for spec in requirement.specifier), f"{requirement} has no upper bound"
    names = {canonicalize_name(requirement.name) for requirement in dependencies}
    assert not names & {"pydicom", "grad-cam", "ttach", "opencv-python-headless", "onnx", "onnxruntime", "onnxscript", "lightly", "mkdocs"}


def test_every_dependency_and_extra_is_pinned_in_constraints():
    pins = _constraints()
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"dicom", "explain", "export", "bench", "test", "docs"}
    from cxrssl.extras import EXTRAS

    assert set(extras) == set(EXTRAS)  # every extra require() can name exists
    for line in project["dependencies"] + [line for lines in extras.values() for line in lines]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "cxrssl":  # the test extra brings the extras the tests exercise
            assert requirement.extras <= set(extras)
            continue
        assert name in pins, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]}, outside {requirement}"
    assert Requirement("cxrssl[dicom,explain,docs,export]") in [Requirement(line) for line in extras["test"]]
    assert {"torch", "torchvision"} <= set(pins)


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(pip install torch\S* .*)$", readme, re.M)
    assert len(commands) == 2, commands  # the demo's and the tests'
    demo, tests = commands
    assert demo.endswith("&& cxrssl demo") and '".[explain]" -c constraints.txt' in demo
    assert tests in ci.splitlines(), "CI must run exactly the README's test command"
    pinned = _constraints()
    for name in ("torch", "torchvision"):
        assert f"{name}=={pinned[name]}" in demo and f"{name}=={pinned[name]}" in tests


# --- (3) optional packages are imported only where they are used ---------------------------


def test_no_core_module_imports_an_optional_package():
    script = """
    import importlib, json, pkgutil, sys
    import cxrssl
    found = sorted({"cxrssl"} | {m.name for m in pkgutil.walk_packages(cxrssl.__path__, "cxrssl.") if not m.name.endswith("__main__")})
    failed = {}
    for name in found:
        try:
            importlib.import_module(name)
        except Exception as error:
            failed[name] = f"{type(error).__name__}: {error}"
    loaded = sorted({name.split(".")[0] for name in sys.modules})
    print(json.dumps({"found": found, "loaded": loaded, "failed": failed}))
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["failed"], report["failed"]
    assert set(CORE_MODULES) <= set(report["found"]), set(CORE_MODULES) - set(report["found"])
    imported = sorted(set(OPTIONAL_MODULES) & set(report["loaded"]))
    assert not imported, f"imported at import time: {', '.join(imported)}"
