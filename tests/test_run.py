import pytest

from cxrssl.errors import CxrsslError
from cxrssl.run import LOG_COLUMNS, RunFolder


def test_log_round_trip_and_paths(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.read_log() == []
    rows = [{"epoch": 1, "loss": 4.2, "lr": 0.0005, "images_per_s": 50.0, "wall_s": 10.0}]
    run.write_log(rows)
    assert run.read_log() == [{key: str(value) for key, value in rows[0].items()}]
    assert run.log.read_text().splitlines()[0] == ",".join(LOG_COLUMNS)
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
