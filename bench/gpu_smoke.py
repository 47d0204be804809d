"""The real commands on a GPU, end to end, in about a minute: run by bench/gpu.sh first.

CI has no GPU, so this is where `cxrssl pretrain` and feature extraction meet CUDA:
phantom films -> cache -> pretrain 2 epochs on the GPU -> resume to 3 -> probe (features
extracted on the GPU) -> the same features on the CPU. Each check prints PASS or FAIL
with its figures; the exit status is 1 if any failed. Needs what the GPU machine has
(torch, torchvision, numpy, scikit-learn, Pillow, PyYAML, safetensors, tqdm), not
pydicom or grad-cam.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FAILURES: list[str] = []


def check(name: str, passed: bool, detail: str) -> None:
    print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}", flush=True)
    if not passed:
        FAILURES.append(name)


def cxrssl(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cxrssl", *args], check=True)
    return time.perf_counter() - started


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check")
        return 1
    from cxrssl.data.images import open_image_set
    from cxrssl.eval.features import BackboneSpec, extract_features

    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        cxrssl("phantom", str(work / "films"), "--n", "240", "--size", "128")
        cxrssl("cache", str(work / "films" / "labels.csv"), "-o", str(work / "cache"), "--size", "96", "--quiet")
        common = [
            "--data",
            str(work / "cache"),
            "--out",
            str(work / "run"),
            "--quiet",
            "--config",
            "demo",
            "--device",
            "cuda",
            "--arch",
            "resnet18",
            "--image-size",
            "96",
            "--batch-size",
            "64",
        ]
        first = cxrssl("pretrain", *common, "--epochs", "2")
        resumed = cxrssl("pretrain", *common, "--epochs", "3", "--resume")
        run = work / "run"
        config = json.loads((run / "config.json").read_text())
        log = (run / "log.csv").read_text().splitlines()[1:]
        status = json.loads((run / "status.json").read_text())
        check(
            "pretrain on the GPU",
            config["device"] == "cuda" and config["autocast"] == "bfloat16",
            f"device {config['device']}, autocast {config['autocast']}, {first:.0f} s for 2 epochs",
        )
        check(
            "resume on the GPU",
            len(log) == 3 and status["state"] == "complete",
            f"{len(log)} log rows, state {status['state']}, {resumed:.0f} s; losses {[row.split(',')[1][:6] for row in log]}",
        )

        checkpoint = run / "checkpoints" / "epoch_0003.json"
        cxrssl("probe", "--checkpoint", str(checkpoint), "--task", str(work / "films" / "labels.csv"), "-o", str(work / "probe.json"), "--quiet")
        auc = json.loads((work / "probe.json").read_text())["metrics"]["auc"]
        check("probe with GPU features", 0 <= auc <= 1, f"AUC {auc:.3f}")

        images = open_image_set(work / "cache", 96, progress=False).select(range(64))
        spec = BackboneSpec.from_checkpoint(checkpoint)
        on_gpu = extract_features(spec.build(), images, device="cuda")
        on_cpu = extract_features(spec.build(), images, device="cpu")
        # cuDNN convolutions use TF32 by default: agreement to about 1e-3, not 1e-6.
        error = float(np.abs(on_gpu - on_cpu).max() / np.abs(on_cpu).max())
        check("GPU features match CPU features", error < 1e-2, f"max difference {error:.1e} of the largest feature")
    print("all GPU checks passed" if not FAILURES else f"failed: {', '.join(FAILURES)}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
