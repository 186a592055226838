#!/usr/bin/env bash
# Issue 18, small: the demo recipe (compact model, posterior type head, the demo's training budget)
# trained on a store that mixes the built-in prototypes with the MP-20 crystals labelled so far,
# split with the source-stratified split, then Tables 1-2 (CFG, T = 1000 and 200) with a row per
# source: the real-crystal test part is scored by a model that has seen real crystals in training.
#
#   bash experiments/real_mixed_demo/real_mixed_demo.sh                     # ~25 min on 2 idle cores
#   RECIPE=weighted bash experiments/real_mixed_demo/real_mixed_demo.sh     # + ~45 min: the same store, split, seed and
#                                                       # surrogate, another diffusion recipe
#
# RECIPE=demo (default) is the demo profile's diffusion recipe. RECIPE=weighted is an option for a
# mixed store, measured beside it (results/validity_probe/): 30,000 steps instead of 10,000, EMA
# 0.999, plateau patience 100, each real crystal drawn 4 times per epoch (--repeat-source mp20=4),
# its final weights (last.pt: the validation-best checkpoint of such a run comes from its first few
# thousand steps, with compressed cells), no Langevin corrector at sampling (--step-lr 0) and
# classifier-free guidance on the types only (--omega-geometry 0: coordinates and lattice from the
# conditional model).
#
# Everything but the tables goes to work/real_mixed_demo (resumable: a finished step is skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
DOSMATGEN=${DOSMATGEN:-.venv/bin/dosmatgen}
W=work/real_mixed_demo
RECIPE=${RECIPE:-demo}
case "$RECIPE" in
  demo) OUT=${OUT:-results/real_mixed_demo}; TAG=""; CKPT=best.pt; STEP_LR=1e-05; GUIDE=()
        TRAIN_EXTRA=(--epochs 5000 --max-steps 10000) ;;
  weighted) OUT=${OUT:-results/real_mixed_demo_weighted}; TAG=weighted_; CKPT=last.pt; STEP_LR=0
        GUIDE=(--omega-geometry 0)
        TRAIN_EXTRA=(--epochs 50000 --max-steps 30000 --ema-decay 0.999 --patience 100 --repeat-source mp20=4) ;;
  *) echo "RECIPE must be demo or weighted, got '$RECIPE'" >&2; exit 2 ;;
esac
THREADS=${THREADS:-2}
SEED=0
mkdir -p "$W" "$OUT"
export OMP_NUM_THREADS=$THREADS

[ -e "$W/store.npz" ] || $DOSMATGEN data merge --source builtin --shards resources/builtin --out "$W/store.npz"
$DOSMATGEN data info --store "$W/store.npz" > "$OUT/data_info.txt"
[ -e "$W/split.json" ] || $DOSMATGEN data split --store "$W/store.npz" --out "$W/split.json" \
  --standardiser "$W/standardiser.json" --seed $SEED --fractions 0.6 0.2 0.2

# the demo profile's settings (config/demo.yaml): compact, type_target posterior, batch 64, lr 1e-3
# (train resumes an interrupted run and does nothing for a finished one)
DIFF="$W/models/${TAG}diffusion"
$DOSMATGEN train --kind diffusion --store "$W/store.npz" \
  --split "$W/split.json" --standardiser "$W/standardiser.json" --size compact --type-target posterior \
  --batch-size 64 --lr 1e-3 "${TRAIN_EXTRA[@]}" --device cpu --seed $SEED \
  --out "$DIFF" --no-progress
[ -e "$W/models/surrogate/best.pt" ] || $DOSMATGEN train --kind surrogate --store "$W/store.npz" \
  --split "$W/split.json" --standardiser "$W/standardiser.json" --size compact \
  --epochs 1500 --batch-size 64 --lr 1e-3 --max-steps 3000 --device cpu --seed $SEED \
  --out "$W/models/surrogate" --no-progress

M="$W/${TAG}metrics"
mkdir -p "$M"
for T in 1000 200; do
  [ -e "$W/${TAG}cfg_T$T.npz" ] || $DOSMATGEN evaluate regenerate --checkpoint "$DIFF/$CKPT" \
    --store "$W/store.npz" --split "$W/split.json" --subset test --guidance cfg "${GUIDE[@]}" --t0 $T --steps 200 \
    --batch-size 128 --step-lr $STEP_LR --predictor-input corrected --device cpu --seed $SEED \
    --out "$W/${TAG}cfg_T$T.npz" --no-progress
  [ -e "$M/cfg_T$T.json" ] || $DOSMATGEN evaluate score --generated "$W/${TAG}cfg_T$T.npz" \
    --surrogate "$W/models/surrogate/best.pt" --store "$W/store.npz" --split "$W/split.json" \
    --match-timeout 10 --workers "$THREADS" --device cpu --out "$M/cfg_T$T.json" --no-progress
done
[ -e "$M/lookup.json" ] || $DOSMATGEN evaluate lookup --store "$W/store.npz" --split "$W/split.json" \
  --standardiser "$W/standardiser.json" --device cpu --out "$M/lookup.json"
$DOSMATGEN evaluate tables --metrics-dir "$M" --out "$OUT"
