import csv

import pytest

from cxrssl.cli import main
from cxrssl.data.manifest import read_manifest
from cxrssl.explain.predict import predict_images

pytest.importorskip("pytorch_grad_cam")


def test_predict_equals_the_probe_test_predictions(tmp_path, phantom_manifest, capsys):
    out = tmp_path / "probe.json"
    code = main(["probe", "--init", "random", "--arch", "resnet18", "--image-size", "32", "--task", str(phantom_manifest),
                 "-o", str(out), "--bootstrap", "20", "--quiet", "--save-model", str(tmp_path / "model")])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "probe_predictions.csv")))
    manifest = read_manifest(phantom_manifest)
    paths = [str(manifest.root / row["path"]) for row in rows]
    predictions, unreadable = predict_images(tmp_path / "model", paths, heatmaps=tmp_path / "heat")
    assert unreadable == [] and len(predictions) == len(rows)
    for row, prediction in zip(rows, predictions):
        assert prediction.probability == pytest.approx(float(row["p_PNEUMONIA"]), abs=1e-5)
        assert prediction.predicted == row["predicted"]
    assert len(list((tmp_path / "heat").glob("*_gradcam.png"))) == len(rows)

    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "model"), paths[0], str(tmp_path / "broken.png")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("p(PNEUMONIA)=") == 1 and "skipped" in captured.err and "broken.png" in captured.err
    assert main(["predict", "--model", str(tmp_path / "model"), str(tmp_path / "broken.png")]) == 2
