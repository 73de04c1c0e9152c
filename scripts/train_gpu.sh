#!/usr/bin/env bash
# Train the default ensemble on a lent GPU: every cross-validation fold and the all-cases model together, in one
# process, the whole cache on the GPU, bf16, starting from the shipped weights so that lent sessions add up.
#
# Prepared here by `make gpu-prepare` (scripts/gpu_prepare.py): .gpu/part*/ (the preprocessed cases, carried over
# a few device calls), .gpu/whl/ (MONAI, which the GPU image lacks), .gpu/resume/ (the shipped weights and step
# counts). On the device, after the parts are carried:  bash scripts/train_gpu.sh
# It writes to $OUT (or OUT_DIR): one <run>.pt per run (float16 weights) and runs.tar.gz (histories, configs,
# log) and inference_benchmark.json - 8 files, within what the device tool brings back. Install them with scripts/install_trained_weights.py.
#
# Settings (environment): TIME_LIMIT (s, default 330), BATCH (default 4), REMOVE_ENHANCEMENT (default 0.3),
# SCANNER_SHIFT (default 0.15: chance of each simulated scanner/protocol change per sequence),
# DEVICE (default cuda), MAX_STEPS (default 1000000), PYTHON (default python3), GPU_DIR (default .gpu),
# FOLDS (the split, default the shipped one), EXTRA_ARGS (more `tumorseg train` options, e.g. a small patch size
# for the CPU test), INFERENCE_BENCHMARK (0 skips the timing of the default ensemble), BENCH_REPEATS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${GPU_DIR:-.gpu}
out=${OUT_DIR:-${OUT:-runs/gpu-out}}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/cache" "$work/runs"

if compgen -G "$gpu/whl/*.whl" >/dev/null; then  # MONAI (pure Python) into a private site folder
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$gpu"/whl/*.whl
  export PYTHONPATH="$work/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
for part in "$gpu"/part*/; do ln -sf "$(cd "$part" && pwd)"/*.npz "$work/cache/"; done
# The shipped split, so each fold network is held out on the cases the model card says.
cp "${FOLDS:-Resources/Models/training/folds.json}" "$work/runs/folds.json"
resume=()
[ -d "$gpu/resume" ] && resume=(--resume-from "$gpu/resume")

PYTHONUNBUFFERED=1 "$python" -m TumorSegLib train "$work/cache" -o "$work/runs" --fold every \
  --device "${DEVICE:-cuda}" --time-limit "${TIME_LIMIT:-330}" --max-steps "${MAX_STEPS:-1000000}" \
  --batch-size "${BATCH:-4}" --remove-enhancement "${REMOVE_ENHANCEMENT:-0.3}" --checkpoint-every 60 \
  --scanner-shift "${SCANNER_SHIFT:-0.15}" \
  ${EXTRA_ARGS:-} "${resume[@]}" 2>&1 | tee "$work/runs/train.log"

for run in "$work"/runs/fold*/; do
  name=$(basename "$run")
  cp "$run/model.pt" "$out/$name.pt"
done
tar -czf "$out/runs.tar.gz" -C "$work/runs" train.log folds.json $(cd "$work/runs" && ls -d fold*/history.json fold*/config.json)
grep -h "done:" "$work/runs/train.log" || true

# The inference budget (<= 5 s per case on one H200): the default ensemble on one cached case, timed on this
# device while it is lent. INFERENCE_BENCHMARK=0 skips it.
if [ "${INFERENCE_BENCHMARK:-1}" != 0 ]; then
  case_file=$(ls "$work"/cache/*.npz | head -n 1)
  "$python" Testing/Benchmarks/gpu_inference_benchmark.py --device "${DEVICE:-cuda}" --case "$case_file" \
    --repeats "${BENCH_REPEATS:-3}" | tee "$out/inference_benchmark.json"
fi
