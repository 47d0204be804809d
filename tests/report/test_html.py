import base64
import re
import shutil
import subprocess
from dataclasses import replace

import pytest

from cxrssl.config import load_pretrain_config
from cxrssl.eval.probe import ProbeSettings
from cxrssl.report.html import build_report
from cxrssl.train import pretrain

pytestmark = pytest.mark.slow
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("pytorch_grad_cam")
    from cxrssl.data.phantom import write_phantom_dataset

    folder = tmp_path_factory.mktemp("report")
    task = write_phantom_dataset(folder / "task", n=60, size=64, seed=5, progress=False)
    config = replace(load_pretrain_config("demo"), image_size=32, batch_size=16, epochs=2, hidden_features=32, out_features=16, keep_epochs=(1, 2))
    pretrain(task, folder / "run", config, progress=False)
    return build_report(folder / "run", [str(task)], folder / "report.html", ProbeSettings(bootstrap=20), progress=False)


def test_report_is_one_file_with_every_figure_embedded(report):
    page = report.read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # loss, sweep, t-SNE, Grad-CAM, errors
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)
    assert 'class="table3"' in page and "random init" in page and "<td>temperature</td>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def _chromium() -> str:
    # .ci/run installs Debian's chromium when it is missing; a test never installs anything.
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("headless Chromium is not installed (apt-get install chromium; .ci/run does it where apt-get works)")
    return found


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", report.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert 'data-figures-loaded="5/5"' in dom  # every figure decoded, none broken
    assert re.search(r'<table class="table3">.*?<td>random init</td>', dom, re.S)
    shot = tmp_path / "page.png"
    subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1366,900", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000  # a laptop-sized rendering with content in it
