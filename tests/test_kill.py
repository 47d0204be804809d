"""Kill harnesses: ``cxrssl finetune``, ``compare`` (with and without ``--finetune``) and ``cache``
killed with SIGKILL at chosen moments, then run again, must give the uninterrupted result.

Each command runs as ``python -m cxrssl ...`` in a subprocess, through a small wrapper
(``KILLER``) that counts the moments a command makes something durable: every
``os.fsync`` (a file's bytes on disk: an atomic write's temporary, a journal line),
``os.replace`` (an atomic write committed) and ``os.unlink`` (an old file removed). It
sends itself SIGKILL just before or just after the k-th such moment: no timing, the same
moment on every machine, and no hook inside cxrssl. An uninterrupted run counts the
moments; a seeded sample of them is killed, each folder then rerun with the plain
command, and the result JSON must equal the uninterrupted run's (floats to 1e-12) once
what differs between any two runs (clocks, durations, versions) is left out.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

KILLER = r"""
import atexit, os, runpy, signal, sys

point, when = int(sys.argv[1]), sys.argv[2]
count = [0]


def watched(real, name):
    def call(*args, **kwargs):
        count[0] += 1
        if point == 0:  # the uninterrupted run lists its moments
            target = args[-1] if args else ""
            if name == "fsync":
                try:
                    target = os.readlink(f"/proc/self/fd/{args[0]}")
                except OSError:
                    pass
            sys.stderr.write(f"DURABLE-MOMENT {count[0]} {name} {os.path.basename(str(target))}\n")
        if count[0] == point and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if count[0] == point and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return call


for name in ("fsync", "replace", "unlink"):
    setattr(os, name, watched(getattr(os, name), name))
sys.argv = ["cxrssl", *sys.argv[3:]]
runpy.run_module("cxrssl", run_name="__main__", alter_sys=True)
"""

VOLATILE = ("time", "_at", "seconds", "wall", "date", "elapsed", "duration", "version", "host", "pid", "images_per_s")


def _stable(value):
    """The result with what differs between any two runs (clocks, durations, versions) left out."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not any(word in k.lower() for word in VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _assert_same(got, expected, where="result"):
    """Equal JSON values, floats to 1e-12 (NaN equal to NaN)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), f"{where}: keys {sorted(set(got) ^ set(expected))}"
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected)):
            _assert_same(a, b, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert (math.isnan(got) and math.isnan(expected)) or abs(got - expected) <= 1e-12, f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


class Harness:
    """Runs one command in its own folder (paths in its outputs are then alike), killed or not."""

    def __init__(self, root: Path, args: list[str]):
        self.root, self.args = root, args
        self.script = root / "killer.py"
        self.script.write_text(KILLER)

    def env(self, folder: Path) -> dict:
        # Each folder has its own feature cache, shared by its killed run and its rerun.
        return {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "CXRSSL_CACHE": str(folder / "feature-cache"),
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONHASHSEED": "0",
        }

    def run(self, folder: Path, point: int = 0, when: str = "after") -> subprocess.CompletedProcess:
        folder.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, str(self.script), str(point), when, *self.args],
            cwd=folder,
            env=self.env(folder),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def uninterrupted(self) -> tuple[Path, list[tuple[str, str]]]:
        """The folder of an uninterrupted run, and its durable moments in order: (fsync|replace|unlink, file name)."""
        folder = self.root / "whole"
        done = self.run(folder)
        assert done.returncode == 0, done.stderr[-3000:]
        moments = [line.split(" ", 3)[2:] for line in done.stderr.splitlines() if line.startswith("DURABLE-MOMENT ")]
        return folder, [(kind, name) for kind, name in moments]

    def killed_then_rerun(self, name: str, point: int, when: str) -> Path:
        folder = self.root / name
        killed = self.run(folder, point, when)
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr[-3000:]
        rerun = subprocess.run(
            [sys.executable, "-m", "cxrssl", *self.args], cwd=folder, env=self.env(folder), capture_output=True, text=True, timeout=300
        )
        assert rerun.returncode == 0, f"killed {when} durable moment {point}, then rerun: {rerun.stderr[-3000:]}"
        return folder


def _kill_points(total: int, count: int, seed: int, must: tuple[tuple[int, str], ...] = ()) -> list[tuple[int, str]]:
    """``must`` and a seeded sample of ``count`` other moments, each of those killed just before or just after it."""
    others = sorted(set(range(1, total + 1)) - {point for point, _ in must})
    sample = sorted(random.Random(seed).sample(others, min(count, len(others))))
    return [*must, *((point, "before" if index % 2 else "after") for index, point in enumerate(sample))]


def _moment(moments: list[tuple[str, str]], kind: str, prefix: str) -> int:
    """The number (from 1) of the first moment of ``kind`` on a file whose name starts with ``prefix``."""
    return next(number for number, (k, name) in enumerate(moments, 1) if k == kind and name.startswith(prefix))


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory) -> Path:
    """40 phantom films at 64 px (about 25 patients)."""
    from cxrssl.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("kill-task"), n=40, size=64, seed=3, progress=False)


@pytest.fixture(scope="module")
def other_backbone(tmp_path_factory) -> Path:
    """A second backbone to compare with random init: another seed's resnet18, saved as a checkpoint."""
    import torch

    from cxrssl.checkpoint import checkpoint_metadata, save_weights
    from cxrssl.models import build_backbone

    torch.manual_seed(1)
    weights = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    return save_weights(tmp_path_factory.mktemp("kill-ck") / "epoch_0001.json", weights, checkpoint_metadata("resnet18", 64, 1, {}))


