import pytest

from cxrssl.config import PretrainConfig, load_pretrain_config
from cxrssl.errors import ConfigError


def test_paper_preset_is_the_papers_setting():
    config = load_pretrain_config("paper")
    assert (config.arch, config.image_size, config.batch_size, config.epochs) == ("wide_resnet50_2", 224, 128, 100)
    assert (config.lr, config.temperature, config.hidden_features, config.out_features) == (5e-4, 0.5, 2048, 128)
    assert config.keep_epochs == (10, 25, 50, 100)
    assert config.keeps(25) and not config.keeps(26)


def test_overrides_and_yaml_files(tmp_path):
    config = load_pretrain_config("cpu", {"epochs": 3, "lr": None, "keep_epochs": [1, 2]})
    assert config.epochs == 3 and config.lr == 5e-4 and config.keep_epochs == (1, 2)
    path = tmp_path / "mine.yaml"
    path.write_text("arch: resnet34\nimage_size: 64\naugment:\n  crop_scale: [0.5, 1.0]\n")
    mine = load_pretrain_config(str(path))
    assert mine.arch == "resnet34" and mine.augment.crop_scale == (0.5, 1.0)
    assert PretrainConfig.from_dict(mine.to_dict()) == mine


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fraction": 0.0}, "fraction must be in"),
        ({"fraction": 1.5}, "fraction must be in"),
        ({"arch": "vgg16"}, "unknown architecture 'vgg16'"),
        ({"batch_size": 1}, "at least 2"),
        ({"image_size": 16}, "at least 32"),
        ({"temperature": 0}, "temperature must be a positive number"),
    ],
)
def test_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_pretrain_config("cpu", overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_pretrain_config(str(tmp_path / "missing.yaml"))
    path = tmp_path / "bad.yaml"
    path.write_text("batchsize: 12\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_pretrain_config(str(path))


@pytest.mark.parametrize("value", ['"ten"', "10", "[1.5, 3]", "[true]", "{10: 20}"])
def test_kept_epochs_that_are_not_a_list_of_whole_epochs_name_the_form(tmp_path, value):
    # a text was read digit by digit (int('t')), a number failed with Python's own words, 1.5 became 1
    path = tmp_path / "keep.yaml"
    path.write_text(f"keep_epochs: {value}\n")
    with pytest.raises(ConfigError, match=r"keep.yaml: keep_epochs must be a list of whole epochs like \[10, 20, 40\]"):
        load_pretrain_config(str(path))
    with pytest.raises(ConfigError, match="keep_epochs must be a list of whole epochs"):
        load_pretrain_config("demo", {"keep_epochs": "ten"})
    assert load_pretrain_config("demo", {"keep_epochs": [3, 6]}).keep_epochs == (3, 6)
