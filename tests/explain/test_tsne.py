import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from cxrssl.data.images import open_image_set
from cxrssl.eval.features import BackboneSpec
from cxrssl.explain.tsne import tsne_embedding, tsne_panels


def test_separated_classes_stay_separated():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (60, 20)), rng.normal(6, 1, (60, 20))])
    labels = np.array([0] * 60 + [1] * 60)
    coords = tsne_embedding(features, seed=0)
    purity = KNeighborsClassifier(5).fit(coords, labels).score(coords, labels)
    assert coords.shape == (120, 2) and purity > 0.97


def test_one_panel_per_backbone_and_coordinates_saved(tmp_path, phantom_manifest):
    task = open_image_set(phantom_manifest, 32, progress=False)
    specs = [BackboneSpec.random("resnet18", 32, seed) for seed in (0, 1)]
    figure, coordinates = tsne_panels(specs, task, tmp_path / "tsne.png")
    lines = coordinates.read_text().splitlines()
    assert figure.stat().st_size > 10_000 and lines[0] == "backbone,epoch,path,label,x,y" and len(lines) == 1 + 2 * len(task)
