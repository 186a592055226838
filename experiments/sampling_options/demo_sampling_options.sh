#!/usr/bin/env bash
# Issue 18, small: sampling options applied to the recorded demo models beside the demo's own CFG
# rows: same models, store, split, test crystals and seed; only the sampling changes. Needs the
# demo run's work/demo. Variants (any subset, in VARIANTS):
#   demo                the demo's own sampling (Langevin corrector step_lr 1e-5, ω on all channels)
#   steplr0             --step-lr 0: no corrector (results/validity_probe/)
#   steplr0_omegageom0  also --omega-geometry 0: classifier-free guidance on the types only
#   demo_repel, steplr0_omegageom0_repel   the same with --repel-distance 1.0 --repel-until 200
#                       (pair repulsion while t >= 200; results/repulsion_probe/)
#
#   bash experiments/sampling_options/demo_sampling_options.sh   # 200 steps, T 1000 and 500, ~10 min
#   STEPS=1000 T0S=1000 VARIANTS="demo steplr0_omegageom0" OUT=results/demo_sampling_steps1000 \
#     bash experiments/sampling_options/demo_sampling_options.sh   # the paper's 1000 sampler steps
#
# CHECKPOINT, SURROGATE, STORE, SPLIT default to the demo run's; THREADS to 2.
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repository root
DOSMATGEN=${DOSMATGEN:-.venv/bin/dosmatgen}
W=work/demo
CHECKPOINT=${CHECKPOINT:-$W/models/diffusion/best.pt}
SURROGATE=${SURROGATE:-$W/models/surrogate/best.pt}
STORE=${STORE:-resources/builtin_dos.npz}
SPLIT=${SPLIT:-$W/data/split.json}
STEPS=${STEPS:-200}
T0S=${T0S:-1000 500}
VARIANTS=${VARIANTS:-steplr0 steplr0_omegageom0}
OUT=${OUT:-results/demo_sampling_options}
WORK=${WORK:-work/$(basename "$OUT")}
export OMP_NUM_THREADS=${THREADS:-2}
# Finished samples in $WORK are reused on a rerun; they must come from this checkpoint, not an older one.
checkpoint_sum=$(sha256sum "$CHECKPOINT" | cut -c1-16)
if [ -e "$WORK/checkpoint.sha256" ] && [ "$(cat "$WORK/checkpoint.sha256")" != "$checkpoint_sum" ]; then
  echo "$WORK holds samples of another checkpoint than $CHECKPOINT; move it away or set WORK" >&2
  exit 2
fi
mkdir -p "$WORK"
echo "$checkpoint_sum" > "$WORK/checkpoint.sha256"
for variant in $VARIANTS; do
  case $variant in
    demo) EXTRA=() ;;
    steplr0) EXTRA=(--step-lr 0) ;;
    steplr0_omegageom0) EXTRA=(--step-lr 0 --omega-geometry 0) ;;
    demo_repel) EXTRA=(--repel-distance 1.0 --repel-until 200) ;;
    steplr0_omegageom0_repel) EXTRA=(--step-lr 0 --omega-geometry 0 --repel-distance 1.0 --repel-until 200) ;;
    *) echo "unknown variant: $variant (demo, steplr0, steplr0_omegageom0, demo_repel, steplr0_omegageom0_repel)" >&2
       exit 2 ;;
  esac
  V=$WORK/$variant
  mkdir -p "$V/metrics"
  for T in $T0S; do
    [ -e "$V/cfg_T$T.npz" ] || $DOSMATGEN evaluate regenerate --checkpoint "$CHECKPOINT" \
      --store "$STORE" --split "$SPLIT" --subset test --guidance cfg --omega 1.0 \
      --t0 "$T" --steps "$STEPS" --batch-size 128 ${EXTRA[@]+"${EXTRA[@]}"} --predictor-input corrected \
      --device cpu --seed 0 --out "$V/cfg_T$T.npz" --no-progress
    [ -e "$V/metrics/cfg_T$T.json" ] || $DOSMATGEN evaluate score --generated "$V/cfg_T$T.npz" \
      --surrogate "$SURROGATE" --store "$STORE" --split "$SPLIT" \
      --match-timeout 10 --workers "$OMP_NUM_THREADS" --device cpu --out "$V/metrics/cfg_T$T.json" --no-progress
  done
  $DOSMATGEN evaluate tables --metrics-dir "$V/metrics" --out "$OUT/$variant"
done
