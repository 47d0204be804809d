"""The output contract (cxrssl.outputs) over every verb and every output flag.

For each output of each verb: pointed at one of the command's inputs, at a foreign file
that exists, or so that a sibling it writes is such a file, the verb is refused before
any work, with one line and exit code 2, and every file stays byte-identical; an input
is refused even with --overwrite. The refusals come before any image is decoded, so the
matrix needs no real checkpoint: a file at the path is enough to be an input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrssl.cli import main
from cxrssl.outputs import FOLDER_RECORD, OutputError, Outputs, record_of_file, require_complete


@pytest.fixture
def world(tmp_path, phantom_manifest):
    """A manifest with its images, a checkpoint and a run folder, a saved model, a result: inputs."""
    data = tmp_path / "data"
    shutil.copytree(phantom_manifest.parent, data)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / ".cxrssl-run").write_text("{}")
    checkpoint = run / "checkpoints" / "epoch_0001.json"
    checkpoint.write_text('{"arch": "resnet18"}')
    checkpoint.with_suffix(".safetensors").write_bytes(b"weights")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"metrics": {}}))
    image = next((data / "images").glob("*.png"))
    return {"manifest": data / "labels.csv", "image": image, "checkpoint": checkpoint, "run": run, "model": model, "result": result, "tmp": tmp_path}


# verb -> (arguments before the output, the output flags: flag -> (kind, siblings, the suffix a file output's name must have));
# "{manifest}" etc. are filled from the world.
BACKBONE = ["--init", "random", "--image-size", "32"]
VERBS = {
    "split": (["{manifest}"], {"-o": ("file", [], ".csv")}),
    "index": (["csv", "{manifest}"], {"-o": ("file", ["_skipped.csv"], ".csv")}),
    "check": (["{manifest}"], {"--json": ("file", [], ".json")}),
    "cache": (["{manifest}", "--size", "32"], {"-o": ("folder", [], None)}),
    "extract": ([*BACKBONE, "--data", "{manifest}"], {"-o": ("file", [], ".npz")}),
    "probe": ([*BACKBONE, "--task", "{manifest}"], {"-o": ("file", ["_predictions.csv"], ".json"), "--save-model": ("folder", [], None)}),
    "finetune": (
        [*BACKBONE, "--task", "{manifest}"],
        {"-o": ("file", ["_predictions.csv"], ".json"), "--gradcam": ("file", ["_errors.png"], ".png"), "--save-model": ("folder", [], None)},
    ),
    "compare": (["--checkpoint", "{checkpoint}", "--init", "random", "--task", "{manifest}"], {"-o": ("folder", [], None)}),
    "sweep": (["--run", "{run}", "--task", "{manifest}"], {"-o": ("folder", [], None)}),
    "tsne": (["--checkpoints", "{checkpoint}", "--task", "{manifest}"], {"-o": ("file", [".csv"], ".png")}),
    "gradcam": ([*BACKBONE, "--task", "{manifest}"], {"-o": ("file", ["_errors.png"], ".png")}),
    "predict": (["--model", "{model}", "{image}"], {"--heatmaps": ("folder", [], None)}),
    "report": (["--run", "{run}", "--task", "{manifest}"], {"-o": ("file", [], ".html")}),
    "table": (["{result}"], {"-o": ("file", [".csv"], ".md")}),
    "export": (["{checkpoint}"], {"-o": ("file", [], ".pth")}),
    "phantom": ([], {"out": ("folder", [], None)}),
    "demo": ([], {"--out": ("folder", [], None)}),
    "pretrain": (["--data", "{manifest}", "--config", "demo"], {"--out": ("folder", [], None)}),
}
CASES = [(verb, flag) for verb, (_, flags) in VERBS.items() for flag in flags]


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_suffix(suffix) if suffix.startswith(".") and suffix.count(".") == 1 and "_" not in suffix else path.with_name(path.stem + suffix)


def _command(verb: str, world: dict, flag: str, target: Path, overwrite: bool = False) -> list[str]:
    before, _ = VERBS[verb]
    args = [str(world[a[1:-1]]) if a.startswith("{") else a for a in before]
    output = [str(target)] if flag == "out" else [flag, str(target)]
    return [verb, *output, *args, *(["--overwrite"] if overwrite else [])]


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(command, world, capsys) -> str:
    before = _snapshot(world["tmp"])
    try:
        code = main(command)
    except SystemExit as refused:  # a flag refused by its type (e.g. a figure name without an image suffix)
        code = refused.code
    assert code == 2, command
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert _snapshot(world["tmp"]) == before, f"{command}: a file changed"
    return err


def _input_targets(verb: str, world: dict, kind: str) -> list[Path]:
    """The verb's own inputs (files: each of them; folders: a folder that is, or holds, one)."""
    names = [a[1:-1] for a in VERBS[verb][0] if a.startswith("{")]
    files = [world[name] for name in names if world[name].is_file()] + ([world["image"]] if "manifest" in names else [])
    if kind == "file":
        return files
    return [world[name] for name in names if world[name].is_dir()] + [path.parent for path in files]


