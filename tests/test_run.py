import pytest

from cxrssl.errors import CxrsslError
from cxrssl.run import LOG_COLUMNS, RunFolder


def test_log_round_trip_and_paths(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.read_log() == []
    rows = [{"epoch": 1, "loss": 4.2, "lr": 0.0005, "images_per_s": 50.0, "wall_s": 10.0}]
    run.write_log(rows)
    # A run without monitors (an older run, or monitor_images 0) writes and reads back only its own columns.
    assert run.read_log() == [{key: str(value) for key, value in rows[0].items()}]
    assert run.log.read_text().splitlines()[0] == ",".join(LOG_COLUMNS[:5])
    # A monitor column is written when some row has it; the rows without it read back empty.
    rows.append({**rows[0], "epoch": 2, "knn_auc": 0.75})
    run.write_log(rows)
    assert run.log.read_text().splitlines()[0] == ",".join([*LOG_COLUMNS[:5], "knn_auc"])
    assert [row["knn_auc"] for row in run.read_log()] == ["", "0.75"]
    assert run.checkpoint(5).name == "epoch_0005.json"


def test_the_saved_config_is_read_or_refused_with_one_line(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(CxrsslError, match="config.json: not found"):
        run.read_config()
    run.config.write_text('{"pretrain": {"seed": 3}}')
    assert run.read_config()["pretrain"]["seed"] == 3
    run.config.write_text('{"pretrain": ')
    with pytest.raises(CxrsslError, match="config.json: unreadable"):
        run.read_config()
    run.config.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(CxrsslError, match="unreadable"):
        run.read_config()
    run.config.write_text('{"probe": {}}')
    with pytest.raises(CxrsslError, match="has no 'pretrain' settings"):
        run.read_config()


def test_a_run_folder_is_claimed_only_when_new_empty_or_already_a_run(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"camera": "x"}')
    (foreign / "unreadable.csv").write_text("keep me")
    with pytest.raises(CxrsslError, match="is not empty and is not a cxrssl run folder; choose a new or empty folder for --out"):
        RunFolder(foreign).claim()
    assert (foreign / "unreadable.csv").read_text() == "keep me" and sorted(p.name for p in foreign.iterdir()) == ["config.json", "unreadable.csv"]
    (tmp_path / "file").write_text("")
    with pytest.raises(CxrsslError, match="is a file, not a folder"):
        RunFolder(tmp_path / "file").claim()
    fresh = RunFolder(tmp_path / "new" / "run")
    fresh.claim()
    assert fresh.marker.is_file() and fresh.is_run()
    fresh.claim()  # claiming its own run again is fine
    older = RunFolder(tmp_path / "older")  # a run from before the marker: its config.json says so
    older.root.mkdir()
    older.config.write_text('{"pretrain": {}}')
    older.claim()
    assert older.marker.is_file()


def test_one_process_per_run_and_stale_locks_are_taken_over(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    run = RunFolder(tmp_path / "run")
    run.claim()
    with run.locked():
        holder = json.loads(run.lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(CxrsslError, match=rf"is being trained by process {os.getpid()} on .*delete .*\.lock if that process no longer runs"):
            with run.locked():
                pass
    assert not run.lock.exists()  # released
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    run.lock.write_text(json.dumps({"pid": int(gone), "host": socket.gethostname(), "since": "earlier"}))
    with run.locked():  # the process that held it has exited: stale
        assert json.loads(run.lock.read_text())["pid"] == os.getpid()
    run.lock.write_text(json.dumps({"pid": 1, "host": "another-machine", "since": "earlier"}))
    with pytest.raises(CxrsslError, match="process 1 on another-machine"):  # cannot tell from here: refused
        with run.locked():
            pass


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    run = RunFolder(tmp_path / "run")
    (run.root / "state").mkdir(parents=True)
    leftovers = [run.root / "state" / ".last_0003.safetensors.abc.tmp", run.root / ".log.csv.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    kept = run.root / "state" / "last.json"
    kept.write_text("{}")
    assert sorted(run.remove_stale_temporaries()) == sorted(leftovers)
    assert kept.exists() and not any(path.exists() for path in leftovers)
