import csv

import pytest

from cxrssl.cli import main
from cxrssl.data.manifest import read_manifest
from cxrssl.explain.predict import predict_images

pytest.importorskip("pytorch_grad_cam")


def test_predict_equals_the_probe_test_predictions(tmp_path, phantom_manifest, capsys):
    out = tmp_path / "probe.json"
    code = main(
        [
            "probe",
            "--init",
            "random",
            "--arch",
            "resnet18",
            "--image-size",
            "32",
            "--task",
            str(phantom_manifest),
            "-o",
            str(out),
            "--bootstrap",
            "20",
            "--quiet",
            "--save-model",
            str(tmp_path / "model"),
        ]
    )
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


def test_a_finetuned_model_predicts_its_test_probabilities_and_explains_them(tmp_path, phantom_manifest, capsys):
    out = tmp_path / "ft.json"
    code = main(
        [
            "finetune",
            "--init",
            "random",
            "--image-size",
            "32",
            "--task",
            str(phantom_manifest),
            "-o",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--bootstrap",
            "20",
            "--quiet",
            "--save-model",
            str(tmp_path / "model"),
            "--gradcam",
            str(tmp_path / "cam.png"),
        ]
    )
    assert code == 0
    assert (tmp_path / "cam.png").stat().st_size > 0 and (tmp_path / "cam_errors.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "random init, fine-tuned" in printed and "chosen epoch" in printed
    rows = list(csv.DictReader(open(tmp_path / "ft_predictions.csv")))
    manifest = read_manifest(phantom_manifest)
    predictions, _ = predict_images(tmp_path / "model", [str(manifest.root / row["path"]) for row in rows], heatmaps=tmp_path / "heat")
    for row, prediction in zip(rows, predictions):
        assert prediction.probability == pytest.approx(float(row["p_PNEUMONIA"]), abs=1e-5)
    assert len(list((tmp_path / "heat").glob("*_gradcam.png"))) == len(rows)
    assert not (tmp_path / "ft_state").exists()


def test_finetune_refuses_a_checkpoint_of_another_architecture_and_a_one_class_task(tmp_path, phantom_manifest, capsys):
    from dataclasses import replace

    from cxrssl.config import load_pretrain_config
    from cxrssl.train import pretrain

    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=16, epochs=1, hidden_features=32, out_features=8)
    pretrain(phantom_manifest, tmp_path / "run", config, progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch_0001.json"
    assert (
        main(["finetune", "--checkpoint", str(checkpoint), "--arch", "resnet50", "--task", str(phantom_manifest), "-o", str(tmp_path / "x.json")])
        == 2
    )
    assert "is a resnet18 checkpoint, not resnet50" in capsys.readouterr().err
    one_class = tmp_path / "one.csv"
    lines = read_manifest(phantom_manifest)
    one_class.write_text("path,patient_id,label\n" + "".join(f"{lines.root / r.path},{r.patient_id},NORMAL\n" for r in lines.rows))
    assert main(["finetune", "--init", "random", "--image-size", "32", "--task", str(one_class), "-o", str(tmp_path / "y.json")]) == 2
    assert "exactly two classes, found 1" in capsys.readouterr().err


def test_heat_maps_of_files_with_the_same_name_in_different_folders_do_not_replace_each_other():
    from cxrssl.explain.predict import heatmap_names

    names = heatmap_names(["site_a/p1/view.png", "site_b/p1/view.png", "site_a/p2/other.png", "x/a.png", "x/a.jpg"])
    assert len(set(names)) == 5
    assert names[:3] == ["site_a__p1__view_gradcam.png", "site_b__p1__view_gradcam.png", "other_gradcam.png"]


def test_heat_maps_of_findings_never_replace_each_other_whatever_the_names():
    """An image per finding: stems and finding suffixes that add up alike are told apart too."""
    from cxrssl.explain.predict import heatmap_names

    paths = ["imgs/img.png", "imgs/img.png", "imgs/img_x.png", "a/scan.png", "b/scan.png"]
    suffixes = ["_x_Edema", "_Edema", "_Edema", "_Edema", "_Edema"]  # img + _x_Edema == img_x + _Edema
    names = heatmap_names(paths, suffixes)
    assert len(set(names)) == len(names) == 5
    assert names[1] == "img_Edema_gradcam.png" and names[3] == "a__scan_Edema_gradcam.png"


def test_the_feature_batch_shrinks_to_the_memory_and_an_impossible_prediction_is_one_line():
    from cxrssl.errors import CxrsslError
    from cxrssl.explain.predict import EVAL_BYTES_PER_PIXEL, FEATURE_BATCH, prediction_batch_size

    assert prediction_batch_size("m", 10, 256, "resnet18", heatmaps=False, available=None) == FEATURE_BATCH  # memory unknown
    assert prediction_batch_size("m", 10, 256, "resnet18", heatmaps=False, available=2**40) == FEATURE_BATCH
    per_image = 2048 * 2048 * EVAL_BYTES_PER_PIXEL
    squeezed = prediction_batch_size("m", 2, 2048, "resnet18", heatmaps=False, available=int((10 * per_image + 2 * 2048 * 2048) / 0.8) + 8)
    assert 1 <= squeezed < FEATURE_BATCH and squeezed == 10
    with pytest.raises(
        CxrsslError, match=r"m: predicting 1000 images at its 2048 px needs about .* GiB, .* pass fewer images at once or drop --heatmaps"
    ) as error:
        prediction_batch_size("m", 1000, 2048, "resnet50", heatmaps=True, available=8 * 2**30)
    assert "\n" not in str(error.value)
