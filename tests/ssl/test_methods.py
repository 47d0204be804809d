import math

import pytest
import torch

from cxrssl.config import PretrainConfig, load_pretrain_config
from cxrssl.errors import ConfigError
from cxrssl.ssl.methods import BYOL, METHODS, MoCo, SimCLR, build_method

SMALL = {"hidden_features": 16, "out_features": 8}


def _views(batch=4, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, size, size, generator=generator), torch.randn(batch, 1, size, size, generator=generator)


def test_registry_and_config_give_each_method_its_papers_defaults():
    assert set(METHODS) == {"simclr", "moco", "byol"}
    simclr = load_pretrain_config("demo")
    assert (simclr.method, simclr.temperature, simclr.momentum, simclr.queue_size) == ("simclr", 0.5, None, None)
    assert load_pretrain_config("cpu").temperature == 0.2  # the recipe study's choice (docs/recipes.md)
    moco = load_pretrain_config("cpu", {"method": "moco"})
    assert (moco.temperature, moco.momentum, moco.queue_size) == (0.2, 0.99, 4096)
    byol = load_pretrain_config("paper", {"method": "byol"})  # the paper preset's SimCLR temperature gives way
    assert (byol.temperature, byol.momentum) == (None, 0.99)
    assert isinstance(build_method(byol), BYOL) and isinstance(build_method(moco), MoCo) and isinstance(build_method(simclr), SimCLR)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"method": "swav"}, "unknown method 'swav'; choose one of simclr, moco, byol"),
        ({"method": "byol", "temperature": 0.1}, "method byol has no setting temperature; it takes momentum"),
        ({"method": "simclr", "queue_size": 10}, "method simclr has no setting queue_size"),
        ({"method": "moco", "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"method": "moco", "queue_size": 0}, "queue_size must be a positive integer"),
        ({"temperature": float("nan")}, "temperature must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
        ({"amp": "yes"}, "amp must be true or false"),
    ],
)
def test_bad_method_settings_are_one_clear_line(values, message):
    with pytest.raises(ConfigError, match=message):
        PretrainConfig.from_dict(values)


def test_old_run_configs_without_a_method_read_as_simclr():
    old = {"arch": "resnet18", "temperature": 0.5, "image_size": 64}
    config = PretrainConfig.from_dict(old)
    assert config.method == "simclr" and config.to_dict()["temperature"] == 0.5


def test_ema_update_is_the_declared_average_and_only_touches_targets():
    torch.manual_seed(0)
    model = BYOL("resnet18", **SMALL)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    online_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    target_before = {k: v.clone() for k, v in model.backbone_target.named_parameters()}
    progress = 0.25
    m = model.momentum_at(progress)
    model.after_step(progress)
    for name, value in model.backbone_target.named_parameters():
        expected = m * target_before[name] + (1 - m) * online_before[name]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    for name, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, online_before[name], rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.backbone_target.parameters())


def test_byol_momentum_rises_on_a_cosine_from_base_to_one():
    model = BYOL("resnet18", momentum=0.99, **SMALL)
    assert model.momentum_at(0.0) == pytest.approx(0.99)
    assert model.momentum_at(0.5) == pytest.approx(0.995)
    assert model.momentum_at(1.0) == pytest.approx(1.0)
    assert model.momentum_at(1 / 3) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 3) + 1) / 2)
    assert MoCo("resnet18", momentum=0.9, queue_size=16, **SMALL).momentum_at(0.7) == 0.9  # MoCo's is constant


