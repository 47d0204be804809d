import pytest

from cxrssl.cli import main
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_write_text, refuse_overwriting_inputs


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "a.txt", "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_an_output_that_is_an_input_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    manifest = tmp_path / "d" / "labels.csv"
    manifest.write_text("x")
    refuse_overwriting_inputs([tmp_path / "d" / "probe.json"], [manifest])  # fine
    with pytest.raises(CxrsslError, match="would overwrite the input"):
        refuse_overwriting_inputs([tmp_path / "d" / ".." / "d" / "labels.csv"], [manifest])
    cache = tmp_path / "pool.cache"
    cache.mkdir()
    with pytest.raises(CxrsslError, match="would overwrite the input"):
        refuse_overwriting_inputs([cache / "manifest.csv"], [cache])


def test_verbs_refuse_to_write_over_their_inputs_before_any_work(tmp_path, phantom_manifest, capsys):
    before = phantom_manifest.read_text()
    assert main(["probe", "--init", "random", "--task", str(phantom_manifest), "-o", str(phantom_manifest)]) == 2
    # t-SNE writes its coordinates beside the figure: labels.png would replace labels.csv
    assert main(["tsne", "--checkpoints", "x.json", "--task", str(phantom_manifest), "-o", str(phantom_manifest.with_suffix(".png"))]) == 2
    result = tmp_path / "r.md"  # a result file named like the table's own output
    result.write_text("{}")
    assert main(["table", str(result), "-o", str(tmp_path / "r.md")]) == 2
    errors = capsys.readouterr().err
    assert phantom_manifest.read_text() == before
    assert errors.count("would overwrite the input") == 3 and "Traceback" not in errors


def test_check_outputs_refuses_inputs_and_finds_an_unwritable_location_first(tmp_path, monkeypatch):
    import errno
    import tempfile

    from cxrssl.errors import CxrsslError
    from cxrssl.fileio import check_outputs

    manifest = tmp_path / "d" / "labels.csv"
    manifest.parent.mkdir()
    manifest.write_text("x")
    with pytest.raises(CxrsslError, match="would overwrite the input"):
        check_outputs([tmp_path / "d" / "sub" / ".." / "labels.csv"], [manifest])
    check_outputs([tmp_path / "new" / "folder" / "out.json"], [manifest])  # made, probed, nothing left behind
    assert list((tmp_path / "new" / "folder").iterdir()) == []

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OSError, match="No space left"):
        check_outputs([tmp_path / "out.json"], [manifest])
