#!/usr/bin/env bash
# Everything that needs a GPU, in under 8 minutes on one GPU machine (needs torch,
# torchvision, numpy, scikit-learn, Pillow, PyYAML, safetensors, tqdm; not pydicom or grad-cam):
# python3 is the interpreter that has torch there.
#  1. bench/gpu_smoke.py: the real commands end to end on CUDA (pretrain, resume, probe,
#     GPU features against CPU features); PASS/FAIL lines, at most 150 s;
#  2. bench/gpu_throughput.py: wide_resnet50_2 at 224 px, batch 128 and 256, bf16 autocast,
#     channels_last, eager and torch.compile, through the training loop's engine: images/s,
#     TFLOP/s, MFU, peak memory and the projected wall time of 100 epochs over CheXpert.
#
#   bash bench/gpu.sh                 # extra flags go to bench/gpu_throughput.py, e.g. --batches 256 --compile off
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
smoke=0
timeout 150 python3 bench/gpu_smoke.py || smoke=$?
timeout 320 python3 bench/gpu_throughput.py "$@"
exit "$smoke"
