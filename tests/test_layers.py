"""Imports only go down: every module of cxrssl imports its own layer or lower ones, never a higher one.

The layers are listed once, here. Every ``import`` / ``from ... import`` of every module
under src/cxrssl counts: at the top, inside functions (lazy), and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# module prefix -> layer, bottom (0) to top; the longest matching prefix decides.
LAYERS = {
    "cxrssl": 8,  # the package itself: its façade gives the API's names (loaded on first use); its version is base
    "cxrssl.__version__": 0,
    "cxrssl.errors": 0,
    "cxrssl.fileio": 0,
    "cxrssl.extras": 0,
    "cxrssl.hardware": 0,
    "cxrssl.seeding": 0,
    "cxrssl.plotting": 0,
    "cxrssl.outputs": 0,
    "cxrssl.workers": 0,  # the parallel map data decodes with
    "cxrssl.interrupt": 0,  # signals to a clean stop (standard library only)
    "cxrssl.data": 1,
    "cxrssl.models": 2,
    "cxrssl.weights": 3,  # checkpoints and weight files know the methods that wrote them
    "cxrssl.checkpoint": 3,
    "cxrssl.run": 2,
    "cxrssl.distributed": 2,
    "cxrssl.ssl": 3,
    "cxrssl.engine": 3,
    "cxrssl.config": 3,
    "cxrssl.train": 3,
    "cxrssl.eval": 4,
    "cxrssl.explain": 5,
    "cxrssl.report": 6,
    "cxrssl.demo": 7,  # demo and api may import report and below
    "cxrssl.api": 7,
    "cxrssl.exporter": 7,  # a checkpoint or a saved model (eval) to torchvision, timm or ONNX files
    "cxrssl.cli": 8,  # the command line may import anything
    "cxrssl.__main__": 8,
}


def layer_of(module: str) -> int | None:
    """The layer of a dotted name: its longest listed prefix below ``cxrssl`` itself; None when none is listed.

    ``cxrssl`` alone matches only the package itself, so a new top-level module must be listed.
    """
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        found = LAYERS.get(".".join(parts[:end]))
        if found is not None:
            return found
    return LAYERS.get(module)


def module_name(path: Path, root: Path = SOURCE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = SOURCE) -> list[tuple[int, str]]:
    """(line, name) of every cxrssl import in the file, at any depth, relative ones resolved.

    ``from a.b import c`` gives ``a.b.c``: the longest listed prefix of that is the layer
    whether ``c`` is a module or a name in ``a.b``.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, module) for line, module in found if module == "cxrssl" or module.startswith("cxrssl.")]


def modules() -> list[Path]:
    return sorted((SOURCE / "cxrssl").rglob("*.py"))


def test_every_module_has_a_layer():
    unlisted = [module_name(path) for path in modules() if layer_of(module_name(path)) is None]
    assert not unlisted, f"modules without a layer; add them to LAYERS in tests/test_layers.py: {unlisted}"


def test_imports_only_go_down():
    upward = []
    for path in modules():
        own = layer_of(module_name(path))
        for line, module in imported_modules(path):
            target = layer_of(module)
            if own is not None and target is not None and target > own:
                upward.append(f"{path.relative_to(SOURCE)}:{line} ({module_name(path)}, layer {own}) imports {module} (layer {target})")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("cxrssl", 8),
        ("cxrssl.__version__", 0),
        ("cxrssl.unlisted", None),
        ("cxrssl.plotting", 0),
        ("cxrssl.data.imageset", 1),
        ("cxrssl.eval.compare.plan", 4),
        ("cxrssl.report.markdown", 6),
        ("cxrssl.cli.table", 8),
    ],
)
def test_a_module_takes_the_layer_of_its_longest_listed_prefix(module, layer):
    assert layer_of(module) == layer


def test_lazy_and_relative_imports_are_seen(tmp_path):
    probe = tmp_path / "cxrssl" / "eval" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "import numpy\nfrom . import metrics\nfrom ..report import tables\n\ndef later():\n    from cxrssl.cli import main\n    import cxrssl.explain.tsne\n"
    )
    found = [module for _, module in imported_modules(probe, tmp_path)]
    assert found == ["cxrssl.eval.metrics", "cxrssl.report.tables", "cxrssl.cli.main", "cxrssl.explain.tsne"]
    assert [layer_of(module) > layer_of("cxrssl.eval.probe") for module in found] == [False, True, True, True]
