#!/usr/bin/env bash
# Train one shipped member further on this machine's CPU, for when no GPU is lent: from its shipped weights
# (their step count carried on), on the N4-corrected cache that `make gpu-prepare` builds (made here if missing),
# with the GPU recipe's enhancement removal, in bfloat16 where the CPU has it natively. Resumable: run it again
# and it continues from its last checkpoint (every 10 minutes). A new run after installing one: remove
# runs/cpu_fold<FOLD> first (it then starts from the installed weights).
#
#   scripts/train_cpu.sh FOLD [TIME_LIMIT_S]      (= make train-cpu FOLD=3 TIME_LIMIT=4800)
#
# FOLD: 0-4 (held out on that fold of the shipped split) or all. TIME_LIMIT_S (default 4800) ends the schedule
# (warm-up, then cosine to 0). Output: runs/cpu_fold<FOLD>/ (train.log, fold<FOLD>/model.pt, history, config).
# Then compare it with the shipped member on the cases it never saw, and install it only if it is better:
#   python Testing/Benchmarks/compare_fold.py FOLD runs/cpu_fold<FOLD>/fold<FOLD>/model.pt
#   python scripts/install_trained_weights.py runs/cpu_fold<FOLD>
# FOLD all has no held-out fold: compare_fold.py judges it on shared cases outside the split that it did not train
# on (leave them out with DATA=a folder of the cache's .npz files without them).
# Settings (environment): LEARNING_RATE (default 5e-4: fine-tuning), REMOVE_ENHANCEMENT (0.3), SCANNER_SHIFT (0),
# PYTHON (default .venv/bin/python), DATA (default ../shared/data/brats2018), GPU_DIR (default .gpu: the cache
# and the weights to start from), OUT_DIR (default runs/cpu_fold<FOLD>), FOLDS (the split, default the shipped
# one), EXTRA_ARGS (more `tumorseg train` options, e.g. a small patch size for the test).
set -euo pipefail
cd "$(dirname "$0")/.."
fold=${1:?give a fold: 0-4 or all}
limit=${2:-4800}
python=${PYTHON:-.venv/bin/python}
gpu=${GPU_DIR:-.gpu}
out=${OUT_DIR:-runs/cpu_fold$fold}
split=${FOLDS:-Resources/Models/training/folds.json}
# A fold the split lacks is refused before anything is written.
"$python" - "$split" "$fold" <<'PY' || exit 2
import json, sys
count = len(json.load(open(sys.argv[1]))["folds"])
if sys.argv[2] != "all" and sys.argv[2] not in map(str, range(count)):
    sys.exit(f"scripts/train_cpu.sh: fold {sys.argv[2]!r}: give 0-{count - 1} (the folds of {sys.argv[1]}) or all")
PY
mkdir -p "$out" "$gpu"
# The shipped split, so the network is held out on the cases the model card says; new shared cases join a fold.
[ -f "$out/folds.json" ] || cp "$split" "$out/folds.json"
# The members as shipped now (installed weights included), with their step counts, to start from.
GPU_DIR=$gpu "$python" -c "import os, sys; sys.path.insert(0, 'scripts'); import gpu_prepare; from pathlib import Path
gpu_prepare.resume_folder(Path(os.environ['GPU_DIR']))"
PYTHONUNBUFFERED=1 "$python" -m TumorSegLib train "${DATA:-../shared/data/brats2018}" --cache "$gpu/cache" \
  -o "$out" --fold "$fold" --device cpu --time-limit "$limit" --max-steps 100000 --batch-size 2 \
  --learning-rate "${LEARNING_RATE:-5e-4}" --remove-enhancement "${REMOVE_ENHANCEMENT:-0.3}" \
  --scanner-shift "${SCANNER_SHIFT:-0}" --checkpoint-every 600 --resume-from "$gpu/resume" ${EXTRA_ARGS:-} 2>&1 \
  | tee -a "$out/train.log"
