#!/usr/bin/env bash
# Issue 18, small: the demo recipe (compact model, posterior type head, the demo's training budget)
# trained on a store that mixes the built-in prototypes with the MP-20 crystals labelled so far,
# split with the source-stratified split, then Tables 1-2 (CFG, T = 1000 and 200) with a row per
# source: the real-crystal test part is scored by a model that has seen real crystals in training.
#
#   bash scripts/real_mixed_demo.sh          # ~25 min on 2 idle cores
#
# Everything but the tables goes to work/real_mixed_demo (resumable: a finished step is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DOSMATGEN=${DOSMATGEN:-.venv/bin/dosmatgen}
W=work/real_mixed_demo
OUT=${OUT:-results/real_mixed_demo}
THREADS=${THREADS:-2}
SEED=0
mkdir -p "$W" "$OUT"
export OMP_NUM_THREADS=$THREADS

[ -e "$W/store.npz" ] || $DOSMATGEN data merge --source builtin --shards resources/builtin --out "$W/store.npz"
$DOSMATGEN data info --store "$W/store.npz" > "$OUT/data_info.txt"
[ -e "$W/split.json" ] || $DOSMATGEN data split --store "$W/store.npz" --out "$W/split.json" \
  --standardiser "$W/standardiser.json" --seed $SEED --fractions 0.6 0.2 0.2

# the demo profile's settings (config/demo.yaml): compact, type_target posterior, batch 64, lr 1e-3
[ -e "$W/models/diffusion/best.pt" ] || $DOSMATGEN train --kind diffusion --store "$W/store.npz" \
  --split "$W/split.json" --standardiser "$W/standardiser.json" --size compact --type-target posterior \
  --epochs 5000 --batch-size 64 --lr 1e-3 --max-steps 10000 --device cpu --seed $SEED \
  --out "$W/models/diffusion" --no-progress
[ -e "$W/models/surrogate/best.pt" ] || $DOSMATGEN train --kind surrogate --store "$W/store.npz" \
  --split "$W/split.json" --standardiser "$W/standardiser.json" --size compact \
  --epochs 1500 --batch-size 64 --lr 1e-3 --max-steps 3000 --device cpu --seed $SEED \
  --out "$W/models/surrogate" --no-progress

mkdir -p "$W/metrics"
for T in 1000 200; do
  [ -e "$W/cfg_T$T.npz" ] || $DOSMATGEN evaluate regenerate --checkpoint "$W/models/diffusion/best.pt" \
    --store "$W/store.npz" --split "$W/split.json" --subset test --guidance cfg --t0 $T --steps 200 \
    --batch-size 128 --step-lr 1e-05 --predictor-input corrected --device cpu --seed $SEED \
    --out "$W/cfg_T$T.npz" --no-progress
  [ -e "$W/metrics/cfg_T$T.json" ] || $DOSMATGEN evaluate score --generated "$W/cfg_T$T.npz" \
    --surrogate "$W/models/surrogate/best.pt" --store "$W/store.npz" --split "$W/split.json" \
    --match-timeout 10 --workers "$THREADS" --device cpu --out "$W/metrics/cfg_T$T.json" --no-progress
done
[ -e "$W/metrics/lookup.json" ] || $DOSMATGEN evaluate lookup --store "$W/store.npz" --split "$W/split.json" \
  --standardiser "$W/standardiser.json" --device cpu --out "$W/metrics/lookup.json"
$DOSMATGEN evaluate tables --metrics-dir "$W/metrics" --out "$OUT"
