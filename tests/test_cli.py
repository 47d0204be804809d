import csv
import json

import numpy as np
import pytest

from cxrssl.cli import main
from tests.commands import tiny_pretrain


def test_phantom_split_pretrain_probe_through_the_cli(tmp_path, capsys):
    data = tmp_path / "phantoms"
    assert main(["phantom", str(data), "--n", "40", "--size", "64", "--seed", "2"]) == 0
    assert (data / "labels.csv").is_file() and (data / "contact_sheet.png").is_file()
    assert main(["split", str(data / "labels.csv"), "-o", str(data / "split.csv"), "--seed", "1"]) == 0
    assert "train" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(tiny_pretrain(data / "labels.csv", run)) == 0
    assert main(tiny_pretrain(data / "labels.csv", run, 2, "--resume")) == 0  # extend the run by one epoch
    assert [p.name for p in sorted((run / "checkpoints").glob("*.json"))] == ["epoch_0001.json", "epoch_0002.json"]
    out = tmp_path / "probe.json"
    code = main(
        [
            "probe",
            "--checkpoint",
            str(run / "checkpoints" / "epoch_0002.json"),
            "--task",
            str(data / "split.csv"),
            "-o",
            str(out),
            "--bootstrap",
            "20",
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["split_source"] == "manifest" and result["positive"] == "PNEUMONIA"
    assert set(result["metrics"]) == {"accuracy", "auc", "sensitivity", "specificity", "f1"}
    assert (tmp_path / "probe_predictions.csv").read_text().startswith("path,patient_id,label,p_PNEUMONIA,predicted")


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["pretrain", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cxrssl pretrain: error: ") and "none.csv" in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert main(["pretrain", "--data", "x.csv", "--out", "r", "--fraction", "1.5"]) == 2
    assert "fraction must be in (0, 1]" in capsys.readouterr().err
    assert main(["pretrain", "--data", "x.csv", "--out", "r", "--arch", "alexnet"]) == 2
    assert "unknown architecture 'alexnet'" in capsys.readouterr().err


def test_index_writes_a_manifest_and_lists_what_it_skipped(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    root = tmp_path / "covid"
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "a.jpg")
    (root / "metadata.csv").write_text(
        "patientid,offset,finding,view,modality,folder,filename\n1,0,COVID-19,PA,X-ray,images,a.jpg\n2,,SARS,AP,X-ray,images,gone.jpg\n"
    )
    out = tmp_path / "manifests" / "cohen.csv"
    assert main(["index", "cohen", str(root), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 images of 1 patients" in printed and "skipped 1 listed image(s)" in printed
    assert out.read_text().splitlines()[1].startswith("../covid/images/a.jpg,1,COVID-19,")
    assert "gone.jpg" in (tmp_path / "manifests" / "cohen_skipped.csv").read_text()
    assert main(["index", "cohen", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert "no such folder; expected the covid-chestxray-dataset folder" in capsys.readouterr().err


def test_extract_probe_table_through_the_cli(tmp_path, phantom_manifest, capsys):
    import numpy as np

    features = tmp_path / "f.npz"
    base = ["--init", "random", "--arch", "resnet18", "--image-size", "32", "--quiet"]
    assert main(["extract", *base, "--data", str(phantom_manifest), "-o", str(features)]) == 0
    with np.load(features) as stored:
        assert (
            stored["features"].shape == (48, 64 + 128 + 256 + 512) and len(stored["path"]) == 48 and set(stored["label"]) == {"NORMAL", "PNEUMONIA"}
        )
    results = []
    for seed in ("0", "1"):
        results.append(tmp_path / f"r{seed}.json")
        assert (
            main(
                [
                    "probe",
                    *base,
                    "--seed",
                    seed,
                    "--task",
                    str(phantom_manifest),
                    "-o",
                    str(results[-1]),
                    "--bootstrap",
                    "20",
                    "--label",
                    f"random seed {seed}",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["table", *map(str, results), "-o", str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    assert "| random seed 0 |" in table and "| random seed 1 |" in table and (tmp_path / "t.csv").is_file()
    (tmp_path / "bad.json").write_text("{}")
    assert main(["table", str(tmp_path / "bad.json"), "-o", str(tmp_path / "t2.md")]) == 2
    assert "neither a probe result nor a compare.json" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_and_report_through_the_cli(tmp_path, phantom_manifest, capsys):
    run = tmp_path / "run"
    assert main(tiny_pretrain(phantom_manifest, run, 2, "--keep", "1,2")) == 0
    assert main(["sweep", "--run", str(run), "--task", str(phantom_manifest), "-o", str(tmp_path / "sweep"), "--bootstrap", "20", "--quiet"]) == 0
    assert "best AUC" in capsys.readouterr().out and (tmp_path / "sweep" / "sweep.png").is_file()
    sweep = ["sweep", "--run", str(run), "--task", str(phantom_manifest), "-o", str(tmp_path / "budgets"), "--bootstrap", "0", "--quiet"]
    assert main([*sweep, "--labels", "4,all", "--folds", "2", "--repeats", "1", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "4/class: best epoch" in printed and "all/class: best epoch" in printed and "last 2 (" in printed
    assert set(json.loads((tmp_path / "budgets" / "sweep.json").read_text())["budgets"]) == {"4", "all"}
    assert main(["report", "--run", str(run), "--task", str(phantom_manifest), "-o", str(tmp_path / "r.html"), "--bootstrap", "20", "--quiet"]) == 0
    assert 'class="table3"' in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_compare_through_the_cli_then_table_and_report(tmp_path, phantom_manifest, capsys):
    run = tmp_path / "run"
    assert main(tiny_pretrain(phantom_manifest, run)) == 0
    checkpoint = run / "checkpoints" / "epoch_0001.json"
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--checkpoint",
        f"simclr={checkpoint}",
        "--init",
        "random",
        "--task",
        str(phantom_manifest),
        "--labels",
        "all,3",
        "--folds",
        "3",
        "--repeats",
        "1",
        "--inner-folds",
        "2",
        "--jobs",
        "1",
        "-o",
        str(out),
        "--quiet",
        "--finetune",
        "--finetune-labels",
        "all",
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| 3 | simclr |" in printed and "| all | random init |" in printed and "Δ AUC vs random init" in printed
    assert "| all | simclr (fine-tuned) |" in printed and "| all | random init (fine-tuned) | " in printed
    payload = json.loads((out / "compare.json").read_text())
    finetuned = [row for row in payload["tasks"][0]["rows"] if row["mode"] == "finetune"]
    assert [(row["backbone"], row["budget"], row["n_folds"]) for row in finetuned] == [
        ("simclr (fine-tuned)", "all", 3),
        ("random init (fine-tuned)", "all", 3),
    ]
    assert finetuned[0]["reference"] == "random init (fine-tuned)" and finetuned[0]["difference"]["auc"]["p_value"] <= 1
    assert not (out / ".finetune_state").exists() and not (out / ".compare.partial.jsonl").exists()
    assert [b["name"] for b in payload["backbones"]] == ["simclr", "random init"]
    assert payload["backbones"][1]["image_size"] == 32  # --init random follows the checkpoint's size
    # --image-size probes every backbone, the checkpoint too, at another size; --readout reads them all alike
    from cxrssl.eval.backbones import named_backbones

    found = named_backbones([f"simclr={checkpoint}"], ["random"], arch=None, image_size=48, seed=0, readout="blocks")
    assert [(b.name, b.spec.image_size, b.spec.readout, b.spec.checkpoint) for b in found] == [
        ("simclr", 48, "blocks", checkpoint),
        ("random init", 48, "blocks", None),
    ]
    assert main(args) == 2 and "already holds compare.json" in capsys.readouterr().err
    assert main(["table", str(out / "compare.json"), "-o", str(tmp_path / "t.md")]) == 0
    assert "| all | simclr |" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "t.csv").read_text().startswith("task,design,budget,backbone")
    assert (
        main(
            [
                "report",
                "--run",
                str(run),
                "--task",
                str(phantom_manifest),
                "--compare",
                str(out / "compare.json"),
                "--bootstrap",
                "20",
                "-o",
                str(tmp_path / "r.html"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "Does pretraining pay?" in (tmp_path / "r.html").read_text()


def test_extract_reads_the_last_stage_with_the_papers_readout(tmp_path, phantom_manifest, capsys):
    out = tmp_path / "last.npz"
    assert (
        main(["extract", "--init", "random", "--image-size", "32", "--data", str(phantom_manifest), "--readout", "last", "-o", str(out), "--quiet"])
        == 0
    )
    with np.load(out) as saved:
        assert saved["features"].shape == (48, 512)


def test_compare_flags_are_checked_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--init", "random", "--task", "t.csv", "--labels", "10,lots"])
    assert "expected labelled patients per class like 10,25,50,100,250,all" in capsys.readouterr().err
    unlabelled = tmp_path / "pool.csv"
    unlabelled.write_text("path,patient_id,label\n")
    assert main(["compare", "--init", "random", "--init", "random", "--task", str(unlabelled), "-o", str(tmp_path / "c")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cxrssl compare: error: ") and error.count("\n") == 1


def test_operating_system_errors_are_one_line_with_a_fix_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import errno

    import cxrssl.cli as cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.json"))

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), "phantom", full_disk))
    assert cli.main(["phantom", str(tmp_path / "p")]) == 2
    message = capsys.readouterr().err.strip()
    assert message == f"cxrssl phantom: error: No space left on device ({tmp_path / 'out.json'}): free disk space or write somewhere else"
    with pytest.raises(OSError):
        cli.main(["--debug", "phantom", str(tmp_path / "p")])


def _with_handler(parser, verb, handler):
    parser._subparsers._group_actions[0].choices[verb].set_defaults(handler=handler)
    return parser


def test_a_read_only_output_location_is_refused_before_any_work(tmp_path, phantom_manifest, capsys, monkeypatch):
    import errno
    import tempfile

    import cxrssl.eval.evaluate as evaluate

    locked = tmp_path / "locked"
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # a read-only mount, as root cannot be kept out of a folder by chmod
        if dir is not None and str(dir).startswith(str(locked)):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(evaluate, "evaluate_backbone", lambda *a, **k: pytest.fail("the work started before the output was checked"))
    code = main(["probe", "--init", "random", "--image-size", "32", "--task", str(phantom_manifest), "-o", str(locked / "r.json")])
    err = capsys.readouterr().err
    assert (
        code == 2 and err == f"cxrssl probe: error: Read-only file system ({locked}): the file system is read-only; choose another output location\n"
    )


def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "latin1.csv"
    manifest.write_bytes("path,patient_id,label\nimage.png,Müller,normal\n".encode("latin-1"))
    assert main(["check", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not UTF-8 text (byte 0xfc" in err and "iconv" in err


def test_cache_refuses_a_folder_it_did_not_make_and_its_own_manifest(tmp_path, phantom_manifest, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert main(["cache", str(phantom_manifest), "-o", str(folder), "--size", "32", "--quiet"]) == 2
    assert "is not empty and is not a cxrssl cache" in capsys.readouterr().err and (folder / "notes.txt").read_text() == "keep"
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(phantom_manifest.parent, copy)
    (copy / "labels.csv").rename(copy / "manifest.csv")
    assert main(["cache", str(copy / "manifest.csv"), "-o", str(copy), "--size", "32", "--quiet"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err


@pytest.fixture(scope="module")
def findings_run(tmp_path_factory):
    """Phantoms with findings and a one-epoch demo run on them: a multi-label task with a known answer."""
    folder = tmp_path_factory.mktemp("findings")
    assert main(["phantom", str(folder / "data"), "--findings", "--n", "160", "--size", "64", "--seed", "4"]) == 0
    run = folder / "run"
    assert main(tiny_pretrain(folder / "data" / "labels.csv", run)) == 0
    return folder / "data" / "labels.csv", run / "checkpoints" / "epoch_0001.json"


def test_probe_predict_table_and_report_per_finding_through_the_cli(tmp_path, findings_run, capsys):
    task, checkpoint = findings_run
    out, model = tmp_path / "probe.json", tmp_path / "model"
    assert (
        main(
            [
                "probe",
                "--checkpoint",
                str(checkpoint),
                "--task",
                str(task),
                "-o",
                str(out),
                "--bootstrap",
                "50",
                "--min-patients",
                "3",
                "--save-model",
                str(model),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| Cardiomegaly | Consolidation | Edema | Effusion | mean AUC |" in printed
    result = json.loads(out.read_text())
    assert result["kind"] == "cxrssl-findings-probe" and result["macro_over"]
    assert result["macro_auc"] == pytest.approx(np.mean([e["metrics"]["auc"] for e in result["findings"] if "metrics" in e]))
    # predict reproduces the probe's test probabilities of every fitted finding

    rows = list(csv.DictReader(open(tmp_path / "probe_predictions.csv")))
    images = [str(task.parent / row["path"]) for row in rows[:6]]
    assert main(["predict", "--model", str(model), *images, "--heatmaps", str(tmp_path / "maps"), "--finding", "Cardiomegaly"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for line, row in zip(lines, rows):
        cells = dict(cell.split("=") for cell in line.split("\t")[1:-1])
        for name in result["macro_over"]:
            assert float(cells[f"p({name})"]) == pytest.approx(float(row[f"p_{name}"]), abs=2e-4)
    assert len(list((tmp_path / "maps").glob("*_Cardiomegaly_gradcam.png"))) == 6
    assert main(["table", str(out), "-o", str(tmp_path / "t.md")]) == 0
    assert "mean AUC" in (tmp_path / "t.md").read_text() and (tmp_path / "t.csv").read_text().startswith("dataset,pretext,finding")
    assert (
        main(
            [
                "gradcam",
                "--checkpoint",
                str(checkpoint),
                "--task",
                str(task),
                "--finding",
                "Effusion",
                "--min-patients",
                "3",
                "--bootstrap",
                "10",
                "-n",
                "4",
                "-o",
                str(tmp_path / "g.png"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "correctly classified Effusion" in capsys.readouterr().out and (tmp_path / "g_errors.png").is_file()
    assert main(["tsne", "--checkpoints", str(checkpoint), "--task", str(task), "--finding", "Edema", "-o", str(tmp_path / "ts.png"), "--quiet"]) == 0
    with (tmp_path / "ts.csv").open() as handle:
        assert {"Edema", "no Edema"} >= {row[3] for row in list(csv.reader(handle))[1:]}
    report = tmp_path / "r.html"
    assert (
        main(
            [
                "report",
                "--run",
                str(checkpoint.parent.parent),
                "--task",
                str(task),
                "--bootstrap",
                "20",
                "--min-patients",
                "3",
                "--finding",
                "Cardiomegaly",
                "-o",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    page = report.read_text()
    assert "Per finding: final checkpoint against its random initialisation" in page and "Correctly classified Cardiomegaly" in page


def test_compare_and_finetune_per_finding_on_a_chexpert_tree_under_each_uncertainty_policy(tmp_path, capsys):
    """The same phantom CheXpert tree indexed with U-Ignore, U-Ones and U-Zeros; each gives the entries its policy keeps."""

    assert main(["phantom", str(tmp_path / "cx"), "--chexpert", "--n", "200", "--size", "64", "--seed", "6"]) == 0
    root = tmp_path / "cx" / "CheXpert-v1.0-small"
    raw = list(csv.DictReader(open(root / "train.csv")))
    uncertain = sum(row["Edema"] == "-1.0" for row in raw)
    positive = sum(row["Edema"] == "1.0" for row in raw)
    assert uncertain > 0
    import torch
    import torchvision

    torch.manual_seed(1)
    other = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    counted = {}
    for policy in ("ignore", "ones", "zeros"):
        manifest = tmp_path / f"{policy}.csv"
        assert main(["index", "chexpert", str(root), "--task", "competition", "--uncertain", policy, "-o", str(manifest)]) == 0
        rows = [row for row in csv.DictReader(open(manifest)) if row["split"] == "train"]
        counted[policy] = (sum(row["finding:Edema"] == "1" for row in rows), sum(row["finding:Edema"] == "" for row in rows))
        out = tmp_path / f"cmp_{policy}"
        finetune = ["--finetune", "--finetune-labels", "all", "--epochs", "1", "--batch-size", "16"] if policy == "ignore" else []
        assert (
            main(
                [
                    "compare",
                    "--init",
                    "random",
                    "--init",
                    str(other),
                    "--task",
                    str(manifest),
                    "--image-size",
                    "32",
                    "--labels",
                    "40,all",
                    "--repeats",
                    "2",
                    "--inner-folds",
                    "3",
                    "--min-patients",
                    "3",
                    "--bootstrap",
                    "200",
                    "--jobs",
                    "1",
                    "-o",
                    str(out),
                    "--quiet",
                    *finetune,
                ]
            )
            == 0
        )
        summary = json.loads((out / "compare.json").read_text())["tasks"][0]
        assert summary["design"] == "fixed_test" and summary["budget_unit"] == "patients"
        assert "Atelectasis" in summary["excluded"]["probe|all"]  # never drawn on the phantoms: one class only, named
        assert {row["finding"] for row in summary["rows"]} == {"mean"} and summary["finding_rows"]
        if finetune:  # one output per finding, paired with the fine-tuned reference on the same draw
            tuned = [row for row in summary["rows"] if row["mode"] == "finetune"]
            assert [row["backbone"] for row in tuned] == ["random init (fine-tuned)", "init other (fine-tuned)"]
            assert tuned[1]["difference"]["auc"]["p_value"] <= 1 and summary["macro_over"]["finetune|all"]
    # hand count: U-Ignore drops the uncertain entries, U-Ones makes them positive, U-Zeros negative; blank is negative for all three
    assert counted["ignore"] == (positive, uncertain)
    assert counted["ones"] == (positive + uncertain, 0)
    assert counted["zeros"] == (positive, 0)
    out = tmp_path / "ft.json"
    assert (
        main(
            [
                "finetune",
                "--init",
                "random",
                "--image-size",
                "32",
                "--task",
                str(tmp_path / "ignore.csv"),
                "--min-patients",
                "3",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--bootstrap",
                "20",
                "-o",
                str(out),
                "--save-model",
                str(tmp_path / "ftm"),
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["method"] == "finetune" and result["split_source"] == "manifest" and result["macro_over"]
    assert json.loads((tmp_path / "ftm" / "model.json").read_text())["probe"]["findings"]


def test_finding_flags_are_checked_before_any_work(tmp_path, findings_run, phantom_manifest, capsys):
    task, checkpoint = findings_run
    common = ["--checkpoint", str(checkpoint), "--quiet"]
    with pytest.raises(SystemExit):  # argparse: exit 2 with its one line
        main(["probe", *common, "--task", str(task), "--findings", "Edema,Edema", "-o", str(tmp_path / "p.json")])
    assert "names a finding twice" in capsys.readouterr().err
    assert (
        main(
            [
                "finetune",
                *common,
                "--task",
                str(phantom_manifest),
                "--gradcam",
                str(tmp_path / "g.png"),
                "--finding",
                "Edema",
                "-o",
                str(tmp_path / "f.json"),
            ]
        )
        == 2
    )
    assert "needs a task evaluated per finding" in capsys.readouterr().err and not (tmp_path / "f.json").exists()
    assert (
        main(["finetune", *common, "--task", str(task), "--gradcam", str(tmp_path / "g.png"), "--finding", "Nope", "-o", str(tmp_path / "f.json")])
        == 2
    )
    assert "is not one of its findings" in capsys.readouterr().err and not (tmp_path / "f.json").exists()
    assert (
        main(
            [
                "report",
                "--run",
                str(checkpoint.parent.parent),
                "--task",
                str(task),
                "--task",
                str(phantom_manifest),
                "--finding",
                "Edema",
                "-o",
                str(tmp_path / "r.html"),
                "--quiet",
            ]
        )
        == 2
    )
    assert str(phantom_manifest) in capsys.readouterr().err


def test_split_of_a_findings_manifest_is_stratified_over_its_findings(tmp_path, capsys):

    assert main(["phantom", str(tmp_path / "d"), "--findings", "--n", "200", "--size", "64", "--seed", "8"]) == 0
    assert main(["split", str(tmp_path / "d" / "labels.csv"), "-o", str(tmp_path / "s.csv"), "--seed", "1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    patients = {row["patient_id"]: row["split"] for row in rows}
    assert all(patients[row["patient_id"]] == row["split"] for row in rows)  # whole patients
    for finding in ("Cardiomegaly", "Consolidation"):
        positive = {row["patient_id"] for row in rows if finding in row["findings"].split("|")}
        in_test = sum(patients[p] == "test" for p in positive)
        assert abs(in_test - 0.2 * len(positive)) <= 2  # the split's share of the finding's positive patients, not by chance


PROBING_VERBS = {  # every verb that probes a manifest's own split (a patient in both parts makes it suggest --split-policy purge)
    "probe": ["--init", "random", "--task", "t.csv"],
    "finetune": ["--init", "random", "--task", "t.csv"],
    "compare": ["--init", "random", "--task", "t.csv"],
    "sweep": ["--run", "r", "--task", "t.csv"],
    "report": ["--run", "r", "--task", "t.csv"],
    "gradcam": ["--init", "random", "--task", "t.csv"],
}


@pytest.mark.parametrize("verb", PROBING_VERBS)
def test_every_probing_verb_takes_the_split_policy_its_leak_error_suggests(verb):
    from cxrssl.cli import build_parser
    from cxrssl.cli.common import probe_settings

    args = build_parser().parse_args([verb, *PROBING_VERBS[verb], "--split-policy", "purge"])
    assert probe_settings(args).split_policy == "purge"
    assert probe_settings(build_parser().parse_args([verb, *PROBING_VERBS[verb]])).split_policy == "refuse"
