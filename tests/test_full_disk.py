"""A full disk (simulated by a file-size limit) is one line naming the file and the fix, in every verb
that writes files, and leaves no partial file that looks complete."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from tests.commands import tiny_pretrain

LIMIT = 1024  # bytes: every verb below writes a bigger file than this


def _limited():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as a full disk fails with ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


VERBS = {
    "phantom": lambda world, out: ["phantom", str(out), "--n", "8", "--size", "64"],
    "split": lambda world, out: ["split", str(world["manifest"]), "-o", str(out / "split.csv")],
    "cache": lambda world, out: ["cache", str(world["manifest"]), "-o", str(out), "--size", "32", "--quiet"],
    "extract": lambda world, out: [
        "extract",
        "--init",
        "random",
        "--image-size",
        "32",
        "--data",
        str(world["manifest"]),
        "-o",
        str(out / "f.npz"),
        "--quiet",
    ],
    "pretrain": lambda world, out: tiny_pretrain(world["manifest"], out),
    "probe": lambda world, out: [
        "probe",
        "--init",
        "random",
        "--image-size",
        "32",
        "--task",
        str(world["manifest"]),
        "-o",
        str(out / "r.json"),
        "--bootstrap",
        "20",
        "--quiet",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(VERBS))
def test_a_full_disk_is_one_line_and_leaves_nothing_that_looks_complete(verb, tmp_path, phantom_manifest):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cxrssl", *VERBS[verb]({"manifest": phantom_manifest}, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=_limited, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"cxrssl {verb}:")]  # progress bars aside
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "free" in errors[0] and ("space" in errors[0] or "limit" in errors[0]), errors[0]
    # It names the file it could not write: an output, or the feature cache it fills first.
    assert str(out) in errors[0] or str(tmp_path.parent) in errors[0], f"the error names no file: {errors[0]}"
    # Nothing left that looks complete: no temporary file, no provenance record saying complete, no finished cache.
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not [p for p in leftovers if p.name.endswith(".tmp")], leftovers
    for record in [p for p in leftovers if p.name.endswith(".cxrssl.json") or p.name == ".cxrssl-output.json"]:
        assert json.loads(record.read_text())["complete"] is False, record
    assert not (out / "cache.json").exists()
    if verb == "pretrain":
        status = json.loads((out / "status.json").read_text()) if (out / "status.json").is_file() else {"state": "not started"}
        assert status["state"] != "running" and not (out / "checkpoints" / "epoch_0001.json").exists()
