#!/usr/bin/env bash
# The GPU path on one GPU, in under 8 minutes: wide_resnet50_2 at 224 px, batch 128 and 256,
# bf16 autocast, channels_last, eager and torch.compile, pixels from a uint8 memory-mapped
# array augmented on the GPU. Prints images/s, TFLOP/s, MFU, peak memory and the projected
# wall time of 100 epochs over CheXpert (224,316 images). Needs only torch, torchvision, numpy.
#
#   bash bench/gpu.sh                 # extra flags go to bench/gpu_throughput.py, e.g. --batches 256 --compile off
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
PYTHONPATH=src timeout 470 python bench/gpu_throughput.py "$@"
