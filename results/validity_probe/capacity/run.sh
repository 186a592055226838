#!/usr/bin/env bash
# small experiment (issue 18): is the compact model's overlap on real 7-12-atom cells a capacity
# limit? The demo recipe on the demo's own store, split and seed (work/demo from
# `bash scripts/demo_run.sh`), with a wider and deeper diffusion model (medium.yaml), 10,000 steps;
# regenerated and scored like results/demo_sampling_options/ (CFG T = 1000, all 377 test crystals).
set -euo pipefail
cd "$(dirname "$0")/../../.."
D=.venv/bin/dosmatgen
W=work/capacity
OUT=results/validity_probe/capacity
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p $W
$D train --kind diffusion --store resources/builtin_dos.npz --split work/demo/data/split.json \
  --standardiser work/demo/data/standardiser.json --config $OUT/medium.yaml --epochs 5000 --batch-size 64 \
  --lr 0.001 --max-steps 10000 --device cpu --seed 0 --out $W/medium --no-progress > $W/train_medium.log 2>&1
for variant in steplr0_omegageom0 demo; do
  case $variant in
    demo) EXTRA=(--step-lr 1e-05) ;;
    steplr0_omegageom0) EXTRA=(--step-lr 0 --omega-geometry 0) ;;
  esac
  mkdir -p $W/$variant/metrics
  [ -e $W/$variant/cfg_T1000.npz ] || $D evaluate regenerate --checkpoint $W/medium/best.pt \
    --store resources/builtin_dos.npz --split work/demo/data/split.json --subset test --guidance cfg --omega 1.0 \
    --t0 1000 --steps 200 --batch-size 128 "${EXTRA[@]}" --predictor-input corrected --device cpu --seed 0 \
    --out $W/$variant/cfg_T1000.npz --no-progress
  [ -e $W/$variant/metrics/cfg_T1000.json ] || $D evaluate score --generated $W/$variant/cfg_T1000.npz \
    --surrogate work/demo/models/surrogate/best.pt --store resources/builtin_dos.npz --split work/demo/data/split.json \
    --match-timeout 10 --workers $OMP_NUM_THREADS --device cpu --out $W/$variant/metrics/cfg_T1000.json --no-progress
  $D evaluate tables --metrics-dir $W/$variant/metrics --out $OUT/$variant
done
echo done