def test_a_killed_finetune_reruns_to_the_uninterrupted_result(tmp_path, tiny_task):
    args = [
        "finetune",
        "--init",
        "random",
        "--arch",
        "resnet18",
        "--image-size",
        "64",
        "--task",
        str(tiny_task),
        "-o",
        "./finetune.json",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--bootstrap",
        "10",
        "--device",
        "cpu",
        "--quiet",
    ]
    harness = Harness(tmp_path, args)
    whole, moments = harness.uninterrupted()
    expected = _stable(json.loads((whole / "finetune.json").read_text()))
    # Each epoch's state save: its weights file committed, then the record naming it, then the old
    # weights removed. Always killed: after epoch 2's weights are in place and before their record
    # (the window that once left a fine-tune that never resumed), and before epoch 1's weights are removed.
    window = _moment(moments, "replace", "finetune_state_0002_")
    old_weights = _moment(moments, "unlink", "finetune_state_0001_")
    for point, when in _kill_points(len(moments), 0, seed=1, must=((window, "after"), (old_weights, "before"))):
        folder = harness.killed_then_rerun(f"killed_{point}_{when}", point, when)
        _assert_same(_stable(json.loads((folder / "finetune.json").read_text())), expected, f"finetune killed {when} moment {point}")
        assert not (folder / "finetune_state").exists()


@pytest.mark.parametrize("finetuned", [False, True], ids=["probe", "finetune"])
def test_a_killed_compare_reruns_to_the_uninterrupted_result(tmp_path, tiny_task, other_backbone, finetuned):
    args = [
        "compare",
        "--checkpoint",
        f"pretrained={other_backbone}",
        "--init",
        "random",
        "--image-size",
        "64",
        "--task",
        str(tiny_task),
        "--labels",
        "all",
        "--folds",
        "2",
        "--repeats",
        "2" if not finetuned else "1",
        "--inner-folds",
        "2",
        "--jobs",
        "1",
        "--bootstrap",
        "100",
        "-o",
        "./out",
        "--quiet",
    ]
    if finetuned:
        args += ["--finetune", "--finetune-labels", "all", "--epochs", "2", "--batch-size", "8", "--device", "cpu"]
    harness = Harness(tmp_path, args)
    whole, moments = harness.uninterrupted()
    expected = _stable(json.loads((whole / "out" / "compare.json").read_text()))
    journal = [n for n, (kind, name) in enumerate(moments, 1) if kind == "fsync" and name.startswith(".compare.partial")]
    assert len(journal) >= 2, moments  # the journal's start and at least one finished fold
    # Killed after a finished fold is journalled; with --finetune, inside a fine-tune instead: after its
    # second epoch's weights are in place and before their record.
    must = (_moment(moments, "replace", "finetune_state_0002_"), "after") if finetuned else (journal[1], "after")
    for point, when in _kill_points(len(moments), 0 if finetuned else 1, seed=2, must=(must,)):
        folder = harness.killed_then_rerun(f"killed_{point}_{when}", point, when)
        _assert_same(_stable(json.loads((folder / "out" / "compare.json").read_text())), expected, f"compare killed {when} moment {point}")
        assert not list((folder / "out").glob(".compare.partial*")) and not (folder / "out" / ".finetune_state").exists()


def test_a_killed_cache_build_reruns_to_the_uninterrupted_cache(tmp_path, tiny_task):
    # A bare output name, as typed: the rerun must still be "the very same command" once the folder exists.
    harness = Harness(tmp_path, ["cache", str(tiny_task), "-o", "cache", "--size", "64", "--workers", "1", "--quiet"])
    whole, moments = harness.uninterrupted()
    expected = _stable(json.loads((whole / "cache" / "cache.json").read_text()))
    for point, when in _kill_points(len(moments), 1, seed=4, must=((_moment(moments, "replace", "pixels.u8"), "after"),)):
        folder = harness.killed_then_rerun(f"killed_{point}_{when}", point, when)
        _assert_same(_stable(json.loads((folder / "cache" / "cache.json").read_text())), expected, f"cache killed {when} moment {point}")
        assert (folder / "cache" / "pixels.u8").read_bytes() == (whole / "cache" / "pixels.u8").read_bytes()
        assert (folder / "cache" / "manifest.csv").read_text() == (whole / "cache" / "manifest.csv").read_text()
