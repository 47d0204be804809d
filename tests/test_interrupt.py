"""Signals stop a verb cleanly: exit 128 + signal, status ``interrupted``, no lock or temporary left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cxrssl.interrupt import Interrupted, stopping_on_signals
from tests.commands import tiny_pretrain


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_becomes_interrupted_and_the_old_handlers_come_back(number):
    before = signal.getsignal(number)
    with pytest.raises(Interrupted) as stopped:
        with stopping_on_signals():
            os.kill(os.getpid(), number)
            time.sleep(5)  # interrupted long before
    assert stopped.value.signal == number and signal.getsignal(number) == before


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_pretraining_with_its_status_and_no_lock(tmp_path, phantom_manifest, number):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cxrssl", *tiny_pretrain(phantom_manifest, run, 50)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (run / "checkpoints").is_dir() or not list((run / "checkpoints").glob("*.json")):  # stopped mid-run, after an epoch
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() is not None else "no epoch"
        time.sleep(0.2)
    process.send_signal(number)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + number, err
    assert err.strip().endswith(f"stopped by {signal.Signals(number).name}; continue with the same command and --resume"), err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["signal"] == signal.Signals(number).name
    assert status["epochs"] == 50 and status["epochs_done"] >= 1  # how far it got (the status once lost it)
    assert not (run / ".lock").exists() and not list(run.rglob(".*.tmp"))
    again = [*command, "--resume"]
    again[again.index("50")] = "2"
    resumed = subprocess.run(again, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr


def _processes_with(marker: str) -> list[int]:
    """Processes whose environment holds ``marker``: a command's workers, even once orphaned."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find the worker processes")
def test_sigterm_ends_compare_and_its_worker_processes(tmp_path, phantom_manifest):
    import torch
    import torchvision

    weights = tmp_path / "other.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    marker = f"CXRSSL_TEST_RUN={tmp_path.name}"
    command = [
        sys.executable,
        "-m",
        "cxrssl",
        "compare",
        "--init",
        "random",
        "--init",
        str(weights),
        "--image-size",
        "32",
        "--task",
        str(phantom_manifest),
        "--labels",
        "5,all",
        "--folds",
        "3",
        "--repeats",
        "20",
        "--jobs",
        "2",
        "-o",
        str(tmp_path / "cmp"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRSSL_TEST_RUN": tmp_path.name}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in process.stdout:  # the fits have started: workers exist
        if "probe fits to run" in line:
            break
    time.sleep(2)
    assert len(_processes_with(marker)) >= 2  # the command and its workers
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 128 + signal.SIGTERM, rest
    assert "stopped by SIGTERM; the same command continues it" in rest
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_with(marker), "worker processes outlived the command"
    assert not (tmp_path / "cmp" / ".lock").exists() and not (tmp_path / "cmp" / "compare.json").exists()
