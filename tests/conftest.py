"""Shared fixtures: small phantom datasets made on the fly, and the real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (.ci/run: one worker per core), each worker and the processes its tests
# start use one thread: two workers with two threads each would fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)

import pytest
from hypothesis import settings

# Property tests (tests/test_fuzz.py): CI replays the same examples on every run, so a
# red CI always means a change broke something; `pytest --hypothesis-profile=explore`
# draws fresh ones to look for new failures.
settings.register_profile("default", max_examples=60, derandomize=True)
settings.register_profile("explore", max_examples=300, derandomize=False)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def feature_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own feature cache: nothing is read from or left in the user's."""
    folder = tmp_path_factory.mktemp("cxrssl-cache")
    monkeypatch.setenv("CXRSSL_CACHE", str(folder))
    return folder


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory) -> Path:
    """48 small labelled phantoms (about 30 patients), written once per test session."""
    from cxrssl.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n=48, size=64, seed=3, progress=False)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "nih_pneumonia" / "labels.csv").is_file():
        pytest.skip("real chest X-rays not found: ../shared/data (beside the checkout) is absent")
    return SHARED_DATA
