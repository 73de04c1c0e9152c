#!/usr/bin/env bash
# Trains the embedded default model: 5 cross-validation folds and one model on every case, in parallel
# processes sharing one GPU (each model is small, so running them together keeps the GPU busy).
#
#   scripts/train_default_model.sh DATA_OR_CACHE_DIR OUT_DIR [TIME_LIMIT_S] [PYTHON]
#
# DATA_OR_CACHE_DIR: BraTS-format case folders, or a cache made by `tumorseg train` (``*.npz``).
# Each run's schedule ends after TIME_LIMIT_S seconds of training (default 480) or 100000 steps.
# Logs: OUT_DIR/train_<fold>.log; weights: OUT_DIR/fold<k>/model.pt and OUT_DIR/foldall/model.pt.
set -euo pipefail
data=$1
out=$2
limit=${3:-480}
python=${4:-python3}
mkdir -p "$out"
pids=()
for fold in 0 1 2 3 4 all; do
  OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 "$python" -m TumorSegLib train "$data" -o "$out" --fold "$fold" \
    --time-limit "$limit" --max-steps 100000 --device auto >"$out/train_$fold.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
grep -h "\[train\] done" "$out"/train_*.log || true
exit $status
