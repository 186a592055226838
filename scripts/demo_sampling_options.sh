#!/usr/bin/env bash
# Issue 18, small: the two sampling options measured in results/validity_probe/ (no Langevin
# corrector, --step-lr 0; classifier-free guidance on the types only, --omega-geometry 0), applied
# to the recorded demo models beside the demo's own CFG rows: same models, store, split, test
# crystals, seed and sampler steps; only the option changes. Needs the demo run's work/demo.
#
#   bash scripts/demo_sampling_options.sh        # ~10 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
DOSMATGEN=${DOSMATGEN:-.venv/bin/dosmatgen}
W=work/demo
OUT=${OUT:-results/demo_sampling_options}
export OMP_NUM_THREADS=${THREADS:-2}
for variant in steplr0 steplr0_omegageom0; do
  case $variant in
    steplr0) EXTRA=(--step-lr 0) ;;
    steplr0_omegageom0) EXTRA=(--step-lr 0 --omega-geometry 0) ;;
  esac
  V=work/demo_sampling_options/$variant
  mkdir -p "$V/metrics"
  for T in 1000 500; do
    [ -e "$V/cfg_T$T.npz" ] || $DOSMATGEN evaluate regenerate --checkpoint $W/models/diffusion/best.pt \
      --store resources/builtin_dos.npz --split $W/data/split.json --subset test --guidance cfg --omega 1.0 \
      --t0 $T --steps 200 --batch-size 128 "${EXTRA[@]}" --predictor-input corrected --device cpu --seed 0 \
      --out "$V/cfg_T$T.npz" --no-progress
    [ -e "$V/metrics/cfg_T$T.json" ] || $DOSMATGEN evaluate score --generated "$V/cfg_T$T.npz" \
      --surrogate $W/models/surrogate/best.pt --store resources/builtin_dos.npz --split $W/data/split.json \
      --match-timeout 10 --workers "$OMP_NUM_THREADS" --device cpu --out "$V/metrics/cfg_T$T.json" --no-progress
  done
  $DOSMATGEN evaluate tables --metrics-dir "$V/metrics" --out "$OUT/$variant"
done