@pytest.mark.parametrize(("verb", "flag"), CASES)
def test_an_output_never_replaces_an_input_even_with_overwrite(verb, flag, world, capsys):
    kind, siblings, _ = VERBS[verb][1][flag]
    uses_inputs = bool(VERBS[verb][0])
    if not uses_inputs:
        pytest.skip(f"{verb} reads no input")
    for target in _input_targets(verb, world, kind):
        if verb == "table" and target.suffix == ".json":
            continue  # table -o r.json writes r.md and r.csv: it never names the .json itself
        for overwrite in (False,) if verb == "pretrain" else (False, True):  # pretrain replaces no run: it resumes one
            err = _refused(_command(verb, world, flag, target, overwrite), world, capsys)
            assert "input" in err or "not empty" in err or "already" in err or "is written as" in err, err
    if ".csv" in siblings:  # the output's sibling is the manifest: tsne -o data/labels.png
        target = world["manifest"].with_suffix(".md" if verb == "table" else ".png")
        is_input = "{manifest}" in VERBS[verb][0]
        err = _refused(_command(verb, world, flag, target, overwrite=is_input), world, capsys)
        assert str(world["manifest"]) in err, err


@pytest.mark.parametrize(("verb", "flag"), CASES)
def test_a_foreign_file_is_replaced_only_with_overwrite(verb, flag, world, capsys):
    kind, siblings, suffix = VERBS[verb][1][flag]
    out = world["tmp"] / "out"
    out.mkdir()
    if kind == "folder":
        target = out / "folder"
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        foreign = [target / "notes.txt"]
    else:
        target = out / f"result{suffix}"
        target.write_text("mine")
        foreign = [target]
        for ending in siblings:  # and each sibling alone: the output is new, its sibling is someone's file
            sibling = _sibling(out / f"other{suffix}", ending)
            sibling.write_text("mine too")
            err = _refused(_command(verb, world, flag, out / f"other{suffix}"), world, capsys)
            assert str(sibling) in err and "--overwrite" in err, err
    err = _refused(_command(verb, world, flag, target), world, capsys)
    assert ("--overwrite" in err or verb == "pretrain") and ("not empty" in err or "already exists" in err or "already holds" in err), err
    assert all(path.read_text().startswith("mine") for path in foreign)


def test_the_same_command_replaces_its_own_output_and_another_command_is_refused(tmp_path, phantom_manifest, capsys):
    out = tmp_path / "split.csv"
    assert main(["split", str(phantom_manifest), "-o", str(out)]) == 0
    record = json.loads(record_of_file(out).read_text())
    assert record["verb"] == "split" and record["complete"] and record["files"]["split.csv"]["size"] == out.stat().st_size
    first = out.read_bytes()
    assert main(["split", str(phantom_manifest), "-o", str(out)]) == 0 and out.read_bytes() == first  # a re-run
    assert main(["split", str(phantom_manifest), "-o", str(out), "--seed", "1"]) == 2  # other settings: another result
    assert "not written by this `cxrssl split` command" in capsys.readouterr().err and out.read_bytes() == first
    out.write_text(out.read_text() + "\n")  # edited by hand since: no longer the command's own output
    assert main(["split", str(phantom_manifest), "-o", str(out)]) == 2
    assert main(["split", str(phantom_manifest), "-o", str(out), "--seed", "1", "--overwrite"]) == 0


