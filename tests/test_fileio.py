from cxrssl.cli import main
from cxrssl.fileio import atomic_write_text


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "a.txt", "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_verbs_refuse_to_write_over_their_inputs_before_any_work(tmp_path, phantom_manifest, capsys):
    before = phantom_manifest.read_text()
    assert main(["split", str(phantom_manifest), "-o", str(phantom_manifest), "--overwrite"]) == 2
    # t-SNE writes its coordinates beside the figure: labels.png would replace labels.csv
    assert main(["tsne", "--checkpoints", "x.json", "--task", str(phantom_manifest), "-o", str(phantom_manifest.with_suffix(".png"))]) == 2
    result = tmp_path / "r.md"  # a result file named like the table's own output
    result.write_text("{}")
    assert main(["table", str(result), "-o", str(tmp_path / "r.md")]) == 2
    errors = capsys.readouterr().err
    assert phantom_manifest.read_text() == before
    assert errors.count("would overwrite the input") == 3 and "Traceback" not in errors
