#!/usr/bin/env bash
# The method end to end on real chest X-rays, on CPU cores (measured: 41 min on 2 shared cores in float32;
# about half that where the CPU has native bf16, which the engine then uses):
#   1. cache the 5,573 unlabelled films of shared/data/pool at 128 px;
#   2. SimCLR-pretrain ResNet-18 on them with the cpu preset (EPOCHS epochs, 2-4 min each on 2 cores);
#   3. sweep: probe every kept checkpoint (and the random start) on shared/data/nih_pneumonia
#      (Pneumonia vs No findings, 1,000 images of 682 patients, 70/10/20 patient-level split);
#   4. compare: the final and the middle checkpoint against random initialisation on the same
#      5 x 5 patient-grouped folds at 10, 25, 50, 100 and all labelled patients per class:
#      paired AUC differences with 95 % intervals (corrected resampled t-test).
#
#   bash bench/realdata.sh [OUT_DIR]          # default ./bench-realdata; EPOCHS=10 by default
# A killed run continues where it stopped when started again with the same OUT_DIR.
set -euo pipefail

DATA="${CXRSSL_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
OUT="${1:-bench-realdata}"
EPOCHS="${EPOCHS:-10}"
TASK="$DATA/nih_pneumonia/labels.csv"
if [[ ! -f "$DATA/pool/labels.csv" || ! -f "$TASK" ]]; then
  echo "bench/realdata.sh: $DATA has no pool/labels.csv and nih_pneumonia/labels.csv; set CXRSSL_SHARED_DATA" >&2
  exit 2
fi
mkdir -p "$OUT"
started=$(date +%s)

cxrssl cache "$DATA/pool/labels.csv" -o "$OUT/pool.cache" --size 128 --quiet
resume=()
[[ -f "$OUT/run/state/last.json" ]] && resume=(--resume)
keep=$(seq -s, 2 2 "$EPOCHS")
cxrssl pretrain --data "$OUT/pool.cache" --out "$OUT/run" --config cpu --epochs "$EPOCHS" --keep "$keep" --quiet "${resume[@]}"  # the last epoch is always kept
pretrained_at=$(date +%s)

cxrssl sweep --run "$OUT/run" --task "$TASK" -o "$OUT/sweep" --quiet
final="$OUT/run/checkpoints/epoch_$(printf %04d "$EPOCHS").json"
half=$(( EPOCHS / 4 * 2 )); (( half >= 2 )) || half=2  # a kept epoch: every second one is kept
middle="$OUT/run/checkpoints/epoch_$(printf %04d "$half").json"
cxrssl compare --checkpoint "SimCLR epoch $EPOCHS=$final" --checkpoint "SimCLR epoch $half=$middle" --init random \
  --task "$TASK" --labels 10,25,50,100,all -o "$OUT/compare" --overwrite --quiet
echo "pretraining log ($OUT/run/log.csv):"
column -s, -t < "$OUT/run/log.csv"
echo "per-checkpoint sweep ($OUT/sweep/sweep.csv):"
cut -d, -f1-2,4,7-9 "$OUT/sweep/sweep.csv" | column -s, -t
echo "paired comparison ($OUT/compare/compare.md):"
cat "$OUT/compare/compare.md"
echo "wall time: pretraining $(( (pretrained_at - started) / 60 )) min, all $(( ($(date +%s) - started) / 60 )) min"
