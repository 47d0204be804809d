"""``import cxrssl``: the stable API names, each a documented function or class with an example."""

import importlib
import inspect
import pkgutil

import cxrssl


def test_every_api_name_is_what_it_says_even_after_every_module_is_imported():
    for module in pkgutil.walk_packages(cxrssl.__path__, "cxrssl."):  # a submodule of the same name must not shadow a function
        if not module.name.startswith("cxrssl.__main__"):
            importlib.import_module(module.name)
    for name in cxrssl.__all__:
        if name == "__version__":
            continue
        value = getattr(cxrssl, name)
        assert inspect.isfunction(value) or inspect.isclass(value), (name, value)
        assert value.__doc__ and value.__doc__.strip(), f"cxrssl.{name} has no docstring"
        if inspect.isfunction(value) and name not in {"read_manifest"}:
            assert ">>>" in value.__doc__, f"cxrssl.{name}'s docstring has no example"


def test_the_functions_a_user_needs_are_there():
    for name in ("pretrain", "load_backbone", "extract_features", "probe", "compare", "finetune", "predict", "export"):
        assert callable(getattr(cxrssl, name)), name
