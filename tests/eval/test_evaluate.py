from pathlib import Path

from cxrssl.eval.evaluate import dataset_name, pretext_label
from cxrssl.eval.features import BackboneSpec


def test_dataset_names_from_manifest_paths(tmp_path):
    assert dataset_name("data/nih_pneumonia/labels.csv") == "nih_pneumonia"
    assert dataset_name("manifests/cell.csv") == "cell"
    (tmp_path / "cohen.cache").mkdir()
    assert dataset_name(tmp_path / "cohen.cache") == "cohen"


def test_pretext_labels_name_fraction_and_epoch():
    assert pretext_label(BackboneSpec("resnet18", 128, Path("c.json"), epoch=25, pretext_fraction=0.01)) == "1 %, epoch 25"
    assert pretext_label(BackboneSpec("resnet18", 128, Path("c.json"), epoch=100, pretext_fraction=1.0)) == "100 %, epoch 100"
    assert pretext_label(BackboneSpec.random("resnet18", 128)) == "random init"
