import numpy as np
from PIL import Image

from cxrssl.cli import main
from cxrssl.data.check import check_manifest
from cxrssl.data.manifest import read_manifest


def _dataset(tmp_path, rows):
    """rows: (file, patient, label, split, pixel value or None for a corrupt file)."""
    lines = ["path,patient_id,label,split"]
    for name, patient, label, split, value in rows:
        if value is None:
            (tmp_path / name).write_bytes(b"not a png")
        else:
            Image.fromarray(np.full((30 + value % 7, 40), value, np.uint8)).save(tmp_path / name)
        lines.append(f"{name},{patient},{label},{split}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_a_clean_manifest_is_usable_and_counted(tmp_path):
    manifest = _dataset(tmp_path, [("a.png", "p1", "Normal", "train", 10), ("b.png", "p1", "Normal", "train", 20),
                                   ("c.png", "p2", "Pneumonia", "test", 30)])  # fmt: skip
    report = check_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report.fatal == [] and report.readable == 3 and report.patients == 2
    assert report.labels == {"Normal": 2, "Pneumonia": 1} and report.patients_per_label == {"Normal": 1, "Pneumonia": 1}
    assert report.splits == {"test": 1, "train": 2} and report.most_images_per_patient == 2
    assert report.sizes["width"] == {"min": 40, "median": 40.0, "max": 40}
    assert report.sizes["height"] == {"min": 32, "median": 33.0, "max": 36}  # 30 + value % 7


def test_problems_are_found_and_only_leaks_are_fatal(tmp_path):
    manifest = _dataset(
        tmp_path,
        [
            ("a.png", "p1", "Normal", "train", 10),
            ("a_copy.png", "p9", "Normal", "test", 10),  # the same pixels, in another split
            ("b.png", "p2", "Pneumonia", "train", 20),
            ("c.png", "p2", "Pneumonia", "test", 30),  # patient p2 in two splits
            ("bad.png", "p3", "Normal", "train", None),
        ],
    )
    report = check_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report.unreadable == [("bad.png", report.unreadable[0][1])] and "cannot decode" in report.unreadable[0][1]
    assert report.duplicates == [["a.png", "a_copy.png"]]
    assert report.patients_across_splits == {"p2": ["test", "train"]}
    assert len(report.fatal) == 2 and "patient(s) are in two splits" in report.fatal[0] and "by content, in two splits" in report.fatal[1]


def test_cli_exit_code_is_non_zero_only_for_fatal_problems(tmp_path, capsys):
    unreadable_only = _dataset(tmp_path, [("a.png", "p1", "Normal", "", 10), ("bad.png", "p2", "Normal", "", None)])
    assert main(["check", str(unreadable_only), "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "unreadable: bad.png: cannot decode" in out and "verdict: usable" in out and (tmp_path / "r.json").is_file()
    leaking = _dataset(tmp_path, [("a.png", "p1", "Normal", "train", 10), ("b.png", "p1", "Normal", "test", 20)])
    assert main(["check", str(leaking), "--quiet"]) == 1
    assert "FATAL: 1 patient(s) are in two splits" in capsys.readouterr().out


def test_real_nih_set_counts_patients_and_finds_its_duplicate(shared_data):
    report = check_manifest(read_manifest(shared_data / "nih_pneumonia" / "labels.csv"), progress=False)
    assert report.readable == 1000 and report.patients == 682 and report.fatal == []
    assert report.labels == {"No_findings": 500, "Pneumonia": 500}
    # Two follow-up films of one patient that are pixel-identical in the public set.
    assert ["images/00002658_001.png", "images/00002658_002.png"] in report.duplicates