def test_an_unfinished_or_changed_result_is_refused_by_its_readers(tmp_path):
    folder = tmp_path / "result"
    outputs = Outputs("compare", {"seed": 0}, folders=[folder]).check()
    with pytest.raises(RuntimeError):
        with outputs.writing():
            (folder / "compare.json").write_text("{}")
            assert json.loads((folder / FOLDER_RECORD).read_text())["complete"] is False
            raise RuntimeError("killed")
    with pytest.raises(OutputError, match="unfinished `cxrssl compare` result"):
        require_complete(folder / "compare.json")
    with outputs.writing():
        (folder / "compare.json").write_text('{"done": 1}')
    assert require_complete(folder / "compare.json") == folder / "compare.json"
    (folder / "compare.json").write_text('{"done": 2}')
    with pytest.raises(OutputError, match="has changed since `cxrssl compare` wrote it"):
        require_complete(folder / "compare.json")
    bare = tmp_path / "by_hand.json"
    bare.write_text("{}")
    assert require_complete(bare) == bare  # no record: read as it is


def test_two_writers_on_one_output_are_refused_naming_that_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names, as typed: the refusal once named "." for a file
    for kind, target in (("files", Path("r.json")), ("folders", Path("sweep"))):
        first = Outputs("probe", {"seed": 0}, **{kind: [target]}).check()
        second = Outputs("probe", {"seed": 1}, **{kind: [target]}).check()
        with first.writing():
            with pytest.raises(OutputError, match="is being written by process") as refused:
                with second.writing():
                    pass
        assert str(refused.value).startswith(f"{target}: is being written"), refused.value
    assert not (tmp_path / ".r.json.lock").exists() and not (tmp_path / "sweep" / ".lock").exists()


def test_a_new_result_removes_the_old_one_before_any_new_file_is_shown(tmp_path):
    folder = tmp_path / "sweep"
    old = Outputs("sweep", {"seed": 0}, folders=[folder]).check()
    with old.writing():
        (folder / "sweep.csv").write_text("old")
        (folder / "sweep_extra.png").write_text("old")
    new = Outputs("sweep", {"seed": 1}, folders=[folder], overwrite=True).check()
    with new.writing():
        assert not (folder / "sweep_extra.png").exists() and not (folder / "sweep.csv").exists()
        (folder / "sweep.csv").write_text("new")
    assert json.loads((folder / FOLDER_RECORD).read_text())["files"] == {
        "sweep.csv": {"size": 3, "sha256": json.loads((folder / FOLDER_RECORD).read_text())["files"]["sweep.csv"]["sha256"]}
    }


def test_the_same_command_run_again_keeps_its_folder_and_a_failed_one_leaves_nothing(tmp_path):
    folder = tmp_path / "demo"
    with Outputs("demo", {"seed": 0}, folders=[folder]).check().writing():
        (folder / "run").mkdir(parents=True)
        (folder / "run" / "config.json").write_text("{}")
    with Outputs("demo", {"seed": 0}, folders=[folder]).check().writing():  # a re-run finds its own files where they were
        assert (folder / "run" / "config.json").read_text() == "{}"
    fresh = tmp_path / "never"
    with pytest.raises(RuntimeError):
        with Outputs("compare", {"seed": 0}, folders=[fresh]).check().writing():
            raise RuntimeError("refused before any output was written")
    assert not fresh.exists()  # neither an incomplete record nor an empty folder is left
    target = tmp_path / "r.json"
    with pytest.raises(RuntimeError):
        with Outputs("probe", {"seed": 0}, files=[target]).check().writing():
            raise RuntimeError("refused")
    assert not record_of_file(target).exists()


@pytest.mark.parametrize("name", [".r.json.cxrssl.json", ".cxrssl-output.json", ".r.json.lock", ".lock"])
def test_a_provenance_record_or_a_lock_is_never_an_output(tmp_path, name):
    with pytest.raises(OutputError, match="provenance record or lock"):
        Outputs("probe", {}, files=[tmp_path / name], overwrite=True).check()


FILE_CASES = [(verb, flag, suffix) for verb, (_, flags) in VERBS.items() for flag, (kind, _, suffix) in flags.items() if kind == "file"]


