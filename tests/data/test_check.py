import numpy as np
from PIL import Image

from cxrssl.cli import main
from cxrssl.data.check import check_manifest, format_report
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
    manifest = _dataset(
        tmp_path, [("a.png", "p1", "Normal", "train", 10), ("b.png", "p1", "Normal", "train", 20), ("c.png", "p2", "Pneumonia", "test", 30)]
    )
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


def test_findings_are_counted_per_finding_and_rare_ones_are_warned_about(tmp_path, capsys):
    # Edema positive in 6 patients (p0..p5; p0 also has a negative film); Fracture positive in 2; p6 unlabelled for Fracture.
    lines = ["path,patient_id,split,finding:Edema,finding:Fracture"]
    cells = [
        ("p0", "1", "1"),
        ("p0", "0", "0"),
        ("p1", "1", "1"),
        ("p2", "1", "0"),
        ("p3", "1", "0"),
        ("p4", "1", "0"),
        ("p5", "1", "0"),
        ("p6", "0", ""),
        ("p7", "0", "0"),
    ]
    for index, (patient, edema, fracture) in enumerate(cells):
        Image.fromarray(np.full((30, 40), 10 + 20 * index, np.uint8)).save(tmp_path / f"{index}.png")
        lines.append(f"{index}.png,{patient},,{edema},{fracture}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    report = check_manifest(read_manifest(tmp_path / "m.csv"), workers=1, progress=False)
    assert report.findings == [
        {
            "finding": "Edema",
            "positive_images": 6,
            "negative_images": 3,
            "unlabelled_images": 0,
            "positive_patients": 6,
            "negative_patients": 2,
            "unlabelled_patients": 0,
        },
        {
            "finding": "Fracture",
            "positive_images": 2,
            "negative_images": 6,
            "unlabelled_images": 1,
            "positive_patients": 2,
            "negative_patients": 5,
            "unlabelled_patients": 1,
        },
    ]
    assert report.fatal == []
    assert report.warnings == ["1 finding(s) with fewer than 5 positive patients, too few to evaluate: Fracture (2)"]
    assert report.to_dict()["findings"] == report.findings
    assert main(["check", str(tmp_path / "m.csv"), "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "findings: 2 (images / patients)\n  finding   positive  negative  unlabelled\n  Edema        6 / 6     3 / 2       0 / 0\n" in out
    assert "  Fracture     2 / 2     6 / 5       1 / 1\n" in out
    assert "warning: 1 finding(s) with fewer than 5 positive patients, too few to evaluate: Fracture (2)" in out
    import json

    assert json.loads((tmp_path / "r.json").read_text())["findings"] == report.findings


def test_a_manifest_without_findings_has_no_findings_section(tmp_path):
    manifest = _dataset(tmp_path, [("a.png", "p1", "Normal", "", 10)])
    report = check_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report.findings == [] and "findings:" not in format_report(report)