def test_moco_queue_is_first_in_first_out_in_global_batch_order():
    torch.manual_seed(0)
    model = MoCo("resnet18", queue_size=10, **SMALL)
    k1, k2 = torch.randn(3, 8), torch.randn(3, 8)
    start = model.queue.clone()
    model._enqueue(k1, k2)
    normal = torch.nn.functional.normalize(torch.cat([k1, k2]), dim=1)
    torch.testing.assert_close(model.queue[:6], normal)
    torch.testing.assert_close(model.queue[6:], start[6:])
    assert int(model.queue_pointer) == 6
    k3, k4 = torch.randn(3, 8), torch.randn(3, 8)
    model._enqueue(k3, k4)  # wraps: rows 6..9 then 0..1
    newer = torch.nn.functional.normalize(torch.cat([k3, k4]), dim=1)
    torch.testing.assert_close(model.queue[6:], newer[:4])
    torch.testing.assert_close(model.queue[:2], newer[4:])
    torch.testing.assert_close(model.queue[2:6], normal[2:])
    assert int(model.queue_pointer) == 2
    assert {"queue", "queue_pointer", "backbone_key.conv1.weight"} <= set(model.state_dict())  # resumable state


def test_moco_forward_uses_the_queue_then_adds_this_steps_keys():
    torch.manual_seed(0)
    model = MoCo("resnet18", queue_size=16, **SMALL)
    view1, view2 = _views()
    loss = model(view1, view2)
    loss.backward()
    assert math.isfinite(loss.item()) and int(model.queue_pointer) == 8
    assert model.backbone.conv1.weight.grad is not None and model.backbone_key.conv1.weight.grad is None
    assert model.check_images(10) and "lower queue_size" in model.check_images(10)
    assert model.check_images(100) is None


@pytest.mark.parametrize("method", ["simclr", "moco", "byol"])
def test_checkpoint_weights_are_backbone_and_head_only(method):
    model = build_method(PretrainConfig(method=method, arch="resnet18", **SMALL, method_settings={"queue_size": 16} if method == "moco" else {}))
    names = set(model.checkpoint_weights())
    assert names and all(name.startswith(("backbone.", "head.")) for name in names)
    assert "backbone.conv1.weight" in names


def test_a_new_method_is_its_class_plus_one_registry_line(monkeypatch, tmp_path):
    """A toy method with a setting of its own: registered, it is validated, configured from YAML
    and from --method-setting, and chosen on the command line, with no other change."""
    import argparse

    from cxrssl.cli import build_parser
    from cxrssl.config import load_pretrain_config
    from cxrssl.ssl.methods import METHODS, SimCLR
    from cxrssl.ssl.methods.base import Setting

    class Toy(SimCLR):
        name = "toy"
        settings = {"temperature": Setting(0.3), "spread": Setting(3, "count", "a setting no other method has")}

        def __init__(self, arch="resnet18", hidden_features=2048, out_features=128, temperature=0.3, spread=3, gather_distributed=False):
            super().__init__(arch, hidden_features, out_features, temperature, gather_distributed)
            self.spread = spread

    monkeypatch.setitem(METHODS, "toy", Toy)  # the one registry line
    yaml_file = tmp_path / "toy.yaml"
    yaml_file.write_text("method: toy\nspread: 5\narch: resnet18\n")
    config = load_pretrain_config(str(yaml_file))
    assert config.method_settings == {"temperature": 0.3, "spread": 5} and config.spread == 5
    assert config.to_dict()["spread"] == 5 and PretrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="spread must be a positive integer, got 'lots'"):
        load_pretrain_config(str(yaml_file), {"method_settings": {"spread": "lots"}})
    with pytest.raises(ConfigError, match="method simclr has no setting spread"):
        load_pretrain_config("cpu", {"method_settings": {"spread": 2}})
    args = build_parser().parse_args(["pretrain", "--data", "d.csv", "--out", "r", "--method", "toy", "--method-setting", "spread=7"])
    assert args.method == "toy" and args.method_setting == [("spread", "7")]
    model = build_method(load_pretrain_config("demo", {"method": "toy", "method_settings": {"spread": "7"}, **SMALL}))
    assert isinstance(model, Toy) and model.spread == 7 and model.temperature == 0.3
    assert isinstance(build_parser(), argparse.ArgumentParser)