@pytest.mark.parametrize(("verb", "flag", "suffix"), FILE_CASES)
def test_a_file_output_is_named_for_the_format_it_holds(verb, flag, suffix, world, capsys):
    # features as .csv, a table as .txt, a figure with no suffix (matplotlib would add .png): refused before any work
    for wrong in ("out", "out.txt", "out.csv" if suffix != ".csv" else "out.json"):
        err = _refused(_command(verb, world, flag, world["tmp"] / wrong, overwrite=True), world, capsys)
        assert f"is written as {suffix}" in err or (verb == "export" and "unknown output format" in err), err
        assert not (world["tmp"] / wrong).exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["split", "m.csv", "-o", "s.csv", "--seed", "-1"],
        ["probe", "--init", "random", "--task", "t.csv", "--seed", "99999999999999999999"],
        ["finetune", "--init", "random", "--task", "t.csv", "--batch-size", "1"],
        ["phantom", "p", "--size", "100000"],
        ["gradcam", "--init", "random", "--task", "t.csv", "-o", "g.json"],
        ["compare", "--init", "random", "--task", "t.csv", "--inner-folds", "1"],  # once named --folds
        ["compare", "--init", "random", "--task", "t.csv", "--folds", "1"],
        ["probe", "--init", "random", "--task", "t.csv", "--folds", "1"],
        ["sweep", "--run", "r", "--task", "t.csv", "--inner-folds", "0"],
    ],
)
def test_values_that_used_to_end_in_a_traceback_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as refused:
        main(argv)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and err.startswith(f"cxrssl {argv[0]}: error: "), err
    flag = next((a for a in argv if a in ("--folds", "--inner-folds")), None)
    assert flag is None or f"argument {flag}: expected a number of cross-validation folds from 2" in err, err


def test_a_damaged_run_log_is_one_line(tmp_path):
    from cxrssl.errors import CxrsslError
    from cxrssl.run import RunFolder

    run = RunFolder(tmp_path)
    run.log.write_text("epoch,loss\n1,abc\nzz\n")
    with pytest.raises(CxrsslError, match="log.csv: damaged"):
        run.read_log()
    run.status.write_text("{")
    assert run.read_status() == {}


def test_the_check_refuses_an_input_by_any_spelling_and_finds_an_unwritable_place_first(tmp_path, monkeypatch):
    import errno
    import tempfile

    manifest = tmp_path / "d" / "labels.csv"
    manifest.parent.mkdir()
    manifest.write_text("x")
    cache = tmp_path / "pool.cache"
    cache.mkdir()
    (cache / "manifest.csv").write_text("y")
    Outputs("probe", {}, files=[tmp_path / "d" / "probe.json"], inputs=[manifest, cache]).check()  # beside an input is fine
    Outputs("probe", {}, files=[cache / "new.json"], inputs=[manifest, cache]).check()  # a new file in a folder input too
    for output in (tmp_path / "d" / "sub" / ".." / "labels.csv", tmp_path / "d" / ".." / "d" / "labels.csv", cache / "manifest.csv"):
        with pytest.raises(OutputError, match="would overwrite"):
            Outputs("probe", {}, files=[output], inputs=[manifest, cache], overwrite=True).check()
    assert manifest.read_text() == "x" and (cache / "manifest.csv").read_text() == "y"
    Outputs("probe", {}, files=[tmp_path / "new" / "folder" / "out.json"], inputs=[manifest]).check()
    assert list((tmp_path / "new" / "folder").iterdir()) == []  # made and probed, nothing left in it

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OSError, match="No space left"):
        Outputs("probe", {}, files=[tmp_path / "out.json"], inputs=[manifest]).check()


def test_a_refusal_names_the_verb_that_wrote_the_file_it_found(tmp_path):
    # split's manifest inside phantom's folder was said to be "written by cxrssl phantom"
    folder = tmp_path / "phantoms"
    with Outputs("phantom", {"n": 4}, folders=[folder]).check().writing():
        (folder / "a.png").write_bytes(b"png")
    split = folder / "split.csv"
    with Outputs("split", {"seed": 0}, files=[split]).check().writing():
        split.write_text("path,label\n")
    (folder / "a.png").unlink()  # only split's manifest (and the records) left
    with pytest.raises(OutputError, match=r"already holds split.csv, written by `cxrssl split`"):
        Outputs("cache", {}, folders=[folder]).check()
